"""Named store locks: one writer per object or artifact, across the threads of a process and across processes."""

from __future__ import annotations

import threading
import time

from filelock import FileLock, Timeout

_THREAD_LOCKS: dict[str, threading.RLock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


class StoreLock:
    """A named store lock: a lock between this process's threads, then the file lock between processes.

    filelock wakes a waiter by polling every 50 ms; threads of one process (parallel downloads, resolves,
    builds wanting the same object) wait on the thread lock instead and go on the moment it is released.
    Taking a lock again in the thread that holds it is a bug that filelock reports (RuntimeError).
    """

    def __init__(self, path: str, timeout: float = -1):
        with _THREAD_LOCKS_GUARD:
            self._thread = _THREAD_LOCKS.setdefault(path, threading.RLock())
        self._file = FileLock(path, timeout=timeout)
        self._timeout = timeout

    def __enter__(self) -> StoreLock:
        started = time.monotonic()
        if not self._thread.acquire(timeout=self._timeout if self._timeout >= 0 else -1):
            raise Timeout(self._file.lock_file)
        try:
            # `timeout` bounds the whole wait, both locks together.
            self._file.acquire(
                timeout=max(0.0, self._timeout - (time.monotonic() - started)) if self._timeout >= 0 else -1
            )
        except BaseException:
            self._thread.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._file.release()
        finally:
            self._thread.release()
