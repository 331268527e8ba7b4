"""`gpux push`: the stored artifacts of locked models (and with --sources their source files) to the remote cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gpuxbuild.build.remote_artifact import push_artifact
from gpuxbuild.store.fetch import missing_files

if TYPE_CHECKING:
    from pathlib import Path

    from gpuxbuild.remote.cache import RemoteCache
    from gpuxbuild.store.objects import Store


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
    project: Path, names: tuple[str, ...], *, store: Store, remotes: RemoteCache, sources: bool = False
) -> PushResult:
    """`gpux push`: the stored artifacts of the locked models (all, or `names`), and with `sources` their source
    files, to the first remote. A model whose artifact is not in the store is an error naming it."""
    from gpuxbuild.build.pipeline import job_from_lock
    from gpuxbuild.errors import GpuxError
    from gpuxbuild.project.lockfile import lock_path, read_lock
    from gpuxbuild.store.artifacts import verified_artifact

    lock = read_lock(lock_path(project))
    if lock is None:
        raise GpuxError(f"no gpux.lock in {project}", "run `gpux lock` and `gpux build` first")
    unknown = sorted(set(names) - set(lock.models))
    if unknown:
        raise GpuxError(f"no model {', '.join(unknown)} in gpux.lock", f"models: {', '.join(sorted(lock.models))}")
    jobs = [job_from_lock(lock.models[n]) for n in sorted(names or lock.models)]
    unbuilt = [j.name for j in jobs if verified_artifact(store, j.key) is None]
    if unbuilt:
        raise GpuxError(f"not built here: {', '.join(unbuilt)}", "run `gpux build` first (or `gpux build --push`)")
    lacking = [j.name for j in jobs if sources and missing_files(store, j.files)]
    if lacking:
        raise GpuxError(
            f"--sources: source files of {', '.join(lacking)} are not in this store (its artifacts came ready-made)",
            "push --sources from the machine that built them, or `gpux pull` them here first",
        )
    res = PushResult()
    for job in jobs:
        if sources:
            shas = sorted({f.sha256 for f in job.files})
            res.sources_total += len(shas)
            res.sources_new += remotes.push_objects(store, shas)
        res.artifacts[job.name] = push_artifact(store, remotes, job.key)
    return res
