"""`gpux help [TOPIC]`."""

from __future__ import annotations

import click

from gpuxbuild.cli.app import cli, console


@cli.command("help")
@click.argument("name", metavar="[TOPIC]", required=False)
def help_(name: str | None) -> None:
    """The documentation of a topic (manifest, lockfile, sync, store, ...); without TOPIC, the list.

    Printed as is when piped; formatted on a terminal. `gpux COMMAND --help` describes a command's options.
    """
    from gpuxbuild.topics import topic, topics

    if name is None:
        width = max(len(t.name) for t in topics())
        click.echo("Topics (gpux help TOPIC):")
        for t in topics():
            click.echo(f"  {t.name:<{width}}  {t.title}")
        return
    text = topic(name).text
    if console.is_terminal:
        from rich.markdown import Markdown

        console.print(Markdown(text))
    else:
        click.echo(text, nl=False)
