"""`gpux push`: stored artifacts (of locked models, or pulled ones) and with --sources their source files, to the
remote cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gpuxbuild.build.remote_artifact import push_artifact

if TYPE_CHECKING:
    from pathlib import Path

    from gpuxbuild.remote.cache import RemoteCache
    from gpuxbuild.store.objects import Store


@dataclass(frozen=True)
class PushTarget:
    """An artifact to push that is not a lock entry's: a pulled model's (gpuxbuild.models.locate.pulled_target)."""

    name: str  # as the user wrote it
    build_key: str
    sources: tuple[str, ...]  # sha256 of its source files


@dataclass
class PushResult:
    artifacts: dict[str, str] = field(default_factory=dict)  # model -> pushed | present
    sources_new: int = 0
    sources_total: int = 0

    def as_dict(self) -> dict:
        return {
            "artifacts": self.artifacts,
            "sources": {"uploaded": self.sources_new, "total": self.sources_total},
        }


def push_project(
    project: Path,
    names: tuple[str, ...],
    *,
    store: Store,
    remotes: RemoteCache,
    sources: bool = False,
    pulled: tuple[PushTarget, ...] = (),
) -> PushResult:
    """`gpux push`: the stored artifacts of the locked models (`names`, all of them when neither `names` nor
    `pulled` are given) and of `pulled` models, with `sources` their source files too, to the first remote. A model
    whose artifact is not in the store is an error naming it."""
    from gpuxbuild.build.pipeline import job_from_lock
    from gpuxbuild.errors import GpuxError
    from gpuxbuild.project.lockfile import lock_path, read_lock
    from gpuxbuild.store.artifacts import verified_artifact

    targets = list(pulled)
    if names or not pulled:
        lock = read_lock(lock_path(project))
        if lock is None:
            raise GpuxError(
                f"no gpux.lock in {project}", "run `gpux lock` and `gpux build` first, or name models `gpux pull` got"
            )
        unknown = sorted(set(names) - set(lock.models))
        if unknown:
            raise GpuxError(
                f"no model {', '.join(unknown)} in gpux.lock, and no pulled model of that id",
                f"models: {', '.join(sorted(lock.models))}; or an id `gpux ls` shows",
            )
        for n in sorted(names or lock.models):
            job = job_from_lock(lock.models[n])
            targets.append(PushTarget(n, job.key, tuple(sorted({f.sha256 for f in job.files}))))
    unbuilt = [t.name for t in targets if verified_artifact(store, t.build_key) is None]
    if unbuilt:
        raise GpuxError(f"not built here: {', '.join(unbuilt)}", "run `gpux build` first (or `gpux build --push`)")
    lacking = [t.name for t in targets if sources and any(not store.has_object(sha) for sha in t.sources)]
    if lacking:
        raise GpuxError(
            f"--sources: source files of {', '.join(lacking)} are not in this store (its artifacts came ready-made)",
            "push --sources from the machine that built them, or `gpux pull` them here first",
        )
    res = PushResult()
    for t in targets:
        if sources:
            res.sources_total += len(t.sources)
            res.sources_new += remotes.push_objects(store, list(t.sources))
        res.artifacts[t.name] = push_artifact(store, remotes, t.build_key)
    return res
