"""Fetching a pinned file set from its registry into the store: parallel, verified, resumable.

Each file goes through `Store.ensure_object`, which hashes while the bytes stream in and publishes only
verified objects, so a failure or a kill at any moment leaves nothing a later run would trust.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Protocol

from gpuxbuild.errors import GpuxError, RegistryError
from gpuxbuild.registries.base import FileEntry, ModelManager
from gpuxbuild.selection import is_pickle
from gpuxbuild.store import Store

DEFAULT_JOBS = 4


class Reporter(Protocol):
    """Receives progress events; the CLI renders them with rich, the library passes None."""

    def start(self, key: str, total: int) -> None: ...
    def advance(self, key: str, n: int) -> None: ...
    def finish(self, key: str, hit: bool) -> None: ...


class Stopped(Exception):
    """A transfer stopped because the fetch it belongs to failed or was interrupted."""


@dataclass
class FetchResult:
    hits: list[str] = field(default_factory=list)  # paths already in the store
    downloaded: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0


def check_pickles(name: str, files: list[FileEntry], allow_pickle: bool) -> None:
    """Refuse pickle weights (they can run code when loaded) unless the model allows them."""
    pickles = [f.path for f in files if is_pickle(f.path)]
    if pickles and not allow_pickle:
        raise GpuxError(
            f"model {name!r} ships its weights only as pickle files ({', '.join(pickles[:3])}), which can run code when loaded",
            "if you trust the repo, set `allow_pickle: true` for it in gpux.models.yml (or pass --allow-pickle)",
        )


def missing_files(store: Store, files: list[FileEntry]) -> list[FileEntry]:
    """The files whose objects are not in the store yet."""
    return [f for f in files if not store.has_object(f.sha256)]


def fetch(
    manager: ModelManager,
    repo: str,
    commit: str,
    files: list[FileEntry],
    store: Store,
    *,
    label: str,
    jobs: int = DEFAULT_JOBS,
    reporter: Reporter | None = None,
) -> FetchResult:
    """Make every file's object exist in the store, downloading the missing ones in parallel."""
    result = FetchResult()
    todo = []
    for f in files:
        if store.has_object(f.sha256):
            result.hits.append(f.path)
        else:
            todo.append(f)
    store.record_stats(hits=len(result.hits))
    if todo and manager.offline:
        names = ", ".join(f.path for f in todo[:5]) + (" ..." if len(todo) > 5 else "")
        raise RegistryError(
            f"{label}: {len(todo)} file(s) not in the store and offline mode is on: {names}",
            "run the same command online once, or drop --offline / HF_HUB_OFFLINE",
        )

    stop = threading.Event()

    def one(f: FileEntry) -> bool:
        if reporter:
            reporter.start(f.path, f.size)

        def progress(n: int) -> None:
            # Called between chunks: how a Ctrl-C or another file's failure stops this transfer at once,
            # keeping what arrived for the next run to resume.
            if stop.is_set():
                raise Stopped(f"{label}: {f.path}: stopped")
            if reporter:
                reporter.advance(f.path, n)

        def writer(dest, resume_from):
            if reporter and resume_from:
                reporter.advance(f.path, resume_from)
            manager.download(repo, commit, f, dest, resume_from=resume_from, progress=progress)

        hit = store.ensure_object(f.sha256, f.size, writer, label=f"{label}: {f.path}")
        if reporter:
            reporter.finish(f.path, hit)
        return hit

    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo) or 1)))
    try:
        futures = {pool.submit(one, f): f for f in todo}
        for fut in as_completed(futures):
            f = futures[fut]
            hit = fut.result()
            (result.hits if hit else result.downloaded).append(f.path)
            if not hit:
                result.bytes_downloaded += f.size
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    result.hits.sort()
    result.downloaded.sort()
    return result
