"""`gpux init`, `gpux add`, `gpux remove`, `gpux lock`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from gpuxbuild.cli.app import JSON, OFFLINE, Context, cli, console, counted, pass_context, print_json

if TYPE_CHECKING:
    from gpuxbuild.project.resolver import LockAction

_SIGNS: dict[LockAction, str] = {"added": "[green]+[/]", "removed": "[red]-[/]", "updated": "[yellow]~[/]"}


def _render_plan(plan, ctx: Context, as_json: bool, lock_name: str = "gpux.lock") -> None:
    if as_json:
        print_json({"changes": [c.as_dict() for c in plan.changes], "models": len(plan.lock.models)})
        return
    if ctx.quiet:
        return
    for c in plan.changes:
        if c.action == "unchanged":
            continue
        sign = _SIGNS[c.action]
        commit = f" {c.new_commit[:12]}" if c.new_commit else ""
        why = f" [dim]({'; '.join(c.reasons)})[/]" if c.reasons else ""
        console.print(f" {sign} {c.name}{commit}{why}")
    state = "" if plan.changed or plan.written else " (no changes)"
    console.print(f"Locked {counted(len(plan.lock.models), 'model')} -> {lock_name}{state}")


@cli.command()
@pass_context
def init(ctx: Context) -> None:
    """Write a commented starter gpux.models.yml."""
    from gpuxbuild.project.edits import init_project

    path = init_project(ctx.folder)
    if not ctx.quiet:
        console.print(f"Wrote {path.name}: add models with `gpux add SOURCE`")


@cli.command()
@click.argument("source")
@click.option("--name", help="Model name (default: the repo's last path segment).")
@click.option("--revision", help="Branch, tag or 40-hex commit (default: main).")
@click.option("--task", help="Task, when it cannot be inferred.")
@OFFLINE
@JSON
@pass_context
def add(ctx: Context, source: str, name, revision, task, offline: bool, as_json: bool) -> None:
    """Add a model to gpux.models.yml and lock it.

    SOURCE is REGISTRY:REF, e.g. hf:org/name or path:./models/x.
    """
    from gpuxbuild.project.edits import add_model

    res = add_model(ctx.project, source, name=name, revision=revision, task=task, offline=offline)
    if not as_json and not ctx.quiet:
        console.print(f"Added {res.name} ({source})")
    _render_plan(res.plan, ctx, as_json)


@cli.command()
@click.argument("name")
@JSON
@pass_context
def remove(ctx: Context, name: str, as_json: bool) -> None:
    """Remove a model from gpux.models.yml and gpux.lock."""
    from gpuxbuild.project.edits import remove_model

    res = remove_model(ctx.project, name)
    if not as_json and not ctx.quiet:
        console.print(f"Removed {res.name}")
    _render_plan(res.plan, ctx, as_json)


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--check", is_flag=True, help="Exit 1 if gpux.lock does not match the manifest. No network.")
@click.option(
    "--upgrade", is_flag=True, help="Re-resolve every model (or only NAMES) to its revision's current commit."
)
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=4, show_default=True, help="Models resolved at once.")
@OFFLINE
@JSON
@pass_context
def lock(
    ctx: Context, names: tuple[str, ...], check: bool, upgrade: bool, jobs: int, offline: bool, as_json: bool
) -> None:
    """Pin every model of gpux.models.yml to a commit and every file to its sha256, in gpux.lock.

    Models whose manifest entry did not change keep their pins; `--upgrade [NAME...]` moves them.
    """
    from gpuxbuild.errors import GpuxError
    from gpuxbuild.project.lockfile import check_lock, lock_path, read_lock
    from gpuxbuild.project.manifest import MANIFEST_NAME, load_manifest

    if names and not upgrade:
        raise GpuxError("model names are only taken with --upgrade", "use `gpux lock --upgrade NAME`", exit_code=2)
    if check:
        if upgrade:
            raise GpuxError("--check and --upgrade exclude each other", "drop one", exit_code=2)
        manifest = load_manifest(ctx.project / MANIFEST_NAME)
        check_lock(manifest, read_lock(lock_path(ctx.project)))
        if as_json:
            print_json({"up_to_date": True, "models": len(manifest.models)})
        elif not ctx.quiet:
            console.print(f"gpux.lock is up to date ({counted(len(manifest.models), 'model')})")
        return
    from gpuxbuild.project.resolver import lock_project

    plan = lock_project(
        ctx.project, upgrade=(set(names) if names else True) if upgrade else False, offline=offline, jobs=jobs
    )
    _render_plan(plan, ctx, as_json)
