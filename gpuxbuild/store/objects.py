"""The content-addressed store under `$GPUX_HOME`.

Layout (docs/store.md):
    objects/sha256/<2 hex>/<64 hex>   source files, read-only, named by their sha256
    artifacts/<build key hex>/        built artifacts (see gpuxbuild.build)
    refs/                             records of pulled models and synced projects (what keeps objects alive)
    locks/                            filelock files, one per object or artifact being written
    holds/                            per running process, the objects it uses (kept by `cache prune`)
    tmp/                              partial downloads (resumed by name) and staging folders
    index/verified/                   the stat of each object and artifact file when it was last hashed
    quarantine/                       objects and artifacts found corrupt (kept for inspection, never used)

Nothing becomes visible under objects/ or artifacts/ until it is complete and verified: bytes are
hashed while they stream into tmp/, then renamed into place under a per-object lock. Before an object is
built from, its stat is compared with the one recorded when it was verified; a changed one is re-hashed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from filelock import Timeout

from gpuxbuild.errors import IntegrityError
from gpuxbuild.fsutil import fsync_dir, read_json, remove_tree, write_atomic
from gpuxbuild.hashing import is_sha256, sha256_file
from gpuxbuild.store.home import gpux_home
from gpuxbuild.store.locks import StoreLock
from gpuxbuild.store.verified import stat_fields, verified_path

STALE_TMP_SECONDS = 24 * 3600


class TooLarge(OSError):
    """The source sent more bytes than the file's recorded size."""


class HashingWriter:
    """A file wrapper that hashes bytes as they are written (one pass, no second read).

    Each large chunk is hashed on a helper thread while the caller writes it and receives the next one
    (hashlib releases the GIL), so on a multi-core machine hashing adds almost nothing to a download; the
    kernel starts writing each large chunk to disk as soon as it is written (`start_writeback`).
    `limit` stops a source that sends more than the expected size before it fills the disk.
    huggingface_hub's `http_get` may seek(0)+truncate() when a server ignores a Range request; the hash
    restarts then.
    """

    def __init__(self, f: BinaryIO, hasher, *, limit: int | None = None, git_size: int | None = None):
        self._f = f
        self._hasher = hasher
        self.limit = limit
        self.name = getattr(f, "name", "")
        # Small Hub files are only known by their git blob sha1, so it is computed in the same pass.
        self._git_size = git_size
        self._git = _git_hasher(git_size) if git_size is not None else None
        self._pending: Future | None = None

    def _update(self, data: bytes) -> None:
        self._hasher.update(data)
        if self._git is not None:
            self._git.update(data)

    def wait(self) -> None:
        """Wait for the helper thread to finish hashing what was written."""
        self._drain()

    def _drain(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def write(self, data: bytes) -> int:
        if self.limit is not None and self._f.tell() + len(data) > self.limit:
            raise TooLarge(f"more than the expected {self.limit} bytes")
        self._drain()
        data = bytes(data)
        if len(data) < 1 << 20:
            self._update(data)
            return self._f.write(data)
        self._pending = _HASH_POOL.submit(self._update, data)
        pos = self._f.tell()
        written = self._f.write(data)
        self._f.flush()
        start_writeback(self._f.fileno(), pos, written)
        return written

    def sha256(self) -> str:
        self._drain()
        return self._hasher.hexdigest()

    def git_sha1(self) -> str | None:
        self._drain()
        return self._git.hexdigest() if self._git is not None else None

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, pos: int, whence: int = 0) -> int:
        self._drain()
        if pos == 0 and whence == 0:
            self._hasher = hashlib.sha256()
            if self._git_size is not None:  # exactly when there is a git hasher
                self._git = _git_hasher(self._git_size)
        elif (pos, whence) != (0, 2):
            raise OSError("HashingWriter only rewinds to the start")
        return self._f.seek(pos, whence)

    def truncate(self, size: int | None = None) -> int:
        return self._f.truncate(size)

    def flush(self) -> None:
        self._f.flush()


_HASH_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="gpux-hash")


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a file range to disk, without waiting (Linux sync_file_range).

    A download arrives slower than a disk writes, so writing each chunk behind it leaves the fsync that
    publishes the object only the last chunk to wait for (and that one is written while it is hashed).
    Does nothing where the call is unavailable.
    """
    fn = _sync_file_range()
    if fn is not None:
        fn(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE


@functools.cache
def _sync_file_range():
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError, TypeError):  # not Linux: the final fsync does all the work
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return fn


def _fill(f: BinaryIO, hw: HashingWriter, writer: Writer | None, resume: int) -> None:
    """Run `writer` (if any) into `hw`, which wraps the open file `f`, then make the bytes durable."""
    try:
        if writer is not None:
            writer(hw, resume)
    finally:
        hw.wait()  # a failed transfer must not leave the helper thread running
    f.flush()
    os.fsync(f.fileno())


def _git_hasher(size: int):
    return hashlib.sha1(b"blob %d\0" % size)


Writer = Callable[[HashingWriter, int], None]  # (destination, resume_from) -> None
Mismatch = Callable[[str | None, int], Exception]  # (actual sha256 or None if too large, size) -> the error to raise


@dataclass
class Stats:
    """Counters of one command's store use (objects and artifacts)."""

    hits: int = 0
    downloaded: int = 0
    bytes_downloaded: int = 0
    copied: int = 0  # from a local folder (the `local` registry): not downloads
    bytes_copied: int = 0

    def stored(self) -> tuple[int, int]:
        """(objects, bytes) newly stored: downloaded or copied in."""
        return self.downloaded + self.copied, self.bytes_downloaded + self.bytes_copied


def remove_if_stale(path: Path) -> None:
    """Remove ``path``, a temp file another process writes or a killed one left, once older than
    STALE_TMP_SECONDS (a younger one may belong to a write in flight); nothing if it is already gone."""
    try:
        if time.time() - path.lstat().st_mtime > STALE_TMP_SECONDS:
            path.unlink(missing_ok=True)
    except FileNotFoundError:
        pass


def _index_entries(folder: Path) -> list[Path]:
    """The entries of an index folder (`folder/XX/NAME`). The temp files of index writes (write_atomic's
    `.NAME.ID.tmp`) are not entries: one may belong to a write in flight in another process, which removing it
    would fail (`remove_if_stale`)."""
    entries = []
    for p in sorted(folder.glob("*/*")) if folder.is_dir() else []:
        if p.name.startswith("."):
            remove_if_stale(p)
        else:
            entries.append(p)
    return entries


class Store:
    """A content-addressed store rooted at `root` (default: `gpux_home()`)."""

    def __init__(self, root: Path | None = None):
        self.root = (root or gpux_home()).resolve()
        self.stats = Stats()
        self.downloaded_objects: set[str] = set()  # sha256 of the objects this instance downloaded
        self._stats_lock = threading.Lock()  # downloads run in threads
        self._held: set[str] = set()
        self._hold_file: TextIO | None = None
        self.holds_file: Path | None = None  # holds/<pid>-<id> once this Store holds an object

    def record_stats(self, **add: int) -> None:
        """Add to this process's counters (hits, downloads, bytes), thread-safely."""
        with self._stats_lock:
            for k, v in add.items():
                setattr(self.stats, k, getattr(self.stats, k) + v)

    def _record_download(self, sha256: str, size: int) -> None:
        with self._stats_lock:
            self.stats.downloaded += 1
            self.stats.bytes_downloaded += size
            self.downloaded_objects.add(sha256)

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

    def hold(self, sha256: str) -> None:
        """Mark object `sha256` as used while this Store lives (a command's run): `cache prune` keeps it.

        The hold file (holds/<pid>-<id>) stays flock-ed until then, so a prune knows that a hold file whose
        lock it can take is a finished or killed process's, and removes it (gpuxbuild.store.gc.held_objects).
        """
        import fcntl

        with self._stats_lock:
            if sha256 in self._held:
                return
            self._held.add(sha256)
            if self._hold_file is None:
                base = self.root / "holds"
                base.mkdir(parents=True, exist_ok=True)
                name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
                f = open(base / f".{name}", "a")  # noqa: SIM115 -- held (and locked) for the Store's life; renamed into sight once locked: a prune never sees it unlocked
                fcntl.flock(f, fcntl.LOCK_EX)
                os.rename(base / f".{name}", base / name)
                self._hold_file, self.holds_file = f, base / name
                weakref.finalize(self, _drop_holds, base / name, f)
            self._hold_file.write(sha256 + "\n")
            self._hold_file.flush()

    def lock(self, name: str, timeout: float = -1) -> StoreLock:
        """An inter-process lock named `name` (e.g. `obj-<sha>`, `art-<key>`, `project-<hash>`)."""
        return StoreLock(str(self.path("locks", f"{name}.lock")), timeout)

    def tmp_dir(self) -> Path:
        d = self.root / "tmp"
        d.mkdir(parents=True, exist_ok=True)
        return d

    # -- objects ---------------------------------------------------------------------------------
    def ensure_object(self, sha256: str, size: int, writer: Writer, *, label: str, force: bool = False) -> bool:
        """Make object `sha256` exist, writing it with `writer` if needed. Returns True on a store hit.

        The partial file is named by the hash, so an interrupted download resumes in a later run;
        the per-object lock makes concurrent processes download each object once. Bytes that do not
        hash to `sha256` raise IntegrityError naming `label`, and nothing is kept. `force` writes the
        object again even when it is there (`gpux pull --force`); the stored one is replaced only by
        bytes that verify.
        """
        self.hold(sha256)
        if not force and self.has_object(sha256):
            self.record_stats(hits=1)
            return True
        with self.lock(f"obj-{sha256}"):
            if not force and self.has_object(sha256):
                self.record_stats(hits=1)
                return True
            partial = self._verified_partial(sha256, size, writer, lambda got, n: mismatch(label, sha256, got, size, n))
            self._publish(partial, self.object_path(sha256))
            self._record_download(sha256, size)
            return False

    def _adopt(self, partial: Path, sha: str, size: int) -> None:
        """Publish the hashed file `partial` as object `sha`, unless another process stored it meanwhile."""
        self.hold(sha)
        with self.lock(f"obj-{sha}"):
            if self.has_object(sha):
                self.record_stats(hits=1)
            else:
                self._publish(partial, self.object_path(sha))
                self._record_download(sha, size)

    def download_to(self, sha256: str, size: int, writer: Writer, dest: Path, *, wrong: Mismatch) -> None:
        """Write the bytes of `sha256` with `writer` to the new file `dest` (not an object: an artifact's file from a
        remote), through the same resumable partial as an object: an interrupted download resumes in a later run,
        and bytes that do not hash to `sha256` are never placed (`wrong(actual sha256, size)` is raised)."""
        with self.lock(f"obj-{sha256}"):
            os.replace(self._verified_partial(sha256, size, writer, wrong), dest)

    def _verified_partial(self, sha256: str, size: int, writer: Writer, wrong: Mismatch) -> Path:
        """tmp/<sha256>.partial completed by `writer` and checked; the caller holds the object's lock."""
        partial = self.tmp_dir() / f"{sha256}.partial"
        actual, actual_size, resumed = self._write_partial(partial, size, writer)
        if actual != sha256 and resumed:
            # The kept prefix may be what is wrong (another source, a bad disk): start over once.
            partial.unlink(missing_ok=True)
            actual, actual_size, _ = self._write_partial(partial, size, writer)
        if actual != sha256 or actual_size != size:
            partial.unlink(missing_ok=True)
            raise wrong(actual, actual_size)
        return partial

    def _write_partial(self, partial: Path, size: int, writer: Writer) -> tuple[str | None, int, bool]:
        """Append the missing bytes to `partial` with `writer`; (sha256 or None if too large, size, resumed)."""
        hasher = hashlib.sha256()
        resume = partial.stat().st_size if partial.exists() else 0
        if resume > size:
            partial.unlink()
            resume = 0
        if resume:
            with open(partial, "rb") as f:
                while chunk := f.read(1 << 20):
                    hasher.update(chunk)
        try:
            with open(partial, "ab") as f:
                hw = HashingWriter(f, hasher, limit=size)
                _fill(f, hw, writer if resume < size else None, resume)
        except TooLarge:
            partial.unlink(missing_ok=True)
            return None, size + 1, bool(resume)
        # Any other failure leaves the prefix for the next run to resume: the hash decides what is trusted.
        return hw.sha256(), partial.stat().st_size, bool(resume)

    def ensure_blob(self, git_sha1: str, size: int, writer: Writer, *, label: str) -> str:
        """The sha256 of a file known only by its git blob sha1 (small Hub files), downloading it if needed.

        Both hashes are computed as the bytes stream in; the object is published only when the git sha1
        matches. A per-blob lock makes concurrent processes download it once.
        """
        known = self.sha256_of_blob(git_sha1)
        if known:
            self.hold(known)
            self.record_stats(hits=1)
            return known
        with self.lock(f"blob-{git_sha1}"):
            known = self.sha256_of_blob(git_sha1)
            if known:
                self.hold(known)
                self.record_stats(hits=1)
                return known
            partial = self.tmp_dir() / f"blob-{git_sha1}.partial"
            try:
                with open(partial, "wb") as f:
                    hw = HashingWriter(f, hashlib.sha256(), limit=size, git_size=size)
                    _fill(f, hw, writer, 0)
                actual_size = partial.stat().st_size
                git = hw.git_sha1() if actual_size == size else None
                if git != git_sha1:
                    raise IntegrityError(
                        f"{label}: git blob id mismatch (expected {git_sha1}, got {git or 'other size'}; "
                        f"size {actual_size} vs {size}); nothing was stored",
                        "the server sent other bytes than it lists; retry, or report the mirror",
                    )
                sha = hw.sha256()
                self._adopt(partial, sha, size)
            except TooLarge:
                raise IntegrityError(
                    f"{label}: the server sent more than the {size} bytes it lists; nothing was stored",
                    "the server sent other bytes than it lists; retry, or report the mirror",
                ) from None
            finally:
                partial.unlink(missing_ok=True)
            self.remember_blob(git_sha1, sha)
            return sha

    def ingest(self, writer: Writer, *, size: int | None, label: str) -> tuple[str, int]:
        """Store bytes known by nothing but themselves (an S3 object, a file at a URL): streamed into a partial
        file and hashed as they arrive, then published under their sha256, which is returned with the size.
        `size`, when the source listed one, must match; nothing is kept otherwise."""
        partial = self.tmp_dir() / f"ingest-{uuid.uuid4().hex}.partial"
        try:
            with open(partial, "wb") as f:
                hw = HashingWriter(f, hashlib.sha256(), limit=size)
                _fill(f, hw, writer, 0)
            actual_size = partial.stat().st_size
            if size is not None and actual_size != size:
                raise IntegrityError(
                    f"{label}: the server sent {actual_size} bytes, not the {size} it lists; nothing was stored",
                    "the file changed while it was read, or the server is faulty: run the command again",
                )
            sha = hw.sha256()
            self._adopt(partial, sha, actual_size)
        except TooLarge:
            raise IntegrityError(
                f"{label}: the server sent more than the {size} bytes it lists; nothing was stored",
                "the file changed while it was read, or the server is faulty: run the command again",
            ) from None
        finally:
            partial.unlink(missing_ok=True)
        return sha, actual_size

    def _blob_index_path(self, git_sha1: str) -> Path:
        return self.root / "index" / "gitsha1" / git_sha1[:2] / git_sha1

    def sha256_of_blob(self, git_sha1: str) -> str | None:
        """The sha256 of a stored object known by its git blob sha1 (small Hub files), or None."""
        try:
            sha = self._blob_index_path(git_sha1).read_text().strip()
        except FileNotFoundError:
            return None
        return sha if is_sha256(sha) and self.has_object(sha) else None

    def drop_stale_index(self) -> int:
        """Forget git-blob index entries and verified stats whose object or artifact is gone (after a prune);
        returns how many."""
        base = self.root / "index" / "gitsha1"
        dropped = 0
        for p in _index_entries(base):
            try:
                sha = p.read_text().strip()
            except FileNotFoundError:
                continue
            if not (is_sha256(sha) and self.has_object(sha)):
                p.unlink(missing_ok=True)
                dropped += 1
        verified = self.root / "index" / "verified"
        for kind, exists in (
            ("objects", self.has_object),
            ("artifacts", lambda k: (self.root / "artifacts" / k).is_dir()),
        ):
            for p in _index_entries(verified / kind):
                if not exists(p.name):
                    p.unlink(missing_ok=True)
                    dropped += 1
        return dropped

    def remember_blob(self, git_sha1: str, sha256: str) -> None:
        """Record that the object `sha256` has git blob id `git_sha1`, so it is not fetched again to be hashed."""
        write_atomic(self._blob_index_path(git_sha1), sha256.encode())

    def _publish(self, src: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(src, 0o444)
        os.replace(src, dest)
        fsync_dir(dest.parent)
        self.remember_verified("objects", dest.name, stat_fields(os.stat(dest)))

    # -- verification ----------------------------------------------------------------------------
    def remember_verified(self, kind: str, name: str, record) -> None:
        """Record the stat of a file (or an artifact's files) just hashed; not fsynced: losing it costs a re-hash."""
        path = verified_path(self.root, kind, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(record, sort_keys=True))
        os.replace(tmp, path)

    def check_object(self, sha256: str, *, rehash: bool = False) -> str:
        """ "ok", "missing" or "corrupt" (then moved to quarantine/, so the next fetch downloads it again).

        Trusts an object whose (size, mtime, ctime, inode) equal those recorded when it was last hashed;
        anything else (`rehash`: always) is hashed again, and its stat recorded when it is intact.
        """
        path = self.object_path(sha256)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return "missing"
        if not rehash and read_json(verified_path(self.root, "objects", sha256)) == stat_fields(st):
            return "ok"
        try:
            actual = sha256_file(path)
        except FileNotFoundError:
            return "missing"
        if actual == sha256:
            self.remember_verified("objects", sha256, stat_fields(st))
            return "ok"
        self.quarantine("objects", path)
        return "corrupt"

    def quarantine(self, kind: str, path: Path) -> Path | None:
        """Move a corrupt object or artifact folder (`kind`: objects | artifacts) to quarantine/, where
        nothing uses it; None if it is gone. Links to it elsewhere (synced targets) keep the bad bytes
        until the next sync replaces them."""
        dest = self.root / "quarantine" / kind / f"{path.name}-{uuid.uuid4().hex[:8]}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, dest)
        except FileNotFoundError:
            return None  # another process quarantined it first
        verified_path(self.root, kind, path.name).unlink(missing_ok=True)
        return dest

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
        add = {
            "object_hits": self.stats.hits,
            "object_downloads": self.stats.downloaded,
            "bytes_downloaded": self.stats.bytes_downloaded,
            **extra,
        }
        if self.stats.copied:
            add["object_copies"] = self.stats.copied
        if not any(add.values()):
            return
        try:
            with self.lock("stats"):
                data = self.load_counters()
                for k, v in add.items():
                    data[k] = data.get(k, 0) + v
                write_atomic(self.root / "stats.json", json.dumps(data, sort_keys=True).encode())
        except OSError:
            return  # the counters are advisory: a full disk must not hide the error that filled it
        self.stats = Stats()

    # -- housekeeping ----------------------------------------------------------------------------
    def partials(self) -> list[tuple[Path, int]]:
        """The partial downloads under tmp/ kept for resuming, with their sizes."""
        tmp = self.root / "tmp"
        found = []
        for p in sorted(tmp.glob("*.partial")) if tmp.is_dir() else []:
            try:
                found.append((p, p.stat().st_size))
            except FileNotFoundError:
                continue
        return found

    def remove_partials(self) -> list[tuple[Path, int]]:
        """Remove every partial download no running command is writing (its lock is free), whatever its age;
        returns what was removed. Frees the space an interrupted download holds (a full disk), at the cost of
        downloading that file from the start next time."""
        removed = []
        for p, size in self.partials():
            stem = p.name.removesuffix(".partial")
            try:
                with self.lock(stem if stem.startswith("blob-") else f"obj-{stem}", timeout=0):
                    p.unlink(missing_ok=True)
            except Timeout:
                continue  # being written right now
            removed.append((p, size))
        return removed

    def clean_tmp(self, max_age: float = STALE_TMP_SECONDS) -> int:
        """Remove leftovers of killed processes from tmp/; returns how many. Safe while other processes work.

        A partial download is removed only while holding its lock (so never under a running download):
        blob partials at once (small files are fetched again whole), hash-named ones once older than
        `max_age` (until then the next fetch of that object resumes from them). Anything else, such as
        build staging folders, goes once older than `max_age`.
        """
        tmp = self.root / "tmp"
        if not tmp.is_dir():
            return 0
        removed, now = 0, time.time()
        for p in sorted(tmp.iterdir()):
            try:
                old = now - p.lstat().st_mtime > max_age
            except FileNotFoundError:
                continue
            stem = p.name.removesuffix(".partial")
            if p.name.endswith(".partial") and is_sha256(stem):
                if not old:
                    continue
                lock = f"obj-{stem}"
            elif p.name.startswith("blob-") and p.name.endswith(".partial"):
                lock = stem
            elif old:
                lock = None
            else:
                continue
            try:
                if lock is not None:
                    with self.lock(lock, timeout=0):
                        p.unlink(missing_ok=True)
                else:
                    remove_tree(p, ignore_errors=True)
            except Timeout:
                continue  # in use by a running download
            removed += 1
        return removed


def _drop_holds(path: Path, f) -> None:
    """Release a Store's holds (when it is collected, or the process exits)."""
    path.unlink(missing_ok=True)
    f.close()


def mismatch(label: str, expected: str, actual: str | None, size: int, actual_size: int) -> IntegrityError:
    """The error for bytes that do not match their pinned sha256 (`actual` None: more bytes than expected)."""
    got = actual if actual is not None else f"more than {size} bytes"
    return IntegrityError(
        f"{label}: sha256 mismatch (expected {expected}, got {got}; size {actual_size} vs {size}); nothing was stored",
        "the source changed or was tampered with; if the change is intended, re-lock the model "
        "with `gpux lock --upgrade NAME` (or pull it again)",
    )
