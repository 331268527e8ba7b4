"""Artifacts between the store and the remote cache: download one by build key (verified, placed atomically like
a build's), or upload a stored one (its blobs, then its index)."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from gpuxbuild.build.artifact import ARTIFACT_MANIFEST, artifact_path, publish, remember_artifact
from gpuxbuild.fsutil import remove_tree
from gpuxbuild.hashing import sha256_bytes
from gpuxbuild.remote import ENV_REMOTE, Warn, configured
from gpuxbuild.remote.cache import RemoteCache, parse_index
from gpuxbuild.store.objects import Store


def fetch_artifact(store: Store, remotes: RemoteCache, key: str, expected: str | None = None) -> str | None:
    """Place the artifact for build `key` from the first remote that holds it; its digest, or None when no remote
    has it. The caller holds the artifact's store lock. Every file is checked against artifact.json, and
    artifact.json against `expected` (the digest gpux.lock records), before anything is placed."""
    from gpuxbuild.build.pipeline import safe_join

    found = remotes.find_index(key)
    if found is None:
        return None
    spec, data = found
    doc = parse_index(spec, key, data, expected)
    work = store.tmp_dir() / f"remote-{uuid.uuid4().hex}"
    try:
        work.mkdir()
        for f in doc["files"]:
            dest = safe_join(work, f["path"])
            dest.parent.mkdir(parents=True, exist_ok=True)
            remotes.download_blob(spec, f["sha256"], f["size"], dest)
        (work / ARTIFACT_MANIFEST).write_bytes(data)
        publish(work, artifact_path(store, key))
    finally:
        if work.exists():
            remove_tree(work, ignore_errors=True)
    digest = "sha256:" + sha256_bytes(data)
    remember_artifact(store, key, digest)
    return digest


def push_artifact(store: Store, remotes: RemoteCache, key: str) -> str:
    """Upload the stored artifact for build `key` to the first remote: "pushed", or "present" if it was there."""
    folder = artifact_path(store, key)
    data = (folder / ARTIFACT_MANIFEST).read_bytes()
    files = [(f["sha256"], folder / f["path"]) for f in json.loads(data)["files"]]
    os.utime(folder)  # a recent use keeps it from `cache prune` while it uploads
    return remotes.publish(key, data, files)


def project_remotes(
    project: Path | None,
    flags: tuple[str, ...] = (),
    *,
    optional: bool = False,
    warn: Warn | None = None,
) -> RemoteCache | None:
    """The remote cache a command in `project` uses: `--remote` flags, else GPUX_REMOTE, else the manifest's
    `cache:` (not read when `project` is None); None when none is configured."""
    from gpuxbuild.project.manifest import MANIFEST_NAME, load_manifest

    manifest = None
    if project and not flags and not os.environ.get(ENV_REMOTE, "").strip() and (project / MANIFEST_NAME).is_file():
        manifest = load_manifest(project / MANIFEST_NAME)
    specs = configured(
        flags,
        optional=optional,
        manifest=manifest.remotes if manifest else (),
        manifest_optional=manifest.remote_optional if manifest else False,
    )
    if not specs:
        return None
    return RemoteCache(specs, warn) if warn else RemoteCache(specs)


def push_results(store: Store, remotes: RemoteCache, results: list) -> dict[str, str]:
    """Push the artifacts of build results that have one (built, reused or downloaded); name -> pushed | present."""
    return {r.name: push_artifact(store, remotes, r.build_key) for r in results if r.status != "failed"}


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
    from gpuxbuild.build.artifact import verified_artifact
    from gpuxbuild.build.pipeline import job_from_lock
    from gpuxbuild.errors import GpuxError
    from gpuxbuild.project.lockfile import lock_path, read_lock

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
    res = PushResult()
    for job in jobs:
        if sources:
            shas = sorted({f.sha256 for f in job.files if store.has_object(f.sha256)})
            res.sources_total += len(shas)
            res.sources_new += remotes.push_objects(store, shas)
        res.artifacts[job.name] = push_artifact(store, remotes, job.key)
    return res
