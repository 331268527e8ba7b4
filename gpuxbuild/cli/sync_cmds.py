"""`gpux sync`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from gpuxbuild.cli.app import (
    JSON,
    OFFLINE,
    REMOTE,
    Context,
    cli,
    console,
    counted,
    err_console,
    open_remotes,
    pass_context,
    print_json,
)
from gpuxbuild.store.linker import LINK_MODES
from gpuxbuild.sync.record import cache_line

if TYPE_CHECKING:
    from gpuxbuild.sync.plan import SyncAction

_SIGNS: dict[SyncAction, str] = {"add": "[green]+[/]", "update": "[yellow]~[/]", "remove": "[red]-[/]"}


def _human(n: int) -> str:
    from gpuxbuild.models.pull import human_size

    return human_size(n)


def _render(res, ctx: Context) -> None:
    plan = res.plan
    if ctx.quiet:
        console.print(("dry run: " if res.dry_run else "") + plan.summary(), soft_wrap=True)
        return
    relocked = [c for c in plan.lock_changes if c.action != "unchanged"]
    if relocked:
        verb = "would re-lock" if res.dry_run else "re-locked"
        console.print(
            f"gpux.lock was out of date, {verb}: " + ", ".join(f"{c.name} ({c.action})" for c in relocked),
            soft_wrap=True,
        )
    for act in plan.models:
        if act.action == "unchanged":
            continue
        digest = f" {act.digest[7:19]}" if act.digest else ""
        built = ""
        if res.dry_run and act.artifact == "build":
            built = " [dim](to build)[/]"
        elif res.dry_run and act.artifact == "remote":
            from rich.markup import escape

            built = f" [dim](from {escape(act.remote or '')})[/]"
        why = f" [dim]({'; '.join(act.reasons)})[/]" if act.reasons else ""
        console.print(f" {_SIGNS[act.action]} {act.name}{digest}{why}{built}", soft_wrap=True)
    for f in [u for a in plan.models for u in a.user_files] + plan.user_files:
        console.print(f" [cyan]?[/] {f} [dim](not placed by gpux sync; left alone)[/]", soft_wrap=True)
    if res.dry_run:
        console.print(f"dry run, nothing changed: {plan.summary()}", soft_wrap=True)
        return
    console.print(plan.summary(), soft_wrap=True)
    sources = [
        f"{counted(n, 'source file')} {how} ({_human(size)})"
        for n, how, size in (
            (res.sources_downloaded, "downloaded", res.bytes_downloaded),
            (res.sources_copied, "copied from local folders", res.bytes_copied),
        )
        if n
    ]
    downloaded = ", ".join(sources) or None
    console.print(cache_line(res.reused, res.built, downloaded, res.link_modes, res.downloaded), soft_wrap=True)


@cli.command()
@click.option("--locked", is_flag=True, help="Fail (exit 1) if gpux.lock is out of date instead of re-locking it.")
@click.option("--frozen", is_flag=True, help="Use gpux.lock as it is, without reading gpux.models.yml.")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option(
    "--target",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to mirror the lock into. Default: .gpux/models in the project.",
)
@click.option(
    "--link-mode",
    type=click.Choice(LINK_MODES),
    default="auto",
    show_default=True,
    help="How files come from the store: auto tries reflink, then hardlink, then copy.",
)
@click.option(
    "--require-signatures",
    is_flag=True,
    help="Fail (exit 1) if a model of gpux.lock has no model.sig that `gpux lock` verified.",
)
@REMOTE
@click.option("--push", is_flag=True, help="Upload the synced artifacts to the (first) remote cache afterwards.")
@OFFLINE
@JSON
@pass_context
def sync(
    ctx: Context,
    locked: bool,
    frozen: bool,
    dry_run: bool,
    target: Path | None,
    link_mode: str,
    require_signatures: bool,
    remote: tuple[str, ...],
    remote_optional: bool,
    push: bool,
    offline: bool,
    as_json: bool,
) -> None:
    """Make .gpux/models/ hold exactly the models of gpux.lock: add, update, remove, restore.

    A stale gpux.lock is re-locked first (unchanged models keep their pins), unless --locked or --frozen.
    """
    from gpuxbuild.sync.execute import sync as do_sync

    show = not ctx.quiet and not as_json

    def on_event(name: str, what: str) -> None:
        if show and what not in ("cached", "placing", "waiting for lock"):
            err_console.print(f"[dim]{name}: {what}[/]", soft_wrap=True)

    remotes = open_remotes(ctx, remote, remote_optional, manifest=not frozen)  # --frozen reads no manifest
    if push and not remotes:
        from gpuxbuild.cli.build_cmds import _no_remote

        raise _no_remote("--push")
    from gpuxbuild.cli.store_cmds import transfer_progress

    with transfer_progress(ctx, as_json, remotes):
        res = do_sync(
            ctx.project,
            target=target,
            locked=locked,
            frozen=frozen,
            offline=offline,
            dry_run=dry_run,
            link_mode=link_mode,
            on_event=on_event,
            require_signatures=require_signatures,
            remotes=remotes,
        )
        pushed = {}
        if push and not dry_run:
            from gpuxbuild.build.remote_artifact import push_artifact
            from gpuxbuild.store.objects import Store

            store = Store()
            placed = [a for a in res.plan.models if a.action != "remove" and a.build_key]
            pushed = {a.name: push_artifact(store, remotes, a.build_key) for a in placed if a.build_key}
    if as_json:
        doc = res.as_dict()
        if push:
            doc["pushed"] = pushed
        print_json(doc)
    else:
        _render(res, ctx)
        if not ctx.quiet:
            from gpuxbuild.cli.build_cmds import _print_pushed

            _print_pushed(pushed)
