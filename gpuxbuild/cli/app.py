"""The click application behind `gpux`: options, errors as one line, rich consoles.

Each command group lives in its own module of this package and registers itself on `cli`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from gpuxbuild import __version__
from gpuxbuild.errors import GpuxError

console = Console(highlight=False, emoji=False)
err_console = Console(stderr=True, highlight=False, emoji=False)


class Context:
    """What every command gets: the project folder and output preferences."""

    def __init__(self, project: Path, quiet: bool):
        self.project = project
        self.quiet = quiet


pass_context = click.make_pass_decorator(Context)


class GpuxGroup(click.Group):
    """A click group that turns `GpuxError` into one line on stderr and its exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GpuxError as exc:
            print_error(exc.message, exc.hint)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]")
            sys.exit(130)


def print_error(message: str, hint: str | None = None, prefix: str = "error:") -> None:
    """One error line on stderr (and its hint), with user text escaped from rich markup."""
    err_console.print(f"[bold red]{prefix}[/] {escape(message)}", soft_wrap=True)
    if hint:
        err_console.print(f"  [dim]hint:[/] {escape(hint)}", soft_wrap=True)


def print_json(data) -> None:
    """Write `data` as JSON to stdout (sorted keys, stable)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group(cls=GpuxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="gpux")
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Project folder (holds gpux.models.yml and gpux.lock). Default: the current folder.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only errors and results.")
@click.pass_context
def cli(ctx: click.Context, project: Path | None, quiet: bool) -> None:
    """gpux: lock, build, sync and run models for the GPUX runtime."""
    root = (project or Path(os.environ.get("GPUX_PROJECT", "."))).resolve()
    ctx.obj = Context(project=root, quiet=quiet)


# Command modules register themselves on `cli` when imported.
from gpuxbuild.cli import build_cmds, project_cmds, run_cmds, store_cmds, sync_cmds  # noqa: E402,F401
