"""What the store last verified: the stat of each object and artifact file when it was last hashed
(index/verified/), so that an unchanged file is trusted by its stat and a changed one is hashed again.
Standard library only: the no-op `gpux sync` reads it."""

from __future__ import annotations

import json
import os
from pathlib import Path


def stat_fields(st: os.stat_result) -> list[int]:
    """[size, mtime_ns, ctime_ns, inode]: what a verified file's record keeps. Any write changes the ctime,
    also one that puts the mtime back, and so does a chmod that makes a read-only file writable."""
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def verified_path(store_root: Path, kind: str, name: str) -> Path:
    """index/verified/<kind>/<2 hex>/<name>: the verified stat of an object (`objects`) or an artifact's files
    (`artifacts`, by build key hex), as recorded when it was last hashed (docs/store.md)."""
    return store_root / "index" / "verified" / kind / name[:2] / name


def verified_artifact_files(store_root: Path, build_key: str | None) -> dict:
    """{path: stat fields} of the store's artifact `build_key` as last verified ({} if unknown)."""
    if not build_key:
        return {}
    try:
        data = json.loads(verified_path(store_root, "artifacts", build_key.removeprefix("sha256:")).read_bytes())
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}
