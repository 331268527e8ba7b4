"""`gpux verify` and `gpux sbom`: supply-chain evidence for a project's artifacts."""

from __future__ import annotations

from pathlib import Path

import click

from gpuxbuild.cli.app import JSON, Context, cli, console, pass_context, print_json

_SIGNATURE = {
    "none": "provenance not signed",
    "unchecked": "provenance signed, signature not checked (pass --key)",
    "verified": "provenance signature verified",
}


@cli.command()
@click.argument("target")
@click.option(
    "--key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Public key (PEM) that must have signed the provenance (the public half of `gpux build --sign-key`).",
)
@JSON
@pass_context
def verify(ctx: Context, target: str, key: Path | None, as_json: bool) -> None:
    """Re-check an artifact offline: files, digest, provenance, signature; exit 1 at the first mismatch.

    TARGET is a model of gpux.lock (its artifact in the store) or an artifact folder.
    """
    from gpuxbuild.models.verify import verify as do_verify
    from gpuxbuild.store.objects import Store

    report = do_verify(target, project=ctx.project, store=Store(), key=key)
    if as_json:
        print_json(report.as_dict())
    elif not ctx.quiet:
        against = "gpux.lock and artifact.json" if report.locked else "artifact.json (no gpux.lock entry)"
        console.print(f"ok {report.name} {report.digest}", soft_wrap=True)
        console.print(
            f"   {report.files} files intact; provenance matches {against}; {_SIGNATURE[report.signature]}",
            soft_wrap=True,
        )


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["cyclonedx-json", "spdx-json"]),
    default="cyclonedx-json",
    show_default=True,
    help="Bill-of-materials format.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write here.")
@pass_context
def sbom(ctx: Context, fmt: str, output: Path | None) -> None:
    """Print the project's models as an ML-BOM (CycloneDX 1.6; or SPDX 2.3), from gpux.lock; deterministic."""
    from gpuxbuild.models.sbom import project_sbom

    text = project_sbom(ctx.project, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        from gpuxbuild.fsutil import write_atomic

        write_atomic(output, text.encode("utf-8"))
