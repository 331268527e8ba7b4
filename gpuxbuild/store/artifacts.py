"""Built artifacts in the store (artifacts/<build key hex>/) and the artifact folder's format, the contract
between build, sync and run: artifact.json lists every other file with its sha256 and size, and its own
sha256 is the artifact digest (docs/architecture.md). Checked by stat, re-hashed when a stat changed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gpuxbuild.fsutil import fsync_dir, remove_tree
from gpuxbuild.hashing import sha256_bytes, sha256_file
from gpuxbuild.store.files import FileEntry
from gpuxbuild.store.verified import VerifiedArtifact, read_verified_artifact, stat_fields

if TYPE_CHECKING:
    from gpuxbuild.store.objects import Store

ARTIFACT_FORMAT = 1
ARTIFACT_MANIFEST = "artifact.json"


def artifact_path(store: Store, key: str) -> Path:
    return store.root / "artifacts" / key.removeprefix("sha256:")


@dataclass
class ArtifactManifest:
    """artifact.json (docs/architecture.md): what an artifact is, and every other file of it with its sha256
    and size (`files`: None when it lists none or a malformed entry, as no intact artifact does)."""

    name: str | None
    task: str | None
    library: str | None
    graphs: dict[str, str] | None
    source: dict | None
    build_key: str | None
    toolchain: dict[str, str] | None
    files: list[FileEntry] | None
    format: int | None = ARTIFACT_FORMAT

    @classmethod
    def from_dict(cls, data: object) -> ArtifactManifest:
        """The manifest `data` holds (fields it lacks are None)."""
        d = data if isinstance(data, dict) else {}
        graphs = d.get("graphs")
        try:
            files = [FileEntry(f["path"], f["sha256"], f["size"]) for f in d["files"]]
        except (KeyError, TypeError):
            files = None
        return cls(
            name=d.get("name"),
            task=d.get("task"),
            library=d.get("library"),
            graphs=graphs if isinstance(graphs, dict) else None,
            source=d.get("source"),
            build_key=d.get("build_key"),
            toolchain=d.get("toolchain"),
            files=files,
            format=d.get("format"),
        )

    def listed(self) -> list[FileEntry]:
        """The files it lists; ValueError when it lists none or a malformed entry (not an intact artifact's)."""
        if self.files is None:
            raise ValueError(f"{ARTIFACT_MANIFEST} lists no files, or a malformed one")
        return self.files

    def as_dict(self) -> dict:
        return {
            "format": self.format,
            "name": self.name,
            "task": self.task,
            "library": self.library,
            "graphs": self.graphs,
            "source": self.source,
            "build_key": self.build_key,
            "toolchain": self.toolchain,
            "files": [f.as_dict() for f in self.listed()],
        }

    def to_json(self) -> bytes:
        """The bytes of artifact.json (indented JSON, sorted keys, trailing newline); their sha256 is the
        artifact digest."""
        return (json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n").encode("utf-8")


def read_manifest(folder: Path) -> ArtifactManifest:
    """The artifact.json of `folder`; OSError or ValueError when it is missing or not JSON."""
    return ArtifactManifest.from_dict(json.loads((folder / ARTIFACT_MANIFEST).read_bytes()))


def artifact_digest(folder: Path) -> str:
    """The digest of a placed artifact (sha256 of its artifact.json)."""
    return "sha256:" + sha256_file(folder / ARTIFACT_MANIFEST)


def publish(staging: Path, dest: Path, *, replace: bool = False) -> None:
    """Make the staged artifact read-only and rename it into place (atomic on one filesystem). `replace`:
    an artifact already at `dest` is moved aside first, then removed (the caller holds its build lock)."""
    for p in staging.rglob("*"):
        if p.is_file():
            os.chmod(p, 0o444)
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = staging.with_name(f"{staging.name}-replaced")
    if replace and dest.exists():
        os.rename(dest, old)
    os.rename(staging, dest)
    fsync_dir(dest.parent)
    if old.exists():
        remove_tree(old)


def remember_artifact(store: Store, key: str, digest_: str) -> None:
    """Record the stat of every file of the just-published (so just hashed) artifact `key`."""
    folder = artifact_path(store, key)
    files = [f.path for f in read_manifest(folder).listed()] + [ARTIFACT_MANIFEST]
    store.remember_verified(
        "artifacts",
        folder.name,
        VerifiedArtifact(digest_, {rel: stat_fields(os.stat(folder / rel)) for rel in files}).as_dict(),
    )


def check_artifact(store: Store, key: str, *, rehash: bool = False) -> tuple[str | None, list[str]]:
    """(digest, problems) of the stored artifact `key`: digest None and no problems when it is not there.

    Files whose (size, mtime, ctime, inode) equal those recorded when they were last hashed are trusted;
    the others (`rehash`: all) are hashed again and compared with artifact.json, and artifact.json with the
    digest recorded then. Intact files get their new stat recorded.
    """
    folder = artifact_path(store, key)
    if not folder.is_dir():
        return None, []
    rec = read_verified_artifact(store.root, folder.name)
    known = rec.files
    now, problems = {}, []
    try:
        now[ARTIFACT_MANIFEST] = stat_fields(os.stat(folder / ARTIFACT_MANIFEST))
        data = (folder / ARTIFACT_MANIFEST).read_bytes()
        files = ArtifactManifest.from_dict(json.loads(data)).listed()
    except (OSError, ValueError):
        return None, ["artifact.json missing or unreadable"]
    found = rec.digest
    if rehash or now[ARTIFACT_MANIFEST] != known.get(ARTIFACT_MANIFEST) or not found:
        found = "sha256:" + sha256_bytes(data)
        if rec.digest not in (None, found):
            problems.append("artifact.json: changed since it was verified")
    for f in files:
        p = folder / f.path
        try:
            now[f.path] = st = stat_fields(os.stat(p))
        except (FileNotFoundError, NotADirectoryError):
            problems.append(f"{f.path}: missing")
            continue
        if (rehash or st != known.get(f.path)) and (st[0] != f.size or sha256_file(p) != f.sha256):
            problems.append(f"{f.path}: sha256 mismatch")
    if not problems and now != known:
        store.remember_verified("artifacts", folder.name, VerifiedArtifact(found, now).as_dict())
    return found, problems


def rehash_artifact(store: Store, key: str) -> tuple[int, list[str]]:
    """(files its artifact.json lists, problems) of the stored artifact `key`, every file hashed again:
    `gpux cache verify`'s check (gpuxbuild.store.gc.verify)."""
    _, problems = check_artifact(store, key, rehash=True)
    try:
        files = read_manifest(artifact_path(store, key)).files or []
    except (OSError, ValueError):
        files = []
    return len(files), problems


def verified_artifact(store: Store, key: str) -> str | None:
    """The digest of the stored artifact `key` when it is there and intact (`check_artifact`), else None:
    a corrupt one is moved to quarantine/ so that it is built again, never placed or run."""
    found, problems = check_artifact(store, key)
    if problems:
        store.quarantine("artifacts", artifact_path(store, key))
        return None
    return found


def refresh_verified(store: Store, key: str, linked: dict[str, tuple[os.stat_result, os.stat_result]]) -> None:
    """After hard-linking artifact files elsewhere, which changes their ctime: record the new stat of each file
    that had its verified stat just before (path -> (stat before, stat of the link))."""
    name = key.removeprefix("sha256:")
    rec = read_verified_artifact(store.root, name)
    files = rec.files
    changed = False
    for rel, (before, after) in linked.items():
        if (
            files.get(rel) == stat_fields(before)
            and after.st_ino == before.st_ino
            and before.st_ctime_ns != after.st_ctime_ns
        ):
            files[rel], changed = stat_fields(after), True
    if changed:
        store.remember_verified("artifacts", name, rec.as_dict())
