"""`gpux search`."""

from __future__ import annotations

import click

from gpuxbuild.cli.app import JSON, Context, cli, console, counted, pass_context, print_error, print_json


@cli.command()
@click.argument("query", default="")
@click.option(
    "--registry",
    "registries",
    multiple=True,
    metavar="R",
    help="hf, mlflow or oci://HOST; repeat for several. Default: the Hub, MLflow when MLFLOW_TRACKING_URI is set, "
    "and the hosts of GPUX_SEARCH_OCI.",
)
@click.option("--task", help="Only models of this task (the Hub's pipeline tag; MLflow and OCI know none).")
@click.option(
    "--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="The most models from each registry."
)
@JSON
@pass_context
def search(ctx: Context, query: str, registries: tuple[str, ...], task: str | None, limit: int, as_json: bool) -> None:
    """Find models on the Hub, an MLflow registry and OCI registries; SOURCE is what `gpux add` takes."""
    from gpuxbuild.models.search import search as run_search

    outcome = run_search(query, registries=registries, task=task, limit=limit)
    for failure in outcome.failures:  # the other registries' results stand
        print_error(failure.message, failure.hint, prefix="warning:")
    results = outcome.results
    if as_json:
        print_json([r.as_dict() for r in results])
        return
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None)
    for col in ("SOURCE", "TASK", "DOWNLOADS", "LIKES", "UPDATED", "NOTE"):
        table.add_column(col, no_wrap=True, justify="right" if col in ("DOWNLOADS", "LIKES") else "left")
    for r in results:
        cells = (
            r.source,
            r.task or "-",
            "-" if r.downloads is None else str(r.downloads),
            "-" if r.likes is None else str(r.likes),
            r.updated or "-",
            r.note or "",
        )
        table.add_row(*(Text(c) for c in cells))
    if results:
        # Sources are what the next command takes: never cut, as `gpux ls` does.
        natural = Measurement.get(console.get(), console.options.update(width=10_000), table).maximum
        Console(width=max(natural, console.width), highlight=False, emoji=False).print(table)
    if not ctx.quiet:
        console.print(counted(len(results), "model"))
