"""Files written so that a crash never leaves half of one: atomic writes, fsync, JSON reads, removal of
read-only trees. Standard library only; every layer may use it."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path


def make_writable(tree: Path) -> None:
    """Make every folder of a tree writable (store folders may be read-only) so the tree can be removed."""
    for dirpath, _, _ in os.walk(tree):
        os.chmod(dirpath, 0o755)


def remove_tree(path: Path, *, ignore_errors: bool = False) -> None:
    """Remove a folder tree of read-only store files (or a single file or link)."""
    if path.is_dir() and not path.is_symlink():
        make_writable(path)
        shutil.rmtree(path, ignore_errors=ignore_errors)
    else:
        path.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> bool:
    """Write `data` to `path` through a temp file and rename. Returns False (and touches nothing) if unchanged."""
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def read_json(path: Path, default=None):
    """JSON content of `path`, or `default` when it does not exist."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
