"""`gpux registries`: the registries this installation knows, built in and from plugins."""

from __future__ import annotations

import click

from gpuxbuild.cli.app import JSON, cli, print_error, print_json


@cli.command("registries")
@JSON
def registries(as_json: bool) -> None:
    """List the model registries: built in, and those installed plugins add, with their source prefixes."""
    from gpuxbuild.registries import registry_entries

    entries, problems = registry_entries()
    rows = [e.as_dict() for e in entries]
    if as_json:
        print_json({"registries": rows, "problems": problems})
        return
    header = {"name": "NAME", "prefixes": "PREFIXES", "origin": "FROM", "reference": "REFERENCE"}
    table = [header] + [{**r, "prefixes": " ".join(r["prefixes"])} for r in rows]
    widths = {k: max(len(r[k]) for r in table) for k in ("name", "prefixes", "origin")}
    for r in table:
        click.echo(
            f"{r['name']:<{widths['name']}}  {r['prefixes']:<{widths['prefixes']}}  "
            f"{r['origin']:<{widths['origin']}}  {r['reference']}".rstrip()
        )
    for problem in problems:
        print_error(problem, "reinstall or remove the plugin package", prefix="warning:")
