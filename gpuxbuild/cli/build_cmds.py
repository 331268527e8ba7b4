"""`gpux build`."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import click
from rich.live import Live
from rich.table import Table

from gpuxbuild.build import DEFAULT_JOBS
from gpuxbuild.cli.app import (
    JSON,
    OFFLINE,
    REMOTE,
    Context,
    cli,
    console,
    err_console,
    open_remotes,
    pass_context,
    print_error,
    print_json,
)

PUSH = click.option("--push", is_flag=True, help="Upload the artifacts to the (first) remote cache afterwards.")


class StageTable:
    """A live line per model with its current stage (TTY only)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.stages: dict[str, str] = {}
        self._lock = threading.Lock()
        self.live = Live(self._table(), console=err_console.get(), transient=True) if enabled else None

    def _table(self) -> Table:
        t = Table(box=None, show_header=False)
        for name, stage in sorted(self.stages.items()):
            t.add_row(name, stage)
        return t

    def __call__(self, name: str, stage: str) -> None:
        if self.live is None:  # not enabled
            return
        with self._lock:
            self.stages[name] = stage
            self.live.update(self._table())

    def __enter__(self):
        if self.live:
            self.live.start()
        return self

    def __exit__(self, *exc):
        if self.live:
            self.live.stop()


@cli.command()
@click.argument("names", nargs=-1)
@click.option(
    "--locked", is_flag=True, help="Fail unless gpux.lock is up to date and every artifact has the digest it records."
)
@click.option("--no-validate", is_flag=True, help="Skip comparing ONNX outputs with PyTorch's after export.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1),
    default=DEFAULT_JOBS,
    show_default=True,
    help="Models built in parallel (bounded by free memory).",
)
@click.option(
    "--keep-going/--fail-fast", default=True, show_default=True, help="Build the other models when one fails."
)
@click.option(
    "--sign-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Sign each artifact's provenance with this EC private key (PEM): writes provenance.dsse.json.",
)
@click.option("--shard", metavar="I/N", help="Build only share I of N of the models (a CI matrix; see --push).")
@REMOTE
@PUSH
@OFFLINE
@JSON
@pass_context
def build(
    ctx: Context,
    names,
    locked,
    no_validate,
    jobs,
    keep_going,
    sign_key,
    shard,
    remote,
    remote_optional,
    push,
    offline,
    as_json,
) -> None:
    """Build locked models into reproducible ONNX artifacts with a generated gpux.yml.

    Cached artifacts (same build key) are reused. Digests are recorded in gpux.lock; with --locked
    they are checked instead.
    """
    from gpuxbuild.build.pipeline import build_project
    from gpuxbuild.store.objects import Store

    if shard is not None:
        from gpuxbuild.build.shard import parse_shard

        shard = parse_shard(shard)
    store = Store()
    remotes = open_remotes(ctx, remote, remote_optional)
    if push and not remotes:
        raise _no_remote("--push")
    with StageTable(not as_json and not ctx.quiet and err_console.is_terminal) as table:
        out = build_project(
            ctx.project,
            tuple(names),
            store=store,
            locked=locked,
            jobs=jobs,
            offline=offline,
            validate=not no_validate,
            keep_going=keep_going,
            on_stage=table,
            sign_key=sign_key.resolve() if sign_key else None,
            remotes=remotes,
            shard=shard,
        )
    pushed = {}
    if push:
        from gpuxbuild.build.remote_artifact import push_results
        from gpuxbuild.cli.store_cmds import transfer_progress

        with transfer_progress(ctx, as_json, remotes):  # after the stage table: one live display at a time
            pushed = push_results(store, remotes, out.results)
    if as_json:
        doc = {"models": [r.as_dict() for r in out.results], "lock_written": out.lock_written}
        if push:
            doc["pushed"] = pushed
        print_json(doc)
    else:
        for r in out.results:
            if r.status == "failed":
                print_error(f"{r.name}: {r.error}", r.hint, prefix="failed")
            elif not ctx.quiet:
                took = f" in {r.stages['total']:.1f}s" if "total" in r.stages else ""
                console.print(f"{r.status:>6} {r.name} {r.digest}{took}", soft_wrap=True)
                if r.note:
                    console.print(f"       [dim]{r.note}[/]", soft_wrap=True)
        if not ctx.quiet:
            n = {s: sum(r.status == s for r in out.results) for s in ("built", "cached", "downloaded", "failed")}
            fetched = f", {n['downloaded']} downloaded" if n["downloaded"] else ""
            console.print(f"{n['built']} built, {n['cached']} cached{fetched}, {n['failed']} failed")
            _print_pushed(pushed)
    if out.failed:
        sys.exit(1)


def _no_remote(option: str):
    from gpuxbuild.errors import GpuxError

    return GpuxError(
        f"{option}: no remote cache configured",
        "pass --remote URL, set GPUX_REMOTE, or add `cache: {remote: URL}` to gpux.models.yml",
        exit_code=2,
    )


def _print_pushed(pushed: dict[str, str]) -> None:
    """One line per model: pushed, present (already on the remote) or skipped (an optional remote that failed)."""
    why = {"pushed": "", "present": " (already on the remote)", "skipped": " (the remote failed; see the warning)"}
    for name, how in sorted(pushed.items()):
        console.print(f"{how:>7} {name}{why[how]}")


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--sources", is_flag=True, help="Upload the models' source files too (an air-gapped mirror).")
@click.option("--remote", "remote", multiple=True, metavar="URL", help="Remote cache to push to (default: as build).")
@JSON
@pass_context
def push(ctx: Context, names, sources, remote, as_json) -> None:
    """Upload built artifacts of gpux.lock's models (all, or NAMES) or of pulled models to the first remote cache.

    Blobs go up first, then the artifact's index with a conditional create: a half-done push is never
    visible, and an artifact already on the remote is left as it is.
    """
    from gpuxbuild.build.push import push_project
    from gpuxbuild.store.objects import Store

    remotes = open_remotes(ctx, remote, False)
    if not remotes:
        raise _no_remote("gpux push")
    from gpuxbuild.cli.store_cmds import transfer_progress
    from gpuxbuild.models.locate import pulled_target

    store = Store()
    pulled = {n: pulled_target(n, ctx.project, store) for n in names}
    locked = tuple(n for n, t in pulled.items() if t is None)
    targets = tuple(t for t in pulled.values() if t is not None)
    with transfer_progress(ctx, as_json, remotes):
        res = push_project(ctx.project, locked, store=store, remotes=remotes, sources=sources, pulled=targets)
    if as_json:
        print_json(res.as_dict())
        return
    if not ctx.quiet:
        _print_pushed(res.artifacts)
        if sources:
            console.print(f"sources: {res.sources_new} uploaded, {res.sources_total - res.sources_new} already there")
