"""Docker-like ad hoc models: `gpux pull`, `ls`, `rm`, `inspect`.

A pulled model is recorded in the store (refs/pulled/...) with its commit and files; a tag record maps
the requested revision to that commit so that `gpux run org/name` finds it without the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gpuxbuild.errors import GpuxError, shorten
from gpuxbuild.fsutil import remove_tree
from gpuxbuild.project.manifest import adhoc_spec, check_revision
from gpuxbuild.project.selection import check_pickles, is_pickle
from gpuxbuild.registries import get_manager, parse_source
from gpuxbuild.registries.base import is_git_commit
from gpuxbuild.store.fetch import Fetcher, Reporter, missing_files
from gpuxbuild.store.files import FileEntry
from gpuxbuild.store.refs import PulledRecord, Records, live_roots, project_records

if TYPE_CHECKING:
    from gpuxbuild.project.lockfile import LockedModel
    from gpuxbuild.store.objects import Store


@dataclass(frozen=True)
class Ref:
    """A parsed `[registry:]repo[@revision]` reference."""

    registry: str
    repo: str
    revision: str | None

    def __str__(self) -> str:
        if "://" in self.repo:  # a URL source (s3://, https://, oci://) is its own reference
            return self.repo + (f"@{self.revision}" if self.revision else "")
        prefix = (
            "path:" if self.registry == "local" else ("" if self.registry == "huggingface" else f"{self.registry}:")
        )
        return f"{prefix}{self.repo}" + (f"@{self.revision}" if self.revision else "")


def parse_ref(text: str, *, registry: str | None = None, revision: str | None = None) -> Ref:
    """`org/name`, `org/name@REV`, `hf:org/name[@REV]`, `path:./dir`; `--revision REV` may repeat `@REV`, not contradict it."""
    # A URL source pins itself, and may hold an `@` of its own (oci://...@sha256:..., https://user@host/...);
    # an MLflow source names its alias itself (NAME@ALIAS).
    own = "://" in text or text.startswith("mlflow:")
    body, _, rev = text.rpartition("@") if "@" in text and not own else (text, "", None)
    if rev is not None and revision is not None and rev != revision:
        raise GpuxError(f"{shorten(text)}: revision given twice ({rev!r} and --revision {revision!r})", "give it once")
    rev = rev if revision is None else revision
    if rev is not None:
        bad = check_revision(rev)
        if bad:
            raise GpuxError(f"{shorten(text)}: {bad}", "use a branch, tag or 40-hex commit", exit_code=2)
    try:
        reg, repo = parse_source(body, registry)
    except GpuxError as exc:
        raise GpuxError(f"{shorten(text) or repr(text)}: {exc.message}", exc.hint, exit_code=2) from None
    return Ref(reg, repo, rev)


@dataclass
class PullResult:
    ref: Ref
    record: PulledRecord
    downloaded: list[str]  # paths this pull downloaded (small files fetched while resolving included)
    cached: list[str]  # paths that were in the store already
    project: Path
    objects_downloaded: int = 0  # every object this pull stored, small files hashed while resolving included
    bytes_downloaded: int = 0
    resolved_online: bool = False  # False: the pin came from the store (pulled before, or offline)
    allow_pickle: bool = False

    @property
    def already(self) -> bool:
        """Everything was in the store: nothing was downloaded."""
        return self.objects_downloaded == 0

    def as_dict(self) -> dict:
        return {
            "ref": str(self.ref),
            "commit": self.record.commit,
            "task": self.record.task,
            "size": self.record.size,
            "files": len(self.record.files),
            "downloaded": self.downloaded,
            "cached": self.cached,
            "objects_downloaded": self.objects_downloaded,
            "bytes_downloaded": self.bytes_downloaded,
            "already_pulled": self.already,
            "resolved_online": self.resolved_online,
            "artifact": self.record.artifact.as_dict() if self.record.artifact else None,
        }


def make_record(ref: Ref, commit: str, files: list[FileEntry], task, library, architecture, license_) -> PulledRecord:
    """The pulled-model record kept under refs/pulled (canonical JSON, no timestamps)."""
    return PulledRecord(
        registry=ref.registry,
        repo=ref.repo,
        commit=commit,
        task=task,
        library=library,
        architecture=architecture,
        license=license_,
        files=[f.as_dict() for f in sorted(files)],
        size=sum(f.size for f in files),
    )


def early_files(spec, keep: set[str] | None, listed: list[FileEntry]) -> list[FileEntry]:
    """Of the files a registry listed with their sha256 before resolving the rest, those the pull will
    fetch whatever the rest turns out to be: `keep`, the lock's selection, decides by names alone.
    Nothing when the selection failed or keeps pickles the model does not allow (resolving reports it)."""
    if not keep or (not spec.allow_pickle and any(is_pickle(p) for p in keep)):
        return []
    return [f for f in listed if f.path in keep]


def pull(
    ref: Ref,
    *,
    store: Store,
    project: Path,
    offline: bool = False,
    allow_pickle: bool = False,
    task: str | None = None,
    upgrade: bool = False,
    force: bool = False,
    jobs: int = 4,
    reporter: Reporter | None = None,
    on_resolved=None,
) -> PullResult:
    """Resolve `ref`, download what the store lacks, and record it.

    A revision pulled before keeps the commit it was pinned to, with no request at all (like an
    unchanged entry of gpux.lock); `upgrade` re-resolves it online, as `gpux lock --upgrade` does.
    `force` downloads every file again, verified, even those in the store (the pin is kept).
    """
    from gpuxbuild.project.resolver import resolve_model

    store.clean_tmp()
    records = Records(store)
    manager = get_manager(ref.registry, project=project, offline=offline, store=store)
    if force and manager.offline:
        raise GpuxError(
            f"{ref}: --force downloads every file again, which offline mode (--offline, HF_HUB_OFFLINE) forbids",
            "drop --offline, or drop --force to use what the store has",
            exit_code=2,
        )
    tag = ref.revision or ("main" if ref.registry != "local" else None)
    known = records.lookup(ref.registry, ref.repo, tag) if ref.registry != "local" else None
    before = (*store.stats.stored(), set(store.downloaded_objects))
    online = not manager.offline and (known is None or (upgrade and not is_git_commit(ref.revision)))
    if not online and known is None:
        raise GpuxError(
            f"{ref}: not in the store, and offline mode is on",
            "pull it once online; `gpux ls` shows what is available offline",
        )
    with Fetcher(manager, ref.repo, store, label=str(ref), jobs=jobs, reporter=reporter, force=force) as fetcher:
        record = known
        if online:
            spec = adhoc_spec(
                str(ref), ref.registry, ref.repo, revision=ref.revision, task=task, allow_pickle=allow_pickle
            )

            def on_listed(commit: str, listed: list[FileEntry], keep: set[str] | None) -> None:
                fetcher.add(commit, early_files(spec, keep, listed))

            entry: LockedModel = resolve_model(manager, spec, on_listed=on_listed)
            record = make_record(
                ref, entry.commit, entry.files, entry.task, entry.library, entry.architecture, entry.license
            )
        if record is None:  # offline without a record was refused above
            raise ValueError(f"{ref}: neither resolved nor pulled before")
        files = [FileEntry(f["path"], f["sha256"], f["size"]) for f in record.files]
        if on_resolved:
            on_resolved(record)
        check_pickles(str(ref), files, allow_pickle)
        fetcher.add(record.commit, files)
        fetcher.wait()
    # Saving the record and checking its objects under the gc lock means a concurrent `rm`/`cache prune`
    # either saw the record (and kept the objects) or ran before, and what it deleted is fetched again.
    with store.lock("gc"):
        record = records.save(record, tag)
        missing = missing_files(store, files)
    if missing:
        manager.fetch(ref.repo, record.commit, missing, label=str(ref), jobs=jobs, reporter=reporter)
    new = store.downloaded_objects - before[2]
    return PullResult(
        ref,
        record,
        sorted(f.path for f in files if f.sha256 in new),
        sorted(f.path for f in files if f.sha256 not in new),
        project,
        objects_downloaded=store.stats.stored()[0] - before[0],
        bytes_downloaded=store.stats.stored()[1] - before[1],
        resolved_online=online,
        allow_pickle=allow_pickle,
    )


def resolve_name(name: str, store: Store) -> PulledRecord:
    """The pulled record `name` (`org/name[@rev]`) refers to, or a GpuxError listing what is there."""
    ref = parse_ref(name)
    records = Records(store)
    rec = records.lookup(ref.registry, ref.repo, ref.revision)
    if rec is None:
        found = records.find(ref.registry, ref.repo, None)
        if len(found) > 1:
            commits = ", ".join(r.commit[:12] for r in found)
            raise GpuxError(f"{name}: several revisions are pulled ({commits})", f"say which: {ref.repo}@REVISION")
        raise GpuxError(f"{name}: no such pulled model", f"pull it with `gpux pull {name}`; `gpux ls` lists models")
    return rec


def remove(name: str, store: Store) -> tuple[list[PulledRecord], int]:
    """Forget the pulled model(s) `name` matches and delete their objects and artifact that nothing else
    (another pulled model, a synced project) uses. Returns (records removed, bytes freed)."""
    from gpuxbuild.store.gc import tree_size

    ref = parse_ref(name)
    records = Records(store)
    with store.lock("gc"):
        victims = records.find(ref.registry, ref.repo, ref.revision)
        if not victims:
            raise GpuxError(f"{name}: no such pulled model", "`gpux ls` lists pulled models")
        for rec in victims:
            records.delete(rec)
        roots = live_roots(store)
        freed = 0
        for sha in sorted({f["sha256"] for rec in victims for f in rec.files} - roots.objects):
            p = store.object_path(sha)
            with store.lock(f"obj-{sha}"):
                if p.exists():
                    freed += p.stat().st_size
                    p.unlink()
        for key in sorted({r.artifact.key_hex for r in victims if r.artifact} - {""}):
            if key not in roots.artifacts:
                d = store.root / "artifacts" / key
                if d.is_dir():
                    freed += tree_size(d)
                    remove_tree(d)
    return victims, freed


def list_models(store: Store) -> list[dict]:
    """Pulled models (with tags and last use) and models of synced projects, for `gpux ls`."""
    records = Records(store)
    rows = []
    for rec in records.all():
        tags = records.tags_of(rec)
        rows.append(
            {
                "name": str(Ref(rec.registry, rec.repo, None)),
                "kind": "pulled",
                "revision": ",".join(tags) or None,
                "commit": rec.commit,
                "task": rec.task,
                "size": rec.size,
                "last_used": records.last_used(rec),
            }
        )
    for proj in project_records(store.root):
        for name, m in sorted(proj.models.items()):
            rows.append(
                {
                    "name": name,
                    "kind": "synced",
                    "project": proj.project,
                    "revision": m.revision,
                    "commit": m.commit,
                    "task": m.task,
                    "size": m.size,
                    "last_used": proj.synced_at,
                }
            )
    return rows


def human_size(n: float) -> str:
    """`1.5 MB` style sizes (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
