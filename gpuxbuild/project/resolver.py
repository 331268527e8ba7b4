"""`gpux lock`: turn a manifest (and the previous lock) into a new lock.

Like uv and Cargo, a model whose manifest entry did not change keeps its pin, even if its branch moved;
a changed entry keeps its commit when its registry, repo and revision are the same; `upgrade` re-resolves.
The result is a plan (`LockPlan`) that the caller writes, so nothing is written when any model fails.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gpuxbuild.errors import GpuxError, RegistryError
from gpuxbuild.project.licenses import check_licenses
from gpuxbuild.project.lockfile import Lock, LockedModel, options_of, verify_lock
from gpuxbuild.project.selection import select_paths
from gpuxbuild.project.signatures import signature_paths
from gpuxbuild.registries import get_manager

if TYPE_CHECKING:
    from gpuxbuild.project.manifest import Manifest, ModelSpec
    from gpuxbuild.registries.base import PinnedModel

# What `gpux lock` did to one model's pin.
LockAction = Literal["added", "updated", "removed", "unchanged"]
RESOLVE_JOBS = 4  # models resolved at once (each fetches its small files with up to 8 requests at a time)


@dataclass
class LockChange:
    """What happened to one model's pin."""

    name: str
    action: LockAction
    old_commit: str | None = None
    new_commit: str | None = None
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "action": self.action,
            "old_commit": self.old_commit,
            "new_commit": self.new_commit,
            "reasons": self.reasons,
        }


@dataclass
class LockPlan:
    lock: Lock
    changes: list[LockChange]
    written: bool = False  # set by the caller that wrote the lock file

    @property
    def changed(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)


def resolve_task(spec: ModelSpec, pinned: PinnedModel, paths: list[str]) -> str:
    """The manifest's task, else the registry's pipeline tag, else one derived from config.json."""
    from gpuxbuild.tasks import infer_task, normalize_task, pipeline_task

    task = normalize_task(spec.task) or pipeline_task(pinned.info.pipeline_tag, pinned.info.config)
    if task:
        return task
    task = infer_task(pinned.info.config, paths)
    if task:
        return task
    arch = ", ".join(pinned.info.architectures) or "no architectures in config.json"
    raise GpuxError(
        f"model {spec.name!r}: cannot infer its task ({arch})",
        "set `task:` for it in gpux.models.yml, e.g. task: feature-extraction",
    )


def wanted_paths(spec: ModelSpec, paths: list[str]) -> set[str] | None:
    """The paths of a commit that `spec` keeps (names alone decide), or None when the selection fails
    (`lock_model` then reports why)."""
    try:
        return set(select_paths(paths, include=spec.include, exclude=spec.exclude, convert=spec.convert)) | (
            signature_paths(spec.verify, paths)
        )
    except GpuxError:
        return None


def resolve_model(manager, spec: ModelSpec, *, pin: str | None = None, on_listed=None) -> LockedModel:
    """Resolve `spec` with its registry and make its lock entry; only the files it keeps are hashed.

    `on_listed(commit, listed, keep)` (optional) learns the files whose sha256 the registry listed
    up front and the paths the model keeps, before the other files are hashed."""

    keep: set[str] | None = None

    def listed(commit: str, paths: list[str], known: list) -> set[str] | None:
        nonlocal keep
        keep = wanted_paths(spec, paths)
        if on_listed is not None:
            on_listed(commit, known, keep)
        return keep

    if spec.files:
        manager = manager.with_files(spec.files)
    pinned = manager.resolve_streaming(spec.ref, spec.revision, listed, pin=pin)
    entry = lock_model(spec, pinned, keep)
    if spec.verify is not None:
        from gpuxbuild.project.signatures import check_model_signature

        entry.signature = check_model_signature(manager, spec.verify, entry).as_dict()
    return entry


def lock_model(spec: ModelSpec, pinned: PinnedModel, keep: set[str] | None = None) -> LockedModel:
    """The lock entry of a resolved model; `keep` is the selection already made over its paths (None: make it,
    which also reports why a selection fails)."""
    if keep is None:
        paths = pinned.all_paths()
        keep = set(select_paths(paths, include=spec.include, exclude=spec.exclude, convert=spec.convert))
        keep |= signature_paths(spec.verify, paths)
    files = sorted(f for f in pinned.files if f.path in keep)
    if not files:
        raise GpuxError(f"model {spec.name!r}: no files left after include/exclude", "loosen `include`/`exclude`")
    paths = [f.path for f in files]
    if len(files) != len(keep):
        missing = ", ".join(sorted(keep - set(paths)))
        raise RegistryError(
            f"model {spec.name!r}: the {pinned.registry} registry did not hash {missing}",
            "report this registry bug; `gpux lock` cannot pin those files",
        )
    library = pinned.info.library or ("sentence-transformers" if "modules.json" in paths else "transformers")
    return LockedModel(
        name=spec.name,
        source=spec.source,
        registry=spec.registry,
        repo=spec.ref,
        revision=spec.revision,
        commit=pinned.commit,
        task=resolve_task(spec, pinned, paths),
        spec_digest=spec.digest,
        options=options_of(spec),
        files=files,
        library=library,
        architecture=pinned.info.architectures[0] if pinned.info.architectures else None,
        license=pinned.info.license,
        origin=pinned.origin.kept(keep) or None,
    )


def plan_lock(
    manifest: Manifest,
    old: Lock | None,
    *,
    upgrade: bool | set[str] = False,
    store=None,
    offline: bool = False,
    jobs: int = RESOLVE_JOBS,
) -> LockPlan:
    """Compute the new lock. `upgrade=True` re-resolves every model, a set of names only those; `jobs`
    models are resolved at a time."""
    project = manifest.path.parent
    unknown = sorted(set(upgrade) - set(manifest.models)) if isinstance(upgrade, set) else []
    if unknown:
        raise GpuxError(f"--upgrade {', '.join(unknown)}: no such model in {manifest.path.name}", "check the name")
    old_models = old.models if old else {}
    if old is not None:  # entries re-resolved from the manifest, or dropped, need not be trusted
        upgraded = set(manifest.models) if upgrade is True else set(upgrade or ())
        verify_lock(manifest, old, project, skip=upgraded | (set(old.models) - set(manifest.models)))
    todo: list[tuple[ModelSpec, LockedModel | None, bool]] = []  # (spec, previous entry, keep its commit)
    kept: dict[str, LockedModel] = {}  # entries that stay as they are
    for name, spec in sorted(manifest.models.items()):
        prev = old_models.get(name)
        up = upgrade is True or (isinstance(upgrade, set) and name in upgrade)
        if prev is not None and not up and prev.spec_digest == spec.digest:
            kept[name] = prev
            continue
        keep_pin = (
            prev is not None
            and not up
            and (prev.registry, prev.repo, prev.revision) == (spec.registry, spec.ref, spec.revision)
        )
        todo.append((spec, prev, keep_pin))
    resolved = _resolve_all(todo, project, store=store, offline=offline, jobs=jobs)
    models: dict[str, LockedModel] = {}
    changes: list[LockChange] = []
    for name in sorted(manifest.models):
        if name in kept:
            models[name] = kept[name]
            changes.append(LockChange(name, "unchanged", kept[name].commit, kept[name].commit))
            continue
        prev = old_models.get(name)
        entry = resolved[name]
        if prev is not None and entry.artifact is None and prev.artifact and _same_inputs(prev, entry):
            entry.artifact = prev.artifact
        models[name] = entry
        changes.append(_change(prev, entry))
    for name in sorted(set(old_models) - set(manifest.models)):
        changes.append(LockChange(name, "removed", old_models[name].commit, None, ["no longer in the manifest"]))
    check_licenses(manifest.policy.allow_licenses, models.values())
    return LockPlan(Lock(manifest_digest=manifest.digest, models=models), changes)


def _resolve_all(
    todo: list[tuple[ModelSpec, LockedModel | None, bool]], project: Path, *, store, offline: bool, jobs: int
) -> dict[str, LockedModel]:
    """Resolve the models of `todo`, `jobs` at a time (each is a few registry round trips); name -> new entry.

    Every model is tried; the error raised is that of the first failing model by name, so a run with
    several bad models reports the same one every time.
    """
    if not todo:
        return {}
    if store is None:
        from gpuxbuild.store.objects import Store

        store = Store()  # one store for all threads (its counters are shared)
    managers = {
        r: get_manager(r, project=project, offline=offline, store=store)
        for r in sorted({s.registry for s, _, _ in todo})
    }

    def one(item: tuple[ModelSpec, LockedModel | None, bool]) -> LockedModel | GpuxError:
        spec, prev, keep_pin = item
        try:
            return resolve_model(managers[spec.registry], spec, pin=prev.commit if keep_pin and prev else None)
        except GpuxError as exc:
            cls = type(exc) if isinstance(exc, RegistryError) else GpuxError
            msg = exc.message if exc.message.startswith("model ") else f"model {spec.name!r}: {exc.message}"
            return cls(msg, exc.hint, exit_code=exc.exit_code)

    if len(todo) == 1 or jobs <= 1:
        results = [one(item) for item in todo]
    else:
        pool = ThreadPoolExecutor(max_workers=min(jobs, len(todo)), thread_name_prefix="gpux-resolve")
        try:
            results = list(pool.map(one, todo))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    resolved: dict[str, LockedModel] = {}
    for (spec, _, _), result in zip(todo, results, strict=True):
        if isinstance(result, GpuxError):
            raise result
        resolved[spec.name] = result
    return resolved


def _same_inputs(a: LockedModel, b: LockedModel) -> bool:
    return (a.commit, a.files, a.task, a.options) == (b.commit, b.files, b.task, b.options)


def _change(prev: LockedModel | None, new: LockedModel) -> LockChange:
    if prev is None:
        return LockChange(new.name, "added", None, new.commit, ["new in the manifest"])
    reasons = []
    if prev.commit != new.commit:
        reasons.append(f"commit {prev.commit[:12]} -> {new.commit[:12]}")
    if prev.revision != new.revision:
        reasons.append(f"revision {prev.revision} -> {new.revision}")
    if prev.files != new.files:
        reasons.append("files changed")
    if prev.options != new.options:
        reasons.append("options changed")
    if prev.task != new.task:
        reasons.append(f"task {prev.task} -> {new.task}")
    if prev.source != new.source:
        reasons.append("source changed")
    if not reasons and prev.as_dict() == new.as_dict():
        return LockChange(new.name, "unchanged", prev.commit, new.commit)
    return LockChange(new.name, "updated", prev.commit, new.commit, reasons or ["manifest entry changed"])


def lock_project(
    project: Path, *, upgrade: bool | set[str] = False, store=None, offline: bool = False, jobs: int = RESOLVE_JOBS
) -> LockPlan:
    """Plan and write the project's gpux.lock (atomically; untouched when nothing changed)."""
    from gpuxbuild.project.lockfile import lock_path, read_lock, write_lock
    from gpuxbuild.project.manifest import MANIFEST_NAME, load_manifest

    manifest = load_manifest(project / MANIFEST_NAME)
    plan = plan_lock(manifest, read_lock(lock_path(project)), upgrade=upgrade, store=store, offline=offline, jobs=jobs)
    plan.written = write_lock(lock_path(project), plan.lock)
    return plan
