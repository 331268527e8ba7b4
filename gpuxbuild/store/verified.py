"""What the store last verified: the stat of each object and artifact file when it was last hashed
(index/verified/), so that an unchanged file is trusted by its stat and a changed one is hashed again.
Standard library only: the no-op `gpux sync` reads it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gpuxbuild.records import Record


def stat_fields(st: os.stat_result) -> list[int]:
    """[size, mtime_ns, ctime_ns, inode]: what a verified file's record keeps. Any write changes the ctime,
    also one that puts the mtime back, and so does a chmod that makes a read-only file writable."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def verified_path(store_root: Path, kind: str, name: str) -> Path:
    """index/verified/<kind>/<2 hex>/<name>: the verified stat of an object (`objects`) or an artifact's files
    (`artifacts`, by build key hex), as recorded when it was last hashed (docs/store.md)."""
    return store_root / "index" / "verified" / kind / name[:2] / name


class VerifiedArtifact(Record):
    """An artifact's verified record: its digest and {path: stat fields} of its files when last hashed."""

    __slots__ = ("digest", "files")

    def __init__(self, digest: str | None, files: dict[str, list[int]]):
        self.digest, self.files = digest, files

    @classmethod
    def from_dict(cls, data: object) -> VerifiedArtifact:
        """The record in `data`; what is not a record's shape reads as unknown (so the files are hashed)."""
        if not isinstance(data, dict):
            return cls(None, {})
        files = data.get("files")
        return cls(data.get("digest"), files if isinstance(files, dict) else {})

    def as_dict(self) -> dict[str, object]:
        return {"digest": self.digest, "files": self.files}


def read_verified_artifact(store_root: Path, build_key: str | None) -> VerifiedArtifact:
    """The verified record of the store's artifact `build_key` (hex or `sha256:`); empty if unknown or unreadable."""
    data = None
    if build_key:
        try:
            data = json.loads(verified_path(store_root, "artifacts", build_key.removeprefix("sha256:")).read_bytes())
        except (OSError, ValueError):
            pass
    return VerifiedArtifact.from_dict(data)
