"""The content-addressed store under `$GPUX_HOME`.

Layout (docs/store.md):
    objects/sha256/<2 hex>/<64 hex>   source files, read-only, named by their sha256
    artifacts/<build key hex>/        built artifacts (see gpuxbuild.build)
    refs/                             records of pulled models and synced projects (what keeps objects alive)
    locks/                            filelock files, one per object or artifact being written
    tmp/                              partial downloads (resumed by name) and staging folders

Nothing becomes visible under objects/ or artifacts/ until it is complete and verified: bytes are
hashed while they stream into tmp/, then renamed into place under a per-object lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from filelock import FileLock

from gpuxbuild.errors import IntegrityError

HEX64 = frozenset("0123456789abcdef")
STALE_TMP_SECONDS = 24 * 3600


def gpux_home() -> Path:
    """`$GPUX_HOME`, else `$XDG_CACHE_HOME/gpux`, else `~/.cache/gpux`."""
    if os.environ.get("GPUX_HOME"):
        return Path(os.environ["GPUX_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "gpux"


def is_sha256(s: str) -> bool:
    """True for a 64-char lowercase hex string."""
    return len(s) == 64 and set(s) <= HEX64


class HashingWriter:
    """A file wrapper that hashes bytes as they are written (one pass, no second read).

    huggingface_hub's `http_get` may seek(0)+truncate() when a server ignores a Range request;
    the hash restarts then.
    """

    def __init__(self, f: BinaryIO, hasher):
        self._f = f
        self.hasher = hasher
        self.name = getattr(f, "name", "")

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        return self._f.write(data)

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, pos: int, whence: int = 0) -> int:
        if pos == 0 and whence == 0:
            self.hasher = hashlib.sha256()
        elif (pos, whence) != (0, 2):
            raise OSError("HashingWriter only rewinds to the start")
        return self._f.seek(pos, whence)

    def truncate(self, size: int | None = None) -> int:
        return self._f.truncate(size)

    def flush(self) -> None:
        self._f.flush()


Writer = Callable[[BinaryIO, int], None]  # (destination, resume_from) -> None


@dataclass
class Stats:
    """Counters of one command's store use (objects and artifacts)."""

    hits: int = 0
    downloaded: int = 0
    bytes_downloaded: int = 0


class Store:
    """A content-addressed store rooted at `root` (default: `gpux_home()`)."""

    def __init__(self, root: Path | None = None):
        self.root = (root or gpux_home()).resolve()
        self.stats = Stats()

    # -- paths -----------------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def object_path(self, sha256: str) -> Path:
        """Where the object with this sha256 lives (whether or not it exists)."""
        return self.root / "objects" / "sha256" / sha256[:2] / sha256

    def has_object(self, sha256: str) -> bool:
        return self.object_path(sha256).is_file()

    def lock(self, name: str, timeout: float = -1) -> FileLock:
        """An inter-process lock named `name` (e.g. `obj-<sha>`, `art-<key>`, `project-<hash>`)."""
        return FileLock(str(self.path("locks", f"{name}.lock")), timeout=timeout)

    def tmp_dir(self) -> Path:
        d = self.root / "tmp"
        d.mkdir(parents=True, exist_ok=True)
        return d

    # -- objects ---------------------------------------------------------------------------------
    def ensure_object(self, sha256: str, size: int, writer: Writer, *, label: str) -> bool:
        """Make object `sha256` exist, writing it with `writer` if needed. Returns True on a store hit.

        The partial file is named by the hash, so an interrupted download resumes in a later run;
        the per-object lock makes concurrent processes download each object once.
        """
        if self.has_object(sha256):
            self.stats.hits += 1
            return True
        with self.lock(f"obj-{sha256}"):
            if self.has_object(sha256):
                self.stats.hits += 1
                return True
            partial = self.tmp_dir() / f"{sha256}.partial"
            hasher = hashlib.sha256()
            resume = 0
            if partial.exists():
                resume = partial.stat().st_size
                if resume > size:
                    partial.unlink()
                    resume = 0
                else:
                    with open(partial, "rb") as f:
                        while chunk := f.read(1 << 20):
                            hasher.update(chunk)
            # A failed transfer leaves its prefix for the next run to resume; the hash check below is what
            # decides whether anything becomes visible.
            with open(partial, "ab") as f:
                hw = HashingWriter(f, hasher)
                writer(hw, resume)
                f.flush()
                os.fsync(f.fileno())
                hasher = hw.hasher
            actual_size = partial.stat().st_size
            actual = hasher.hexdigest()
            if actual != sha256 or actual_size != size:
                partial.unlink(missing_ok=True)
                raise IntegrityError(
                    f"{label}: sha256 mismatch (expected {sha256}, got {actual}; size {actual_size} vs {size}); "
                    "nothing was stored",
                    "the source changed or was tampered with; if the change is intended, re-lock the model "
                    "with `gpux lock --upgrade NAME`",
                )
            self._publish(partial, self.object_path(sha256))
            self.stats.downloaded += 1
            self.stats.bytes_downloaded += size
            return False

    def add_bytes_unknown(self, writer: Writer) -> tuple[str, int]:
        """Store bytes whose hash is not known yet (e.g. a small Hub file); returns (sha256, size)."""
        tmp = self.tmp_dir() / f"new-{uuid.uuid4().hex}.partial"
        try:
            with open(tmp, "wb") as f:
                hw = HashingWriter(f, hashlib.sha256())
                writer(hw, 0)
                f.flush()
                os.fsync(f.fileno())
            sha, size = hw.hasher.hexdigest(), tmp.stat().st_size
            with self.lock(f"obj-{sha}"):
                if self.has_object(sha):
                    self.stats.hits += 1
                else:
                    self._publish(tmp, self.object_path(sha))
                    self.stats.downloaded += 1
                    self.stats.bytes_downloaded += size
            return sha, size
        finally:
            tmp.unlink(missing_ok=True)

    def _blob_index_path(self, git_sha1: str) -> Path:
        return self.root / "index" / "gitsha1" / git_sha1[:2] / git_sha1

    def sha256_of_blob(self, git_sha1: str) -> str | None:
        """The sha256 of a stored object known by its git blob sha1 (small Hub files), or None."""
        try:
            sha = self._blob_index_path(git_sha1).read_text().strip()
        except FileNotFoundError:
            return None
        return sha if is_sha256(sha) and self.has_object(sha) else None

    def remember_blob(self, git_sha1: str, sha256: str) -> None:
        """Record that the object `sha256` has git blob id `git_sha1`, so it is not fetched again to be hashed."""
        write_atomic(self._blob_index_path(git_sha1), sha256.encode())

    def _publish(self, src: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(src, 0o444)
        os.replace(src, dest)
        _fsync_dir(dest.parent)

    def iter_objects(self):
        """Every (sha256, path) under objects/."""
        base = self.root / "objects" / "sha256"
        if not base.is_dir():
            return
        for sub in sorted(base.iterdir()):
            for p in sorted(sub.iterdir()):
                yield p.name, p

    # -- counters --------------------------------------------------------------------------------
    def load_counters(self) -> dict:
        """Lifetime hit/miss counters of this store."""
        return read_json(self.root / "stats.json", {}) or {}

    def save_counters(self, **extra: int) -> None:
        """Add this process's counters (and `extra` ones) to the store's lifetime counters."""
        add = {"object_hits": self.stats.hits, "object_downloads": self.stats.downloaded,
               "bytes_downloaded": self.stats.bytes_downloaded, **extra}
        if not any(add.values()):
            return
        with self.lock("stats"):
            data = self.load_counters()
            for k, v in add.items():
                data[k] = data.get(k, 0) + v
            write_atomic(self.root / "stats.json", json.dumps(data, sort_keys=True).encode())
        self.stats = Stats()

    # -- housekeeping ----------------------------------------------------------------------------
    def clean_tmp(self, max_age: float = STALE_TMP_SECONDS) -> int:
        """Remove leftovers of killed processes: staging folders and unnamed partials older than `max_age`.

        Hash-named partial downloads are kept: the next fetch of that object resumes from them.
        """
        tmp = self.root / "tmp"
        if not tmp.is_dir():
            return 0
        removed, now = 0, time.time()
        for p in tmp.iterdir():
            named = p.name.endswith(".partial") and is_sha256(p.name.removesuffix(".partial"))
            try:
                old = now - p.lstat().st_mtime > max_age
            except FileNotFoundError:
                continue
            if named or not old:
                continue
            if p.is_dir() and not p.is_symlink():
                make_writable(p)
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed += 1
        return removed


def make_writable(tree: Path) -> None:
    """Make every folder of a tree writable (store folders may be read-only) so the tree can be removed."""
    for dirpath, dirnames, _ in os.walk(tree):
        os.chmod(dirpath, 0o755)


def _fsync_dir(path: Path) -> None:
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
