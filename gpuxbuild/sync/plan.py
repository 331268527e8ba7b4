"""The sync plan (docs/sync.md): what `gpux sync` will do to make a project's model folder mirror gpux.lock.

`plan_sync` compares the lock with what the target holds (per model: add, update, remove or unchanged,
with the reasons), as plain data; gpuxbuild.sync.execute carries the plan out. The target keeps a record
of what sync placed (gpuxbuild.sync.record), so a no-op sync only stats files, a changed or deleted file
is restored, and nothing sync did not place is ever deleted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

from gpuxbuild.hashing import digest, sha256_bytes
from gpuxbuild.sync.record import (
    OLD_PREFIX,
    OWN_FILES,
    TMP_PREFIX,
    FileStat,
    ModelInputs,
    PlacedModel,
    SyncRecord,
    check_files,
    read_record,
    summary_line,
    user_files,
)

if TYPE_CHECKING:
    from pathlib import Path

    from gpuxbuild.project.lockfile import Lock, LockedModel
    from gpuxbuild.project.manifest import Manifest
    from gpuxbuild.remote.cache import RemoteCache
    from gpuxbuild.store.objects import Store

ARTIFACT_MANIFEST = "artifact.json"  # = gpuxbuild.store.artifacts.ARTIFACT_MANIFEST, imported lazily
# What `gpux sync` does to one model folder (= the actions of gpuxbuild.sync.record.ACTIONS, which the no-op
# path uses without importing typing).
SyncAction = Literal["add", "update", "remove", "unchanged"]
SYNC_ACTIONS: tuple[SyncAction, ...] = get_args(SyncAction)
# Where a placed artifact comes from: reused from the store, downloaded from a remote cache, or built first.
ArtifactSource = Literal["store", "remote", "build"]


@dataclass
class ModelAction:
    """What sync will do to one model folder, and why."""

    name: str
    action: SyncAction
    reasons: list[str] = field(default_factory=list)
    commit: str | None = None
    build_key: str | None = None
    digest: str | None = None  # artifact digest when known before executing
    artifact: ArtifactSource | None = None  # None for removals and unchanged models
    remote: str | None = None  # the remote (URL, credentials hidden) it comes from when `artifact` is "remote"
    user_files: list[str] = field(default_factory=list)  # files in the folder that sync did not place
    conflict: str | None = None  # why the folder cannot be replaced (it is not sync's)
    refresh: dict[str, FileStat] = field(default_factory=dict)  # new stats of files re-hashed and found intact

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "action": self.action,
            "reasons": self.reasons,
            "commit": self.commit,
            "build_key": self.build_key,
            "digest": self.digest,
            "artifact": self.artifact,
            "user_files": self.user_files,
            "conflict": self.conflict,
            **({"remote": self.remote} if self.remote else {}),  # only with a remote: other output stays as it was
        }


@dataclass
class SyncPlan:
    """A sync plan as plain data; `execute` carries it out."""

    project: Path
    target: Path
    lock: Lock | None  # None when the fast path answered without parsing the lock
    models: list[ModelAction]
    user_files: list[str] = field(default_factory=list)  # target entries outside any model folder
    leftovers: list[str] = field(default_factory=list)  # staging folders of killed syncs
    lock_changes: list = field(default_factory=list)  # resolver LockChange list when the lock was re-locked
    record: SyncRecord = field(default_factory=SyncRecord)
    manifest: Manifest | None = (
        None  # the Manifest the lock was checked against (None: --frozen); grants security options
    )

    def count(self, action: SyncAction) -> int:
        return sum(m.action == action for m in self.models)

    def require_lock(self) -> Lock:
        """The lock this plan mirrors; only a fast-path answer (never executed) has none."""
        if self.lock is None:
            raise ValueError("a sync plan from the fast path has no lock to execute")
        return self.lock

    @property
    def changed(self) -> bool:
        return any(m.action != "unchanged" for m in self.models)

    def summary(self) -> str:
        return summary_line({a: self.count(a) for a in SYNC_ACTIONS})

    def as_dict(self) -> dict:
        return {
            "target": str(self.target),
            "models": [m.as_dict() for m in self.models],
            "user_files": self.user_files,
            "leftovers": self.leftovers,
            "relocked": [c.as_dict() for c in self.lock_changes if c.action != "unchanged"],
            "summary": {a: self.count(a) for a in SYNC_ACTIONS},
        }


def adopted_record(folder: Path) -> PlacedModel | None:
    """A record for a model folder that has an artifact.json but no record entry (the record was lost).

    The files artifact.json lists are gpuxbuild's; the stat fields are unknown, so every file is re-hashed.
    """
    from gpuxbuild.store.artifacts import ArtifactManifest

    try:
        data = (folder / ARTIFACT_MANIFEST).read_bytes()
        manifest = ArtifactManifest.from_dict(json.loads(data))
        files = {f.path: FileStat(f.sha256, f.size) for f in manifest.listed()}
    except (OSError, ValueError):
        return None
    files[ARTIFACT_MANIFEST] = FileStat(sha256_bytes(data), len(data))
    return PlacedModel(manifest.build_key, "sha256:" + sha256_bytes(data), files)


def record_inputs(entry: LockedModel) -> ModelInputs:
    """What the record keeps of a lock entry, to say why a model's artifact changed."""
    return ModelInputs(
        commit=entry.commit,
        options=digest(entry.options),
        sources=digest([f.as_dict() for f in sorted(entry.files)]),
        task=entry.task,
    )


def _why_changed(old: ModelInputs | None, entry: LockedModel) -> list[str]:
    old = old or ModelInputs(None, None, None, None)
    new = record_inputs(entry)
    reasons = []
    if old.commit != new.commit:
        reasons.append(f"commit {str(old.commit)[:12]} -> {str(new.commit)[:12]}")
    if old.options != new.options:
        reasons.append("options changed")
    if old.sources != new.sources and old.commit == new.commit:
        reasons.append("source files changed")
    if old.task != new.task:
        reasons.append(f"task {old.task} -> {new.task}")
    return reasons or ["toolchain changed"]


def plan_sync(project: Path, lock: Lock, target: Path, store: Store) -> SyncPlan:
    """Compare `lock` with what `target` holds; reads and stats, changes nothing."""
    from gpuxbuild.build.pipeline import job_from_lock
    from gpuxbuild.store.artifacts import artifact_digest, artifact_path

    record = read_record(target)
    record.fast = None  # whatever execute changes invalidates the fast-path memo
    placed = record.models
    plan = SyncPlan(project=project, target=target, lock=lock, models=[], record=record)
    entries = {e.name: e for e in os.scandir(target)} if target.is_dir() else {}
    for name, entry in sorted(lock.models.items()):
        job = job_from_lock(entry)
        key = job.key
        folder = target / name
        act = ModelAction(name, "unchanged", commit=entry.commit, build_key=key)
        rec = placed.get(name)
        adopted = rec is None and name in entries
        if adopted:
            rec = adopted_record(folder)
            if rec is None:
                act.conflict = f"{name}/ exists and was not placed by gpux sync"
                act.user_files = [f"{name}/{p}" for p in user_files(folder, set())]
            else:
                placed[name] = rec.replace(inputs=record_inputs(entry))  # kept (with fresh stats) if it proves intact
        store_art = artifact_path(store, key)
        if rec is None:
            act.action, act.reasons = "add", ["new in lock"]
        elif rec.build_key != key:
            act.action = "update"
            act.reasons = (
                ["not in the sync record, a different artifact"] if adopted else _why_changed(rec.inputs, entry)
            )
        else:
            # An adopted folder's files are all re-hashed, so that the record gets their stats.
            drifted, act.refresh = check_files(folder, rec.files, None if adopted else store.root, key)
            if drifted:
                act.action, act.reasons = "update", ["files drifted: " + ", ".join(drifted)]
            act.digest = rec.digest
        if name in entries and entries[name].is_dir(follow_symlinks=False):
            managed = set(rec.files) if rec else set()
            act.user_files = act.user_files or [f"{name}/{p}" for p in user_files(folder, managed)]
        if act.action != "unchanged":
            in_store = (store_art / ARTIFACT_MANIFEST).is_file()
            act.artifact = "store" if in_store else "build"
            if in_store:
                act.digest = artifact_digest(store_art)
            elif entry.artifact and entry.artifact.get("build_key") == key:
                act.digest = entry.artifact.get("digest")
        plan.models.append(act)
    for name in sorted(set(placed) - set(lock.models)):
        folder = target / name
        gone = placed[name]
        user = [f"{name}/{p}" for p in user_files(folder, set(gone.files))] if folder.is_dir() else []
        plan.models.append(
            ModelAction(
                name,
                "remove",
                ["no longer locked"],
                commit=gone.inputs.commit if gone.inputs else None,
                build_key=gone.build_key,
                digest=gone.digest,
                user_files=user,
            )
        )
    for n, e in sorted(entries.items()):
        if n.startswith((TMP_PREFIX, OLD_PREFIX)):
            plan.leftovers.append(n)
        elif n not in lock.models and n not in placed and n not in OWN_FILES:
            plan.user_files.append(n + ("/" if e.is_dir(follow_symlinks=False) else ""))
    return plan


def plan_remote(plan: SyncPlan, remotes: RemoteCache) -> None:
    """Mark each artifact the plan would build as coming from the first remote that holds it (one existence
    check per model, nothing downloaded), so that a dry run says what a real one would do."""
    for act in plan.models:
        if act.artifact == "build" and act.build_key:
            spec = remotes.locate(act.build_key)
            if spec is not None:
                act.artifact, act.remote = "remote", spec.display
