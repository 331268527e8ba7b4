"""`gpux pull`, `ls`/`images`, `rm`/`rmi`, `inspect`, `cache verify|prune|info`."""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from gpuxbuild.cli.app import JSON, OFFLINE, Context, cli, console, counted, err_console, pass_context, print_json

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.progress import TaskID


class RichReporter:
    """A progress bar per file and a total, on stderr; only on a TTY and without --quiet.

    Drawn from `begin()` (once the size to fetch is known) until `close()`; files may start before it
    (a pull fetches the large files while the small ones are still being hashed).
    """

    def __init__(self):
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self._lock = threading.Lock()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=err_console.get(),
            transient=True,
        )
        self.total = self.progress.add_task("total", total=None)
        self.tasks: dict[str, TaskID] = {}
        self.seen: set[str] = set()

    def begin(self, total: int, present: dict[str, int]) -> None:
        """Show the bars: `total` bytes, of which `present` (path -> size) were in the store already."""
        with self._lock:
            done = sum(size for path, size in present.items() if path not in self.seen)
            self.progress.update(self.total, total=total)
            self.progress.advance(self.total, done)
        self.progress.start()

    def close(self) -> None:
        self.progress.stop()

    def start(self, key: str, total: int) -> None:
        with self._lock:
            self.seen.add(key)
            self.tasks[key] = self.progress.add_task(key[-40:], total=total)

    def advance(self, key: str, n: int) -> None:
        self.progress.advance(self.tasks[key], n)
        self.progress.advance(self.total, n)

    def finish(self, key: str, hit: bool) -> None:
        with self._lock:
            self.progress.remove_task(self.tasks.pop(key))


class TransferReporter(RichReporter):
    """Byte-level progress of remote-cache transfers (gpuxbuild.remote.cache.RemoteCache.reporter): drawn from the
    first file on, its total growing as files start."""

    def __init__(self):
        super().__init__()
        self._bytes = 0

    def start(self, key: str, total: int) -> None:
        super().start(key, total)
        with self._lock:
            first = not self._bytes
            self._bytes += total
            self.progress.update(self.total, total=self._bytes)
        if first:  # drawn once there is a file to show
            self.progress.start()


@contextmanager
def transfer_progress(ctx: Context, as_json: bool, remotes) -> Iterator[None]:
    """Show remote transfers byte by byte while the block runs: on a terminal, without --quiet or --json only."""
    if not remotes or not show_progress(ctx, as_json):
        yield
        return
    remotes.reporter = TransferReporter()
    try:
        yield
    finally:
        remotes.reporter.close()
        remotes.reporter = None


def say(text: str, *, label: str | None = None, style: str = "bold") -> None:
    """Print one line to stdout as is (no markup or emoji: names are data), after an optional styled `label`;
    never wrapped (piped output is read by scripts)."""
    from rich.text import Text

    console.print(Text.assemble((label or "", style), text), soft_wrap=True)


def show_progress(ctx: Context, as_json: bool) -> bool:
    return not ctx.quiet and not as_json and err_console.is_terminal


def _store():
    from gpuxbuild.store.objects import Store

    return Store()


@cli.command()
@click.argument("ref")
@click.option("--registry", help="Registry name when REF has no prefix (default: huggingface).")
@click.option("--revision", help="Branch, tag or commit (same as REF@REVISION).")
@click.option("--task", help="Task, when it cannot be inferred.")
@click.option("--allow-pickle", is_flag=True, help="Accept pickle weights when the repo has no safetensors.")
@click.option("--no-build", is_flag=True, help="Stop after the download.")
@click.option(
    "--upgrade", is_flag=True, help="Re-resolve a branch or tag pulled before (it otherwise keeps its commit)."
)
@click.option(
    "-f", "--force", is_flag=True, help="Download every file again (verified) and rebuild, even if already pulled."
)
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=4, show_default=True, help="Parallel downloads.")
@OFFLINE
@JSON
@pass_context
def pull(
    ctx: Context, ref, registry, revision, task, allow_pickle, no_build, upgrade, force, jobs, offline, as_json
) -> None:
    """Download a model (org/name[@REV], hf:org/name[@REV], path:./dir) into the store and build it."""
    from gpuxbuild.models.pull import parse_ref

    store = _store()
    parsed = parse_ref(ref, registry=registry, revision=revision)
    reporter = RichReporter() if show_progress(ctx, as_json) else None
    args = (allow_pickle, task, no_build, upgrade, force, jobs, offline, as_json)
    if no_build:  # nothing to export, and no remote cache to ask: neither is even imported
        _pull(ctx, parsed, store, reporter, None, None, *args)
        return
    from gpuxbuild.build.convert import ExportPool
    from gpuxbuild.build.remote_artifact import project_remotes

    remotes = project_remotes(None)
    with ExportPool(1) as pool:  # its worker starts (and imports) during the download when a build will export
        _pull(ctx, parsed, store, reporter, remotes, pool, *args)


def _pull(
    ctx, parsed, store, reporter, remotes, pool, allow_pickle, task, no_build, upgrade, force, jobs, offline, as_json
):
    from gpuxbuild.models.pull import human_size
    from gpuxbuild.models.pull import pull as do_pull

    prestart = None
    if not no_build:
        from gpuxbuild.build.pipeline import prestart_export

        prestart = prestart_export(pool, parsed, allow_pickle, store, remotes)

    def on_resolved(record):
        if prestart:
            prestart(record)
        if not ctx.quiet and not as_json:
            say(
                f"{parsed}: commit {record.commit[:12]}, {counted(len(record.files), 'file')}, {human_size(record.size)}"
            )
        if reporter:
            reporter.begin(record.size, {f["path"]: f["size"] for f in record.files if store.has_object(f["sha256"])})

    t0 = time.perf_counter()
    try:
        res = do_pull(
            parsed,
            store=store,
            project=ctx.project,
            offline=offline,
            allow_pickle=allow_pickle,
            task=task,
            upgrade=upgrade,
            force=force,
            jobs=jobs,
            reporter=reporter,
            on_resolved=on_resolved,
        )
    finally:
        if reporter:
            reporter.close()
        store.save_counters()
    elapsed = time.perf_counter() - t0
    if not ctx.quiet and not as_json:  # said before the build starts, which may take a while
        if res.already:
            say(f"{parsed}: already in the store, nothing downloaded")
            if not res.resolved_online and not offline and parsed.registry != "local":
                say(
                    f"{parsed}: kept commit {res.record.commit[:12]} from the earlier pull; --upgrade checks for a newer one"
                )
        else:
            say(
                f"{parsed}: downloaded {counted(res.objects_downloaded, 'file')} ({human_size(res.bytes_downloaded)}) in {elapsed:.1f}s"
            )
    built = None
    if not no_build:
        from gpuxbuild.build.pipeline import build_pulled

        with transfer_progress(ctx, as_json, remotes):
            built = build_pulled(res, store=store, offline=offline, remotes=remotes, force=force, pool=pool)
    if as_json:
        out = res.as_dict()
        if built is not None:
            out["build"] = built.as_dict()
        print_json(out)
        return
    if built is not None and built.digest is not None and not ctx.quiet:  # a build that returned has a digest
        say(f"{parsed}: artifact {built.digest[:19]} ({built.status}) at {built.path}")


def _when(ts) -> str:
    if not ts:
        return "-"
    d = time.time() - ts
    for unit, secs in (("d", 86400), ("h", 3600), ("m", 60)):
        if d >= secs:
            return f"{int(d // secs)}{unit} ago"
    return "just now"


@cli.command("ls")
@JSON
@pass_context
def ls(ctx: Context, as_json: bool) -> None:
    """List pulled and synced models."""
    from gpuxbuild.models.pull import human_size, list_models

    rows = list_models(_store())
    if as_json:
        print_json(rows)
        return
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None)
    for col in ("NAME", "REVISION", "COMMIT", "TASK", "SIZE", "LAST USED", "KIND"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        cells = (
            r["name"],
            r.get("revision") or "-",
            (r.get("commit") or "")[:12],
            r.get("task") or "-",
            human_size(r.get("size") or 0),
            _when(r.get("last_used")),
            r["kind"],
        )
        table.add_row(*(Text(c) for c in cells))
    # Never cut a value (names and commits are what the next command takes): rows longer than the
    # terminal wrap there, as any long line does; piped rows are as long as they need.
    natural = Measurement.get(console.get(), console.options.update(width=10_000), table).maximum
    Console(width=max(natural, console.width), highlight=False, emoji=False).print(table)


cli.add_command(ls, "images")


@cli.command("rm")
@click.argument("names", nargs=-1, required=True)
@JSON
@pass_context
def rm(ctx: Context, names, as_json: bool) -> None:
    """Forget pulled models (NAME[@REV]); files another model or a synced project uses stay."""
    from gpuxbuild.models.pull import human_size, remove

    store = _store()
    out = []
    for name in names:
        recs, freed = remove(name, store)
        out.append({"name": name, "commits": [r.commit for r in recs], "bytes_freed": freed})
        if not as_json and not ctx.quiet:
            say(f"Removed {name} ({', '.join(r.commit[:12] for r in recs)}), freed {human_size(freed)}")
    if as_json:
        print_json(out)


cli.add_command(rm, "rmi")


@cli.command()
@click.argument("name")
@JSON
@pass_context
def inspect(ctx: Context, name: str, as_json: bool) -> None:
    """Everything known about a pulled model or a model of this project."""
    from gpuxbuild.models.inspect import inspect_model

    data = inspect_model(name, store=_store(), project=ctx.project)
    if as_json:
        print_json(data)
        return
    from gpuxbuild.models.pull import human_size

    for key in (
        "name",
        "kind",
        "registry",
        "repo",
        "revision",
        "commit",
        "task",
        "library",
        "architecture",
        "license",
        "size",
    ):
        if data.get(key) is not None:
            say(human_size(data[key]) if key == "size" else str(data[key]), label=f"{key}: ")
    art = data.get("artifact")
    say(f"{art['digest']} at {art['path']}" if art else "not built", label="artifact: ")
    if art and art.get("gpux_yml"):
        say(art["gpux_yml"], label="gpux.yml: ")
    say("", label="files:")
    for f in data.get("files", []):
        say(f"  {f['sha256'][:16]}  {human_size(f['size']):>9}  {f['path']}")


@cli.group()
def cache() -> None:
    """Inspect and maintain the store ($GPUX_HOME)."""


@cache.command()
@click.option("--fix", is_flag=True, help="Remove every object or artifact that fails.")
@JSON
@pass_context
def verify(ctx: Context, fix: bool, as_json: bool) -> None:
    """Re-hash the store and check provenance; exit 1 if any object's bytes do not match its name."""
    from gpuxbuild.build.provenance import EVIDENCE, rehash_with_provenance
    from gpuxbuild.store.gc import verify as do_verify

    report = do_verify(_store(), rehash_with_provenance, fix=fix)
    if as_json:
        print_json(report.as_dict())
    else:
        for b in report.bad_objects:
            say(
                f"{b['object']} (content hashes to {b['actual']})" + (" - quarantined" if fix else ""),
                label="corrupt object ",
                style="red",
            )
        for b in report.bad_artifacts:
            evidence_only = all(p.split(":", 1)[0] in EVIDENCE for p in b["problems"])
            say(
                f"{b['artifact']}: {'; '.join(b['problems'])}" + (" - quarantined" if fix else ""),
                label="corrupt provenance " if evidence_only else "corrupt artifact ",
                style="red",
            )
        if not ctx.quiet:
            n = len(report.bad_objects) + len(report.bad_artifacts)
            evidence = any(p.split(":", 1)[0] in EVIDENCE for b in report.bad_artifacts for p in b["problems"])
            say(
                f"Checked {counted(report.checked, 'file')}: {counted(n, 'problem')}"
                + ("" if n == 0 or fix else "; run `gpux cache verify --fix`")
                + (
                    ", then `gpux build` builds (or downloads) it again with its provenance"
                    if evidence and not fix
                    else ""
                )
            )
    if report and not fix:
        sys.exit(1)


@cache.command()
@click.option("--dry-run", is_flag=True, help="Only print what would be removed.")
@click.option(
    "--partials",
    is_flag=True,
    help="Also remove interrupted downloads (kept to resume them), except those being written now.",
)
@JSON
@pass_context
def prune(ctx: Context, dry_run: bool, partials: bool, as_json: bool) -> None:
    """Remove objects and artifacts no pulled model, synced project or recent build uses."""
    from gpuxbuild.models.pull import human_size
    from gpuxbuild.store.gc import prune as do_prune
    from gpuxbuild.store.refs import live_roots

    report = do_prune(_store(), live_roots, dry_run=dry_run, partials=partials)
    if as_json:
        print_json({**report.as_dict(), "dry_run": dry_run})
        return
    verb = "Would free" if dry_run else "Freed"
    extra = "".join(
        f", {text}"
        for text in (
            f"{len(report.quarantined)} quarantined" if report.quarantined else "",
            counted(len(report.partials), "partial download") if report.partials else "",
        )
        if text
    )
    say(
        f"{verb} {human_size(report.bytes_freed)}: {counted(len(report.objects), 'object')}, "
        f"{counted(len(report.artifacts), 'artifact')}{extra}"
    )
    if report.partial_bytes_kept and not partials:
        say(
            f"{human_size(report.partial_bytes_kept)} of interrupted downloads kept to resume them: "
            "`gpux cache prune --partials` removes them"
        )


@cache.command("info")
@JSON
@pass_context
def cache_info(ctx: Context, as_json: bool) -> None:
    """Store size, object counts and hit/miss counters."""
    from gpuxbuild.models.pull import human_size
    from gpuxbuild.store.gc import info
    from gpuxbuild.store.refs import live_roots

    store = _store()
    data = info(store, live_roots(store))
    if as_json:
        print_json(data)
        return
    say(f"store: {data['root']}")
    say(f"objects: {data['objects']} ({human_size(data['objects_bytes'])})")
    say(f"artifacts: {data['artifacts']} ({human_size(data['artifacts_bytes'])})")
    say(f"pulled models: {data['pulled_models']}, synced projects: {data['synced_projects']}")
    c = data["counters"]
    say(
        f"hits: {c.get('object_hits', 0)}, downloads: {c.get('object_downloads', 0)} "
        f"({human_size(c.get('bytes_downloaded', 0))}), builds: {c.get('builds', 0)}, build hits: {c.get('build_hits', 0)}"
    )


@cache.group("remote")
def cache_remote() -> None:
    """List and check what the remote cache holds (--remote, GPUX_REMOTE or the manifest's cache.remote)."""


def _remotes(ctx: Context, remote: tuple[str, ...]):
    from gpuxbuild.cli.app import open_remotes
    from gpuxbuild.errors import GpuxError

    remotes = open_remotes(ctx, remote, False)
    if not remotes:
        raise GpuxError(
            "no remote cache configured",
            "pass --remote URL, set GPUX_REMOTE, or add `cache: {remote: URL}` to gpux.models.yml",
            exit_code=2,
        )
    return remotes


REMOTE_URL = click.option("--remote", "remote", multiple=True, metavar="URL", help="Remote cache (repeatable).")


@cache_remote.command("ls")
@REMOTE_URL
@JSON
@pass_context
def cache_remote_ls(ctx: Context, remote: tuple[str, ...], as_json: bool) -> None:
    """List the artifacts on the remote cache(s)."""
    from dataclasses import asdict

    from gpuxbuild.models.pull import human_size
    from gpuxbuild.remote.inventory import list_artifacts

    rows = list_artifacts(_remotes(ctx, remote))
    if as_json:
        print_json([asdict(r) for r in rows])
        return
    for r in rows:
        say(f"{r.name}  {r.task}  {r.digest[:19]}  {counted(r.files, 'file')}  {human_size(r.size)}  {r.remote}")
    if not ctx.quiet:
        say(counted(len(rows), "artifact"))


@cache_remote.command("verify")
@REMOTE_URL
@JSON
@pass_context
def cache_remote_verify(ctx: Context, remote: tuple[str, ...], as_json: bool) -> None:
    """Download and re-hash every object of the remote cache(s), check provenance; exit 1 on any problem."""
    from gpuxbuild.build.provenance import EVIDENCE, evidence_problem
    from gpuxbuild.remote.inventory import verify as remote_verify

    report = remote_verify(_remotes(ctx, remote), EVIDENCE, evidence_problem)
    if as_json:
        print_json(report.as_dict())
    else:
        for p in report.problems:
            say(p, label="corrupt ", style="red")
        if not ctx.quiet:
            say(
                f"Checked {counted(report.artifacts, 'artifact')} and {counted(report.blobs, 'blob')}: "
                f"{counted(len(report.problems), 'problem')}"
            )
    if report.problems:
        sys.exit(1)
