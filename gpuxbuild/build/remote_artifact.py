"""Artifacts between the store and the remote cache: download one by build key (verified, placed atomically like
a build's), or upload a stored one (its blobs, then its index)."""

from __future__ import annotations

import json
import os
import uuid
from typing import TYPE_CHECKING

from gpuxbuild.build.provenance import EVIDENCE, evidence_problem, read_evidence
from gpuxbuild.errors import IntegrityError
from gpuxbuild.fsutil import remove_tree
from gpuxbuild.hashing import sha256_bytes
from gpuxbuild.remote import ENV_REMOTE, Warn, configured
from gpuxbuild.remote.cache import RemoteCache, parallel, parse_index
from gpuxbuild.store.artifacts import ARTIFACT_MANIFEST, artifact_path, publish, remember_artifact

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from gpuxbuild.store.files import FileEntry
    from gpuxbuild.store.objects import Store


def fetch_artifact(
    store: Store,
    remotes: RemoteCache,
    key: str,
    expected: str | None = None,
    note: Callable[[str], None] | None = None,
    entry: tuple[list[FileEntry], dict] | None = None,
) -> str | None:
    """Place the artifact for build `key` from the first remote that holds it, with its provenance when the remote
    has that; its digest, or None when no remote has it. The caller holds the artifact's store lock. Every file is
    checked against artifact.json, artifact.json against `expected` (the digest gpux.lock records), and the
    provenance against artifact.json and `entry` (the lock entry's source files and options), before anything
    is placed. `note` is told what is about to be downloaded."""
    found = remotes.find_index(key)
    if found is None:
        return None
    spec, data = found
    doc = parse_index(spec, key, data, expected)
    digest = "sha256:" + sha256_bytes(data)
    evidence = remotes.find_attached(spec, key, data, EVIDENCE)
    if (problem := evidence_problem(doc, digest, evidence, *(entry or ()))) is not None:
        raise IntegrityError(
            f"remote {spec.display}: the provenance of artifact {digest} ({doc.get('name')}) is corrupt: {problem}; "
            "not used",
            "delete that artifact's provenance on the remote (`gpux help remote-cache`) and push the artifact again",
        )
    if note:
        size = sum(f["size"] for f in doc["files"])
        note(f"downloading {len(doc['files'])} files ({size / 1e6:.1f} MB) from {spec.display}")
    work = store.tmp_dir() / f"remote-{uuid.uuid4().hex}"
    try:
        work.mkdir()
        for f in doc["files"]:
            (work / f["path"]).parent.mkdir(parents=True, exist_ok=True)  # parse_index checked it stays inside
        name = doc.get("name") or key[7:19]
        parallel(
            lambda f: remotes.download_blob(
                spec, store, f["sha256"], f["size"], work / f["path"], f"{name}/{f['path']}"
            ),
            doc["files"],
        )
        (work / ARTIFACT_MANIFEST).write_bytes(data)
        for name, evidence_bytes in evidence.items():
            (work / name).write_bytes(evidence_bytes)
        publish(work, artifact_path(store, key))
    finally:
        if work.exists():
            remove_tree(work, ignore_errors=True)
    remember_artifact(store, key, digest)
    return digest


def push_artifact(store: Store, remotes: RemoteCache, key: str) -> str:
    """Upload the stored artifact for build `key`, with its provenance, to the first remote: "pushed", or
    "present" if it was there. A provenance that does not match the artifact is refused, never pushed."""
    folder = artifact_path(store, key)
    data = (folder / ARTIFACT_MANIFEST).read_bytes()
    doc = json.loads(data)
    name = doc.get("name") or key[7:19]
    files = [(f["sha256"], folder / f["path"], f"{name}/{f['path']}") for f in doc["files"]]
    evidence = read_evidence(folder)
    if (problem := evidence_problem(doc, "sha256:" + sha256_bytes(data), evidence)) is not None:
        raise IntegrityError(
            f"artifact of {doc.get('name')} ({folder}): {problem}; not pushed",
            "run `gpux cache verify --fix`, then `gpux build` (it writes the provenance again) and push again",
        )
    os.utime(folder)  # a recent use keeps it from `cache prune` while it uploads
    return remotes.publish(key, data, files, [(e, evidence[e]) for e in EVIDENCE if e in evidence])


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
