"""`HuggingFaceManager`: models on the Hugging Face Hub (or any server at `HF_ENDPOINT`), through `hub_api`.

A branch or tag is resolved to its commit once; everything afterwards uses that commit only.
Large (LFS) files carry the sha256 the Hub reports; small files only have a git blob sha1, so they
are downloaded at lock time, hashed while they stream into the store, and checked against that sha1.
The token (HF_TOKEN or the stored login) is passed to the client and never written anywhere.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

from gpuxbuild.errors import RegistryError, quote
from gpuxbuild.hashing import is_hex_digest, is_sha256
from gpuxbuild.network import (
    GaveUp,
    RetryPolicy,
    http_timeout,
    redact_text,
    redact_url,
    requests_failure_name,
    requests_transient,
    url_host,
)
from gpuxbuild.registries.base import (
    Listed,
    ModelInfo,
    ModelManager,
    PinnedModel,
    Progress,
    check_repo_path,
    is_git_commit,
    license_of,
)
from gpuxbuild.store.files import FileEntry

if TYPE_CHECKING:
    from gpuxbuild.registries.hub_api import RepoFile

SMALL_FILE_JOBS = 8  # small files are fetched at resolve time to learn their sha256, in parallel
MAX_RELATIVE_REDIRECTS = 5  # as a renamed repo's old name answers


@dataclass(frozen=True)
class _Head:
    """What a HEAD of a file's resolve URL says: the commit it served, where the bytes are, Xet data if any."""

    commit: str | None
    location: str
    xet: Any


def check_listed_file(where: str, sib: RepoFile) -> FileEntry | None:
    """Refuse a listed file whose hashes are not hex digests (they name files in the store) or whose large
    file has no size; returns a large (LFS) file's entry, its sha256 and size as listed."""
    if sib.lfs:
        what, value, ok = "sha256", sib.lfs_sha256, is_sha256(sib.lfs_sha256)
    else:
        what, value, ok = "git blob id", sib.blob_id, sib.blob_id is None or is_hex_digest(sib.blob_id, 40)
    if not ok:
        raise RegistryError(
            f"{where}: the server lists an invalid {what} {quote(value)} for {quote(sib.path)}",
            "check HF_ENDPOINT points to a Hub (or a faithful mirror)",
        )
    if not sib.lfs:
        return None
    if sib.lfs_sha256 is None or sib.lfs_size is None:
        raise RegistryError(
            f"{where}: the server lists no size for the large file {quote(sib.path)}",
            "check HF_ENDPOINT points to a Hub (or a faithful mirror)",
        )
    return FileEntry(sib.path, sib.lfs_sha256, sib.lfs_size)


def _xet_available() -> bool:
    from huggingface_hub.file_download import is_xet_available

    return is_xet_available()


class HuggingFaceManager(ModelManager):
    """The Hugging Face Hub."""

    name = "huggingface"

    def __init__(self, *, project, offline: bool = False, store=None):
        super().__init__(project=project, offline=offline, store=store)
        self.offline = offline or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")

    @cached_property
    def retry(self) -> RetryPolicy:
        return RetryPolicy.from_env()

    def display(self, repo: str) -> str:
        return f"hf:{repo}"

    @property
    def endpoint(self) -> str:
        from gpuxbuild.registries import hub_api

        return hub_api.endpoint()

    def _need_network(self, what: str) -> None:
        if self.offline:
            raise RegistryError(
                f"{what}: needs the network, but offline mode is on (--offline or HF_HUB_OFFLINE=1)",
                "run once online, or pull/sync the model while online so it is in the store",
            )

    @contextmanager
    def _errors(self, repo: str, revision: str | None = None, path: str | None = None):
        """Translate the Hub's error answers and network exceptions into one-line RegistryErrors."""
        import requests

        from gpuxbuild.registries.hub_api import HubHTTPError, NotAListing

        where = f"hf:{repo}" + (f"@{revision}" if revision else "")
        endpoint = redact_url(self.endpoint)
        try:
            yield
        except HubHTTPError as exc:
            # What the Hub's error code says, and what to do; any other error answer is reported by its status.
            said = {
                "GatedRepo": (
                    f"{where} is gated: you need to accept its terms and authenticate",
                    "accept the terms on the model page, then set HF_TOKEN (or `huggingface-cli login`)",
                ),
                "RepoNotFound": (
                    f"{where}: repository not found on {endpoint} (or it is private)",
                    "check the repo id in the model's source; for a private repo set HF_TOKEN",
                ),
                "RevisionNotFound": (
                    f"{where}: revision {revision!r} not found",
                    "use an existing branch, tag or commit of the repo",
                ),
                "EntryNotFound": (f"{where}: file {path!r} not found", "re-lock the model: `gpux lock --upgrade NAME`"),
            }.get(exc.code or "")
            raise (RegistryError(*said) if said else self._network_error(where, path, exc)) from None
        except (requests.RequestException, GaveUp) as exc:
            raise self._network_error(where, path, exc) from None
        except NotAListing:
            raise RegistryError(
                f"{where}: {url_host(self.endpoint)} answered something that is not a Hub repo listing",
                "check HF_ENDPOINT points to a Hub (or a faithful mirror)",
            ) from None

    def _network_error(self, where: str, path: str | None, exc: BaseException) -> RegistryError:
        """One line for a failed request, naming the host it went to (never its credentials)."""
        import requests

        attempts = ""
        if isinstance(exc, GaveUp):
            attempts = f", {exc.attempts} attempt" + ("s" if exc.attempts > 1 else "")
            exc = exc.error
        response = getattr(exc, "response", None)
        request = getattr(exc, "request", None) or getattr(response, "request", None)
        host = url_host(getattr(request, "url", None) or self.endpoint)
        retry = "retry later, or allow more with GPUX_HTTP_RETRIES / GPUX_HTTP_TIMEOUT"
        if isinstance(exc, requests.HTTPError) and response is not None:
            if response.status_code in (401, 403):
                return RegistryError(
                    f"{where}: not authorized (HTTP {response.status_code})", "set HF_TOKEN to a token with access"
                )
            return RegistryError(
                f"{where}: {host} answered HTTP {response.status_code}{attempts}", f"{retry}; check HF_ENDPOINT"
            )
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return RegistryError(
                f"{where}: cannot reach {host} ({requests_failure_name(exc)}{attempts})",
                f"check the network or HF_ENDPOINT ({retry}); models already in the store work with --offline",
            )
        # e.g. a transfer cut mid-body (ChunkedEncodingError) each time: what arrived is kept and resumed next time
        return RegistryError(
            f"{where}"
            + (f": {path}" if path else "")
            + f": transfer from {host} failed ({type(exc).__name__}{attempts})",
            "run the command again: large downloads resume where they stopped",
        )

    def resolve(self, repo: str, revision: str | None, *, pin: str | None = None) -> PinnedModel:
        return self._resolve(repo, revision, pin, None)

    def resolve_streaming(
        self, repo: str, revision: str | None, on_listed: Listed, *, pin: str | None = None
    ) -> PinnedModel:
        # LFS files come with their sha256: they can be fetched while the small files are hashed, and
        # small files the caller does not need (README.md, .gitattributes) are not downloaded at all.
        return self._resolve(repo, revision, pin, on_listed)

    def _resolve(self, repo: str, revision: str | None, pin: str | None, on_listed: Listed | None) -> PinnedModel:
        from gpuxbuild.registries import hub_api

        rev = pin or revision or "main"
        self._need_network(f"resolving hf:{repo}@{rev}")
        timeout = http_timeout("metadata")
        with self._errors(repo, rev):
            info = self.retry.run(lambda: hub_api.list_revision(repo, rev, timeout=timeout), requests_transient)
        commit = info.commit
        if not is_git_commit(commit):
            raise RegistryError(
                f"hf:{repo}@{rev}: the server returned no commit id", "check HF_ENDPOINT points to a Hub"
            )
        config: dict = {}
        siblings = sorted(info.files, key=lambda s: s.path)
        large: list[FileEntry] = []
        for sib in siblings:  # every name and hash is checked before anything is downloaded
            check_repo_path(repo, sib.path)
            if entry := check_listed_file(f"hf:{repo}@{commit[:12]}", sib):
                large.append(entry)
        paths = [s.path for s in siblings]
        wanted = on_listed(commit, paths, large) if on_listed is not None else None
        # config.json is read for the model's metadata even when the caller does not keep it.
        small = [s for s in siblings if not s.lfs and (wanted is None or s.path in wanted or s.path == "config.json")]
        with ThreadPoolExecutor(max_workers=min(SMALL_FILE_JOBS, len(small) or 1)) as pool:
            hashed = list(pool.map(lambda s: self._hash_small(repo, commit, s.path, s.blob_id, s.size), small))
        for entry in hashed:
            if entry.path == "config.json":
                config = self._read_json(entry, repo)
        files = sorted(hashed + large)
        model_info = ModelInfo(
            pipeline_tag=info.pipeline_tag,
            library=info.library,
            architectures=list(config.get("architectures") or info.config.get("architectures") or []),
            model_type=config.get("model_type") or info.config.get("model_type"),
            license=license_of(info.card, config, info.tags),
            card_data=info.card,
            config=config,
        )
        return PinnedModel(self.name, repo, revision, commit, files, model_info, paths)

    def _store(self):
        if self.store is None:
            from gpuxbuild.store.objects import Store

            self.store = Store()
        return self.store

    def _hash_small(self, repo: str, commit: str, path: str, blob_id: str | None, size: int | None) -> FileEntry:
        """The sha256 of a small file: from the store's git-blob index, else downloaded into the store
        (hashed as it streams) and checked against its git blob sha1 before it becomes visible."""
        store = self._store()
        label = f"hf:{repo}@{commit[:12]}: {path}"
        if not blob_id or size is None:
            raise RegistryError(
                f"{label}: the server lists no git blob id or size for it", "check HF_ENDPOINT points to a Hub"
            )
        # One GET, no metadata request first: a git-stored file is never Xet-backed, and the blob sha1
        # check proves the bytes are this commit's.
        sha = store.ensure_blob(
            blob_id,
            size,
            lambda dest, _resume: self._get(repo, commit, path, dest, size, None, head=False),
            label=label,
        )
        return FileEntry(path, sha, size)

    def _read_json(self, entry: FileEntry, repo: str) -> dict:
        try:
            data = json.loads(self._store().object_path(entry.sha256).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise RegistryError(
                f"hf:{repo}: {entry.path} is not valid JSON ({exc})", "fix the file in the repo"
            ) from None
        return data if isinstance(data, dict) else {}

    def _get(
        self, repo, commit, path, dest: BinaryIO, size: int | None, progress: Progress | None, *, head: bool = True
    ):
        """Download one file of `commit` into `dest`, from `dest.tell()` on; `head` first asks for its metadata
        (CDN location, Xet). Transient failures are retried, each attempt resuming from what arrived."""
        from gpuxbuild.registries import hub_api

        self._need_network(f"downloading hf:{repo}@{commit[:12]}/{path}")
        check = (lambda: progress(0)) if progress else (lambda: None)  # a stopped fetch ends a retry's wait
        with self._errors(repo, commit, path):
            url = hub_api.file_url(repo, commit, path)
            headers = hub_api.headers()
            if head:
                meta = self.retry.run(lambda: self._head(url, headers), requests_transient, check=check)
                if meta.commit and meta.commit != commit:
                    raise RegistryError(
                        f"hf:{repo}: asked for commit {commit}, server answered {meta.commit}", "check HF_ENDPOINT"
                    )
                # As hf_hub_download does: Xet only when hf_xet is installed and HF_HUB_DISABLE_XET is unset.
                if meta.xet is not None and _xet_available():
                    self._xet_get(meta.xet, dest, size, path, label=f"hf:{repo}@{commit[:12]}: {path}")
                    return
                if urlsplit(meta.location).netloc != urlsplit(url).netloc:
                    headers.pop(
                        "authorization", None
                    )  # another origin (the CDN): its URL is signed, our token stays here
                url = meta.location
            mark = dest.tell()

            def progressed() -> bool:
                nonlocal mark
                moved, mark = dest.tell() != mark, dest.tell()
                return moved

            self.retry.run(
                lambda: self._stream(url, headers, dest, progress),
                requests_transient,
                progressed=progressed,
                check=check,
            )

    def _head(self, url: str, headers: dict) -> _Head:
        """The file's commit, location and Xet data from a HEAD request; relative redirects (a renamed repo) are followed."""
        from gpuxbuild.registries import hub_api

        timeout = http_timeout("metadata")
        for _ in range(MAX_RELATIVE_REDIRECTS):
            r = hub_api.session().head(
                url,
                headers={**headers, "Accept-Encoding": "identity"},
                allow_redirects=False,
                timeout=(timeout, timeout),
            )
            target = r.headers.get("Location")
            if not (300 <= r.status_code < 400 and target and not urlsplit(target).netloc):
                break
            url = urlsplit(url)._replace(path=urlsplit(target).path).geturl()
        hub_api.raise_for_status(r)
        return _Head(
            r.headers.get("X-Repo-Commit"),
            r.headers.get("Location") or r.url,  # r.url is the URL requested: redirects are not followed
            hub_api.xet_file_data(r),
        )

    @staticmethod
    def _stream(url: str, headers: dict, dest: BinaryIO, progress: Progress | None) -> None:
        """One GET of `url` into `dest`, asking only for the bytes after `dest.tell()`."""
        import requests
        from huggingface_hub import constants

        from gpuxbuild.registries import hub_api

        offset = dest.tell()
        headers = {**headers, "Accept-Encoding": "identity"}  # the file's own bytes, so that Range offsets are theirs
        if offset:
            headers["Range"] = f"bytes={offset}-"
        timeout = http_timeout("download")
        with hub_api.session().get(url, headers=headers, stream=True, timeout=(timeout, timeout)) as r:
            hub_api.raise_for_status(r)
            if offset and r.status_code == 200:  # the server ignored the Range: start over
                dest.seek(0)
                dest.truncate()
            try:
                for chunk in r.iter_content(chunk_size=constants.DOWNLOAD_CHUNK_SIZE):
                    if progress:
                        progress(len(chunk))
                    dest.write(chunk)
            except requests.RequestException as exc:
                exc.request = exc.request or r.request  # a body cut short: the error names the host it came from
                raise

    def _xet_get(self, xet_file_data, dest: BinaryIO, size, path: str, *, label: str) -> None:
        """Xet-backed files: the client writes to a path, so stream that file into `dest` afterwards."""
        import tempfile
        from pathlib import Path

        from huggingface_hub import errors as hf_errors
        from huggingface_hub.file_download import xet_get

        from gpuxbuild.registries import hub_api

        hint = "retry; or set HF_HUB_DISABLE_XET=1 to download it over plain HTTP"
        with tempfile.TemporaryDirectory(dir=self._store().tmp_dir()) as d:
            tmp = Path(d) / "xet"
            try:
                xet_get(
                    incomplete_path=tmp,
                    xet_file_data=xet_file_data,
                    headers=hub_api.headers(),
                    expected_size=size,
                    displayed_filename=path,
                )
            except hf_errors.HfHubHTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status in (401, 403):
                    raise  # reported as an authorization problem
                raise RegistryError(f"{label}: the Xet download failed (HTTP {status})", hint) from None
            except (RuntimeError, OSError, ValueError) as exc:  # hf_xet's own failures
                raise RegistryError(
                    f"{label}: the Xet download failed ({type(exc).__name__}: {redact_text(str(exc))})", hint
                ) from None
            dest.seek(0)
            dest.truncate()
            with open(tmp, "rb") as f:
                while chunk := f.read(1 << 20):
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
        # `dest` is positioned after the `resume_from` bytes already there; every attempt asks for what follows.
        self._get(repo, commit, file.path, dest, file.size, progress)
