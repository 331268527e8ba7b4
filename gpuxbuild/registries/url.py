"""`UrlManager`: model files at plain URLs: `https://host/path/model.onnx` (one file), or a folder
`https://host/path/` whose files the manifest lists (`files:`), since a web server has no listing to trust.

A URL offers no sha256, so `gpux lock` downloads each file into the store, hashing it as it streams, and pins
that sha256; sync verifies it as for any registry. The pin ("commit") is the digest of the files' paths,
sha256 and sizes, as for a local folder. Plain `http://` is accepted only on this machine (the source check in
gpuxbuild/registries/__init__.py): what a lock pins must be what the server sent. Credentials: `requests`
reads ~/.netrc (or NETRC) for the host; they are never written anywhere.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import BinaryIO
from urllib.parse import quote as url_quote
from urllib.parse import unquote, urlsplit

from gpuxbuild.errors import RegistryError, quote
from gpuxbuild.hashing import digest
from gpuxbuild.network import (
    GaveUp,
    RetryPolicy,
    http_timeout,
    redact_url,
    requests_failure_name,
    requests_transient,
    url_host,
)
from gpuxbuild.registries.base import Listed, ModelManager, PinnedModel, Progress, check_repo_path, offline_miss
from gpuxbuild.registries.files import model_info
from gpuxbuild.store.files import FileEntry

FILE_JOBS = 8


class UrlManager(ModelManager):
    """Files at https:// URLs (http:// on loopback)."""

    name = "https"

    def __init__(self, *, project, offline: bool = False, store=None):
        super().__init__(project=project, offline=offline, store=store)
        self.files: tuple[str, ...] = ()

    @cached_property
    def retry(self) -> RetryPolicy:
        return RetryPolicy.from_env()

    def display(self, repo: str) -> str:
        return redact_url(repo)

    def with_files(self, files: tuple[str, ...]) -> UrlManager:
        listed = copy.copy(self)
        listed.files = files
        return listed

    def _paths(self, repo: str) -> list[str]:
        """The model's file paths: the manifest's `files:` under a folder URL, else the URL's file name."""
        paths = sorted(self.files) if repo.endswith("/") else [unquote(urlsplit(repo).path.rsplit("/", 1)[-1])]
        if not paths:
            raise RegistryError(
                f"{self.display(repo)}: a folder URL, but no files are listed for it",
                "list them under `files:` in gpux.models.yml, or name one file's URL",
            )
        for path in paths:
            check_repo_path(self.display(repo), path)
        return paths

    @staticmethod
    def _url(repo: str, path: str) -> str:
        return repo + url_quote(path) if repo.endswith("/") else repo

    def resolve(self, repo: str, revision: str | None, *, pin: str | None = None) -> PinnedModel:
        return self.resolve_streaming(repo, revision, lambda *_: None, pin=pin)

    def resolve_streaming(
        self, repo: str, revision: str | None, on_listed: Listed, *, pin: str | None = None
    ) -> PinnedModel:
        where = self.display(repo)
        if self.offline:
            raise RegistryError(
                f"{where}: hashing its files needs the network, but offline mode is on",
                "run `gpux lock` online once; a locked model syncs offline from the store",
            )
        paths = self._paths(repo)
        store = self._store()

        def fetch(path: str) -> FileEntry:
            sha, size = store.ingest(
                lambda dest, _resume: self._get(repo, path, dest, None), size=None, label=f"{where}: {path}"
            )
            return FileEntry(path, sha, size)

        # Every listed file is downloaded: the manifest named each, and the pin covers them all.
        with ThreadPoolExecutor(max_workers=min(FILE_JOBS, len(paths))) as pool:
            files = sorted(pool.map(fetch, paths))
        commit = digest([f.as_dict() for f in files]).removeprefix("sha256:")
        if pin is not None and pin != commit:
            raise RegistryError(
                f"{where}: the files changed since they were locked (pinned {pin[:12]}, now {commit[:12]})",
                "re-lock it with `gpux lock --upgrade NAME`",
            )
        on_listed(commit, paths, files)
        return PinnedModel(self.name, repo, revision, commit, files, model_info(store, files, where=where), paths)

    def _store(self):
        if self.store is None:
            from gpuxbuild.store.objects import Store

            self.store = Store()
        return self.store

    def _get(self, repo: str, path: str, dest: BinaryIO, progress: Progress | None) -> None:
        """Download one file into `dest` from `dest.tell()` on; transient failures are retried, each attempt
        resuming from what arrived."""
        url = self._url(repo, path)
        where = f"{self.display(repo)}" + (f": {path}" if repo.endswith("/") else "")
        check = (lambda: progress(0)) if progress else (lambda: None)
        mark = dest.tell()

        def progressed() -> bool:
            nonlocal mark
            moved, mark = dest.tell() != mark, dest.tell()
            return moved

        try:
            self.retry.run(
                lambda: self._stream(url, dest, progress), requests_transient, progressed=progressed, check=check
            )
        except Exception as exc:
            error = self._failure(where, url, exc)
            if error is None:
                raise
            raise error from None

    @staticmethod
    def _failure(where: str, url: str, exc: BaseException) -> RegistryError | None:
        """One line for a failed request, naming the host (never credentials); None for other errors."""
        import requests

        attempts = ""
        if isinstance(exc, GaveUp):
            attempts = f", {exc.attempts} attempt" + ("s" if exc.attempts > 1 else "")
            exc = exc.error
        host = url_host(url)
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            status = exc.response.status_code
            if status == 404:
                return RegistryError(f"{where}: not found on {host} (HTTP 404)", "check the URL in the model's source")
            if status in (401, 403):
                return RegistryError(
                    f"{where}: not authorized (HTTP {status})",
                    f"put credentials for {urlsplit(url).hostname} in ~/.netrc (or NETRC)",
                )
            return RegistryError(f"{where}: {host} answered HTTP {status}{attempts}", "retry later, or check the URL")
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return RegistryError(
                f"{where}: cannot reach {host} ({requests_failure_name(exc)}{attempts})",
                "check the network and the URL (GPUX_HTTP_RETRIES / GPUX_HTTP_TIMEOUT allow more patience)",
            )
        if isinstance(exc, requests.RequestException):
            return RegistryError(
                f"{where}: transfer from {host} failed ({type(exc).__name__}{attempts})", "run the command again"
            )
        return None

    def _stream(self, url: str, dest: BinaryIO, progress: Progress | None) -> None:
        import requests

        offset = dest.tell()
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        timeout = (http_timeout("metadata"), http_timeout("download"))
        with requests.get(url, headers=headers, stream=True, timeout=timeout) as r:
            r.raise_for_status()
            if offset and r.status_code == 200:  # the server ignored the Range: start over
                dest.seek(0)
                dest.truncate()
            for chunk in r.iter_content(chunk_size=1 << 20):
                if progress:
                    progress(len(chunk))
                dest.write(chunk)

    def download(
        self,
        repo: str,
        commit: str,
        file: FileEntry,
        dest: BinaryIO,
        *,
        resume_from: int = 0,
        progress: Progress | None = None,
    ) -> None:
        if self.offline:
            raise offline_miss(f"{self.display(repo)}: {quote(file.path)}")
        self._get(repo, file.path, dest, progress)
