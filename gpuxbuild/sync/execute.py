"""`gpux sync`: carry out a sync plan (gpuxbuild.sync.plan), and the command itself (docs/sync.md).

Nothing in the target changes until every artifact the plan needs is in the store. Each model folder is
prepared beside the old one and swapped in by an atomic rename, so a sync killed at any moment leaves
every model either fully old or fully new.
"""

from __future__ import annotations

import errno
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gpuxbuild.errors import GpuxError
from gpuxbuild.fsutil import fsync_dir, remove_tree, write_atomic
from gpuxbuild.store.linker import Linker
from gpuxbuild.store.objects import Store
from gpuxbuild.store.refs import (
    ArtifactRef,
    ProjectModel,
    ProjectRecord,
    project_id,
    project_record_path,
    read_project_record,
)
from gpuxbuild.sync.plan import ARTIFACT_MANIFEST, ModelAction, SyncPlan, plan_remote, plan_sync, record_inputs
from gpuxbuild.sync.record import (
    DEFAULT_TARGET,
    FAST_PATH_MAX_AGE,
    OLD_PREFIX,
    RECORD_NAME,
    TMP_PREFIX,
    PlacedModel,
    SyncRecord,
    fingerprint,
    noop_state,
    read_record,
    stat_record,
)

if TYPE_CHECKING:
    from pathlib import Path

    from gpuxbuild.project.lockfile import Lock
    from gpuxbuild.remote.cache import RemoteCache

Event = Callable[[str, str], None]  # (model name, what is happening)


# ------------------------------------------------------------------------------------- placement


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE). False where unsupported."""
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _write_record(target: Path, record: SyncRecord) -> None:
    write_atomic(target / RECORD_NAME, record.to_json())


# --------------------------------------------------------------------------------------- execute


@dataclass
class SyncResult:
    """What `execute` did: the plan, artifact and source counters, and how files were placed."""

    plan: SyncPlan
    reused: int = 0
    built: int = 0
    downloaded: int = 0  # artifacts from the remote cache
    sources_downloaded: int = 0
    bytes_downloaded: int = 0
    sources_copied: int = 0  # from local folders (path: models)
    bytes_copied: int = 0
    link_modes: list[str] = field(default_factory=list)
    digests: dict[str, str | None] = field(default_factory=dict)  # model -> artifact digest now in the target
    lock_written: bool = False
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {
            **self.plan.as_dict(),
            "dry_run": self.dry_run,
            "cache": {
                "artifacts_reused": self.reused,
                "artifacts_built": self.built,
                "artifacts_downloaded": self.downloaded,
                "sources_downloaded": self.sources_downloaded,
                "bytes_downloaded": self.bytes_downloaded,
                "sources_copied": self.sources_copied,
                "bytes_copied": self.bytes_copied,
            },
            "link_modes": self.link_modes,
            "digests": self.digests,
            "lock_written": self.lock_written,
        }


def _ensure_artifacts(
    plan: SyncPlan, store: Store, *, offline: bool, on_event: Event, res: SyncResult, remotes: RemoteCache | None
) -> dict[str, Path]:
    """Every artifact the plan places, from the store or built; one error naming every model that failed."""
    from gpuxbuild.build.pipeline import build_many, job_from_lock
    from gpuxbuild.store.artifacts import artifact_digest, artifact_path, verified_artifact

    placed = [act for act in plan.models if act.action in ("add", "update")]
    missing = []
    for act in placed:
        key = _build_key(act)
        dest = artifact_path(store, key)
        if verified_artifact(store, key) is not None:  # a corrupt one is quarantined and built again
            res.reused += 1
            os.utime(dest)  # a recent use keeps it from `cache prune`
        else:
            on_event(act.name, "building")
            missing.append(act)
    # Missing artifacts are built together: in parallel, with export workers shared between models.
    results = build_many(
        [job_from_lock(plan.require_lock().models[act.name], plan.manifest) for act in missing],
        store=store,
        project=plan.project,
        offline=offline,
        on_stage=on_event,
        remotes=remotes,
    )
    # build_many puts the exception on every failed result; its message and hint stand in should one lack it.
    failures = [
        (r.name, r.exception or GpuxError(r.error or "build failed", r.hint)) for r in results if r.status == "failed"
    ]
    res.built += sum(r.status == "built" for r in results)
    res.downloaded += sum(r.status == "downloaded" for r in results)
    res.reused += sum(r.status == "cached" for r in results)
    failed = {name for name, _ in failures}
    paths = {}
    for act in placed:
        if act.name not in failed:
            dest = artifact_path(store, _build_key(act))
            act.digest = artifact_digest(dest)
            paths[act.name] = dest
    res.sources_downloaded, res.bytes_downloaded = store.stats.downloaded, store.stats.bytes_downloaded
    res.sources_copied, res.bytes_copied = store.stats.copied, store.stats.bytes_copied
    if failures:
        raise _build_failure(failures)
    return paths


def _build_key(act: ModelAction) -> str:
    """The build key of a model sync places: plan_sync gives one to every model of the lock."""
    if act.build_key is None:
        raise ValueError(f"sync plan: model {act.name!r} to place has no build key")
    return act.build_key


def _build_failure(failures: list[tuple[str, GpuxError]]) -> GpuxError:
    """One error for all models that could not be built; models that miss an extra are named together."""
    from gpuxbuild.errors import MissingExtraError

    missing = [(n, e) for n, e in failures if isinstance(e, MissingExtraError)]
    if missing:
        found = re.search(r"the '([\w-]+)' extra", missing[0][1].message)
        names = ", ".join(n for n, _ in missing)
        exc = MissingExtraError(
            found.group(1) if found else "convert", f"syncing {names} (not in the store, so they must be built)"
        )
        exc.hint = f"{exc.hint}; or build them where it is installed and share the store (GPUX_HOME)"
        return exc
    name, first = failures[0]
    more = f" (also failed: {', '.join(n for n, _ in failures[1:])})" if len(failures) > 1 else ""
    msg = (
        first.message
        if first.message.startswith("model ")
        else f"model {name!r}: {first.message.removeprefix(name + ': ')}"
    )
    return GpuxError(msg + more, first.hint, exit_code=first.exit_code)


def _check_recorded_digests(plan: SyncPlan) -> None:
    """An artifact recorded in gpux.lock with the same build key must have the same digest: nothing else is placed,
    and the lock is not rewritten."""
    from gpuxbuild.build.artifact import not_reproducible

    for act in plan.models:
        entry = plan.require_lock().models.get(act.name)
        art = entry.artifact if entry else None
        if act.action == "remove" or not art or art.get("build_key") != act.build_key or not act.digest:
            continue
        if art.get("digest") != act.digest:
            raise not_reproducible(act.name, act.digest, art.get("digest", ""))


def _materialize(plan: SyncPlan, act: ModelAction, src: Path, linker: Linker, record: SyncRecord, store: Store) -> None:
    """Prepare the model's new folder beside the old, record it, then swap it in atomically."""
    target = plan.target
    folder = target / act.name
    tmp = target / f"{TMP_PREFIX}{act.name}-{uuid.uuid4().hex[:12]}"
    from gpuxbuild.store.artifacts import read_manifest

    files = {f.path: f.sha256 for f in read_manifest(src).listed()}
    if act.digest is None:  # _ensure_artifacts gave every model it placed one
        raise ValueError(f"sync plan: model {act.name!r} to place has no artifact digest")
    files[ARTIFACT_MANIFEST] = act.digest.removeprefix("sha256:")
    tmp.mkdir()
    try:
        stats = _prepare(tmp, src, files, folder, act, linker, store)
    except BaseException:
        remove_tree(tmp, ignore_errors=True)
        raise
    entry = plan.require_lock().models[act.name]
    record.models[act.name] = PlacedModel(act.build_key, act.digest, stats, record_inputs(entry))
    # Recorded before the swap: a kill in between leaves an old folder whose stats do not match, which the
    # next sync re-hashes and restores.
    _write_record(target, record)
    if folder.exists() or folder.is_symlink():
        if not _exchange(tmp, folder):
            old = target / f"{OLD_PREFIX}{act.name}-{uuid.uuid4().hex[:12]}"
            os.rename(folder, old)
            os.rename(tmp, folder)
            tmp = old
        fsync_dir(target)
        remove_tree(tmp, ignore_errors=True)
    else:
        os.rename(tmp, folder)
        fsync_dir(target)


def _prepare(
    tmp: Path, src: Path, files: dict[str, str], folder: Path, act: ModelAction, linker: Linker, store: Store
) -> dict:
    """Fill the staging folder: the artifact's files, plus the user's files of the old folder; return stat records."""
    from gpuxbuild.store.artifacts import refresh_verified

    stats, linked = {}, {}
    for rel, sha in sorted(files.items()):
        dst = tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        before = os.stat(src / rel)
        linker.place(src / rel, dst)
        linked[rel] = before, os.lstat(dst)
        stats[rel] = stat_record(sha, linked[rel][1])
    refresh_verified(store, _build_key(act), linked)
    for rel in act.user_files:
        # A user's file in the old folder lives on in the new one: a second link, so a kill loses nothing.
        inner = rel.split("/", 1)[1]
        if inner in files:
            raise GpuxError(
                f"{rel} is your file, but the new artifact of {act.name!r} has a file there",
                "move your file elsewhere and sync again",
            )
        (tmp / inner).parent.mkdir(parents=True, exist_ok=True)
        os.link(folder / inner, tmp / inner, follow_symlinks=False)
    fsync_dir(tmp)
    return stats


def _remove(plan: SyncPlan, act: ModelAction, record: SyncRecord) -> None:
    """Remove what sync placed for a model; a user's files stay where they are."""
    folder = plan.target / act.name
    rec = record.models[act.name]
    if folder.is_dir() and not act.user_files:
        old = plan.target / f"{OLD_PREFIX}{act.name}-{uuid.uuid4().hex[:12]}"
        os.rename(folder, old)
        remove_tree(old, ignore_errors=True)
    elif folder.is_dir():
        for rel in rec.files:
            p = folder / rel
            if p.is_file() or p.is_symlink():
                p.unlink()
        for dirpath, _, _ in sorted(os.walk(folder), key=lambda w: -len(w[0])):
            if dirpath != str(folder) and not os.listdir(dirpath):
                os.rmdir(dirpath)
    del record.models[act.name]
    _write_record(plan.target, record)


def _project_record(plan: SyncPlan, store: Store, digests: dict[str, str | None]) -> None:
    """refs/projects/<sha256 of the project path>.json: what `cache prune` and `ls` must keep for this project."""
    models = {}
    for name, entry in sorted(plan.require_lock().models.items()):
        act = next(a for a in plan.models if a.name == name)
        models[name] = ProjectModel(
            commit=entry.commit,
            revision=entry.revision,
            task=entry.task,
            size=entry.size,
            files=sorted({f.sha256 for f in entry.files}),
            artifact=ArtifactRef(digests.get(name), act.build_key),
        )
    doc = ProjectRecord(str(plan.project.resolve()), int(time.time()), models)
    path = project_record_path(store.root, plan.project)
    old = read_project_record(path)
    if old and old.models == models and time.time() - (old.synced_at or 0) < FAST_PATH_MAX_AGE / 2:
        return  # nothing changed since a recent sync: spare the write
    write_atomic(path, doc.to_json())


def execute(
    plan: SyncPlan,
    *,
    store: Store,
    link_mode: str = "auto",
    offline: bool = False,
    on_event: Event | None = None,
    remotes: RemoteCache | None = None,
) -> SyncResult:
    """Carry out a plan: artifacts from the store (built when missing), then each model swapped in atomically.

    Nothing in the target changes until every artifact the plan needs is available. Must run under
    `project_lock` (as `sync` does) so two syncs of one project do not interleave.
    """
    on_event = on_event or (lambda n, s: None)
    res = SyncResult(plan)
    linker = Linker(link_mode)
    conflicts = [a.conflict for a in plan.models if a.conflict and a.action != "unchanged"]
    if conflicts:
        raise GpuxError(
            f"refusing to replace {plan.target.name}/{conflicts[0]}", "move that folder away and sync again"
        )
    sources = _ensure_artifacts(plan, store, offline=offline, on_event=on_event, res=res, remotes=remotes)
    _check_recorded_digests(plan)
    target = plan.target
    new_target = not target.is_dir()
    target.mkdir(parents=True, exist_ok=True)
    if new_target:
        (target / ".gitignore").write_text("# Written by gpux sync: these models come from gpux.lock.\n*\n")
    for name in plan.leftovers:
        remove_tree(target / name, ignore_errors=True)
    record = plan.record
    record_dirty = False
    for act in plan.models:
        if act.action in ("add", "update"):
            on_event(act.name, "placing")
            _materialize(plan, act, sources[act.name], linker, record, store)
        elif act.action == "remove":
            _remove(plan, act, record)
        elif act.refresh:
            record.models[act.name].files.update(act.refresh)
            record_dirty = True
        if act.name in record.models:
            res.digests[act.name] = record.models[act.name].digest
    if record_dirty or (new_target and not plan.models):
        _write_record(target, record)
    res.link_modes = sorted(linker.used)
    _project_record(plan, store, res.digests)
    store.save_counters(builds=res.built, build_hits=res.reused)
    return res


# ------------------------------------------------------------------------------------- the command


def project_lock(store: Store, project: Path):
    """The inter-process lock that serializes syncs (and their re-locks) of one project."""
    return store.lock(f"project-{project_id(project)}")


def sync(
    project: Path,
    *,
    target: Path | None = None,
    locked: bool = False,
    frozen: bool = False,
    offline: bool = False,
    dry_run: bool = False,
    link_mode: str = "auto",
    store: Store | None = None,
    on_event: Event | None = None,
    require_signatures: bool = False,
    remotes: RemoteCache | None = None,
) -> SyncResult:
    """`gpux sync`: check or re-lock gpux.lock (as uv does), plan, and unless `dry_run` execute the plan.

    `require_signatures`: refuse, before any work, a lock with a model whose signature `gpux lock` did not verify."""
    if locked and frozen:
        raise GpuxError(
            "--locked and --frozen exclude each other", "--frozen skips the check that --locked makes", exit_code=2
        )
    Linker(link_mode)  # reject a bad mode before any work
    store = store or Store()
    project = project.resolve()
    target = (target or project / DEFAULT_TARGET).resolve()
    state = noop_state(project, target, store.root, frozen=frozen)
    if state is not None:
        if require_signatures:
            _require_signed(project)
        return _noop_result(project, target, state, dry_run=dry_run)
    with project_lock(store, project):
        res = _full_sync(
            project,
            target,
            store,
            locked=locked,
            frozen=frozen,
            offline=offline,
            dry_run=dry_run,
            link_mode=link_mode,
            on_event=on_event,
            require_signatures=require_signatures,
            remotes=remotes,
        )
        if not dry_run:
            record = read_record(target)
            record.fast = fingerprint(project, frozen)
            _write_record(target, record)
        return res


def _require_signed(project: Path) -> None:
    """Refuse unsigned models of the project's (up-to-date) gpux.lock."""
    from gpuxbuild.project.lockfile import lock_path, read_lock, verify_lock
    from gpuxbuild.project.signatures import require_signed

    lock = read_lock(lock_path(project))
    if lock is None:
        raise GpuxError(f"--require-signatures: no gpux.lock in {project}", "run `gpux lock` first")
    verify_lock(None, lock, project)
    require_signed(lock.models)


def _noop_result(project: Path, target: Path, state: dict, *, dry_run: bool) -> SyncResult:
    """The result of a sync that `noop_state` found to have nothing to do."""
    models = [
        ModelAction(
            m["name"],
            "unchanged",
            commit=m["commit"],
            build_key=m["build_key"],
            digest=m["digest"],
            user_files=m["user_files"],
        )
        for m in state["models"]
    ]
    plan = SyncPlan(project=project, target=target, lock=None, models=models, user_files=state["user_files"])
    return SyncResult(plan, digests={m.name: m.digest for m in models}, dry_run=dry_run)


def _full_sync(
    project: Path,
    target: Path,
    store: Store,
    *,
    locked: bool,
    frozen: bool,
    offline: bool,
    dry_run: bool,
    link_mode: str,
    on_event: Event | None,
    require_signatures: bool = False,
    remotes: RemoteCache | None = None,
) -> SyncResult:
    from gpuxbuild.project.lockfile import check_lock, lock_path, read_lock, staleness, verify_lock, write_lock

    lock = read_lock(lock_path(project))
    changes, manifest = [], None
    if frozen:
        if lock is None:
            raise GpuxError(f"--frozen: no gpux.lock in {project}", "run `gpux lock` first, or drop --frozen")
        verify_lock(None, lock, project)
    else:
        from gpuxbuild.project.manifest import MANIFEST_NAME, load_manifest

        manifest = load_manifest(project / MANIFEST_NAME)
        if locked:
            check_lock(manifest, lock)
        elif staleness(manifest, lock):
            from gpuxbuild.project.resolver import plan_lock

            lock_plan = plan_lock(manifest, lock, store=store, offline=offline)
            lock, changes = lock_plan.lock, lock_plan.changes
    if lock is None:  # a missing lock is stale: check_lock raised, or it was just locked
        raise ValueError(f"no gpux.lock in {project} after locking")
    if require_signatures:
        from gpuxbuild.project.signatures import require_signed

        require_signed(lock.models)
    plan = plan_sync(project, lock, target, store)
    plan.lock_changes, plan.manifest = changes, manifest
    if remotes:
        plan_remote(plan, remotes)
    if dry_run:
        return SyncResult(plan, dry_run=True)
    lock_written = bool(changes) and write_lock(lock_path(project), lock)
    res = execute(plan, store=store, link_mode=link_mode, offline=offline, on_event=on_event, remotes=remotes)
    res.lock_written = lock_written
    if not (locked or frozen):
        res.lock_written |= _record_artifacts(project, lock, res)
    return res


def _record_artifacts(project: Path, lock: Lock, res: SyncResult) -> bool:
    """Write each synced artifact's digest into its gpux.lock entry (only where it changed)."""
    from gpuxbuild.build.pipeline import job_from_lock
    from gpuxbuild.project.lockfile import lock_path, write_lock

    acts = {a.name: a for a in res.plan.models}
    changed = False
    for name, entry in lock.models.items():
        digest_now = res.digests.get(name)
        if not digest_now:
            continue
        rec = {"digest": digest_now, "build_key": acts[name].build_key, "toolchain": job_from_lock(entry).toolchain}
        if entry.artifact != rec:
            entry.artifact = rec
            changed = True
    return changed and write_lock(lock_path(project), lock)
