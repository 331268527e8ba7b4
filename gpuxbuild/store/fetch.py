"""Fetching a pinned file set from its registry into the store: parallel, verified, resumable.

Each file goes through `Store.ensure_object`, which hashes while the bytes stream in and publishes only
verified objects, so a failure or a kill at any moment leaves nothing a later run would trust.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from gpuxbuild.errors import RegistryError

if TYPE_CHECKING:  # the registries sit above the store: they call fetch(), fetch only uses them
    from gpuxbuild.registries.base import ModelManager
    from gpuxbuild.store.files import FileEntry
    from gpuxbuild.store.objects import Store

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


def missing_files(store: Store, files: list[FileEntry]) -> list[FileEntry]:
    """The files whose objects are not in the store yet."""
    return [f for f in files if not store.has_object(f.sha256)]


class Fetcher:
    """Downloads files into the store on a thread pool; more files can be added while others are in flight.

    `gpux pull` adds the files whose sha256 the registry listed (large weights) while the rest are still
    being hashed, then the remainder; `wait()` returns once every added file is in the store. Leaving a
    `with` block by an exception stops the transfers at their next chunk (what arrived is kept, for a later
    run to resume).
    """

    def __init__(
        self,
        manager: ModelManager,
        repo: str,
        store: Store,
        *,
        label: str,
        jobs: int = DEFAULT_JOBS,
        reporter: Reporter | None = None,
        force: bool = False,
    ):
        """`force`: download every file again, also those in the store (once per Store: a file this run
        already fetched, say while resolving, is not fetched twice)."""
        self.manager, self.repo, self.store, self.label, self.reporter = manager, repo, store, label, reporter
        self.force = force
        self.result = FetchResult()
        self._added: set[str] = set()
        self._futures: dict = {}
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="gpux-fetch")

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is not None:
            self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, commit: str, files: list[FileEntry]) -> None:
        """Start fetching the files of `commit` not added before and not in the store yet (`force`: and
        not fetched by this Store yet)."""
        files = [f for f in files if f.path not in self._added]
        self._added.update(f.path for f in files)
        todo = []
        for f in files:
            fresh = f.sha256 in self.store.downloaded_objects
            if self.store.has_object(f.sha256) and (fresh or not self.force):
                self.result.hits.append(f.path)
            else:
                todo.append(f)
        self.store.record_stats(hits=len(files) - len(todo))
        if todo and self.manager.offline:
            names = ", ".join(f.path for f in todo[:5]) + (" ..." if len(todo) > 5 else "")
            raise RegistryError(
                f"{self.label}: {len(todo)} file{'' if len(todo) == 1 else 's'} not in the store and offline mode is on: {names}",
                "run the same command online once, or drop --offline / HF_HUB_OFFLINE",
            )
        for f in todo:
            self._futures[self._pool.submit(self._one, commit, f)] = f

    def _one(self, commit: str, f: FileEntry) -> bool:
        reporter, label = self.reporter, f"{self.label}: {f.path}"
        if reporter:
            reporter.start(f.path, f.size)

        def progress(n: int) -> None:
            # Called between chunks: how a Ctrl-C or another file's failure stops this transfer at once,
            # keeping what arrived for the next run to resume.
            if self._stop.is_set():
                raise Stopped(f"{label}: stopped")
            if reporter:
                reporter.advance(f.path, n)

        def writer(dest, resume_from):
            if reporter and resume_from:
                reporter.advance(f.path, resume_from)
            self.manager.download(self.repo, commit, f, dest, resume_from=resume_from, progress=progress)

        hit = self.store.ensure_object(f.sha256, f.size, writer, label=label, force=self.force)
        if reporter:
            reporter.finish(f.path, hit)
        return hit

    def wait(self) -> FetchResult:
        """Wait for every added file; the first failure stops the others and is raised."""
        try:
            for fut in as_completed(self._futures):
                f = self._futures[fut]
                hit = fut.result()
                (self.result.hits if hit else self.result.downloaded).append(f.path)
                if not hit:
                    self.result.bytes_downloaded += f.size
        except BaseException:
            self._stop.set()
            raise
        self._futures = {}
        self.result.hits.sort()
        self.result.downloaded.sort()
        return self.result


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
    with Fetcher(manager, repo, store, label=label, jobs=jobs, reporter=reporter) as fetcher:
        fetcher.add(commit, files)
        return fetcher.wait()
