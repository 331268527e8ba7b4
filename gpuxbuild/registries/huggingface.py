"""`HuggingFaceManager`: models on the Hugging Face Hub (or any server at `HF_ENDPOINT`), via `huggingface_hub`.

A branch or tag is resolved to its commit once; everything afterwards uses that commit only.
Large (LFS) files carry the sha256 the Hub reports; small files only have a git blob sha1, so they
are downloaded at lock time, hashed while they stream into the store, and checked against that sha1.
The token (HF_TOKEN or the stored login) is passed to the client and never written anywhere.
"""

from __future__ import annotations

import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import BinaryIO

from gpuxbuild.errors import RegistryError, quote
from gpuxbuild.hashing import is_hex_digest, is_sha256
from gpuxbuild.registries.base import FileEntry, Listed, ModelInfo, ModelManager, PinnedModel, Progress, is_git_commit

# Said by http_get when it streams itself instead of using hf_transfer: what `proxies={}` below is for.
warnings.filterwarnings("ignore", message="'hf_transfer' does not support `proxies`", module="huggingface_hub")

SMALL_FILE_JOBS = 8  # small files are fetched at resolve time to learn their sha256, in parallel


def check_repo_path(repo: str, path: str) -> None:
    """Refuse a file name that could land outside the model's folder (absolute, `..`, backslashes, empty parts)."""
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or any(p in ("", ".", "..") for p in parts)
        or (len(path) > 1 and path[1] == ":")
    ):
        raise RegistryError(
            f"{repo}: refusing unsafe file name {quote(path)} from the registry (it could land outside the model folder)",
            "report the repo to its owner; exclude the file with `exclude:` if you trust the rest",
        )


def check_listed_hashes(where: str, sib) -> None:
    """Refuse a listing whose hashes are not hex digests: they name files in the store."""
    if sib.lfs is not None:
        what, value, ok = "sha256", sib.lfs.sha256, is_sha256(sib.lfs.sha256)
    else:
        what, value, ok = "git blob id", sib.blob_id, sib.blob_id is None or is_hex_digest(sib.blob_id, 40)
    if not ok:
        raise RegistryError(
            f"{where}: the server lists an invalid {what} {quote(value)} for {quote(sib.rfilename)}",
            "check HF_ENDPOINT points to a Hub (or a faithful mirror)",
        )


class _Ticks:
    """Adapts huggingface_hub's tqdm-style `update(n)` calls to our progress callback."""

    def __init__(self, progress: Progress | None):
        self._progress = progress

    def update(self, n: int = 1) -> None:
        if self._progress:
            self._progress(n)


class HuggingFaceManager(ModelManager):
    """The Hugging Face Hub."""

    name = "huggingface"

    def __init__(self, *, project, offline: bool = False, store=None):
        super().__init__(project=project, offline=offline, store=store)
        self.offline = offline or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")

    def display(self, repo: str) -> str:
        return f"hf:{repo}"

    @property
    def endpoint(self) -> str:
        from huggingface_hub import constants

        return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT

    def _need_network(self, what: str) -> None:
        if self.offline:
            raise RegistryError(
                f"{what}: needs the network, but offline mode is on (--offline or HF_HUB_OFFLINE=1)",
                "run once online, or pull/sync the model while online so it is in the store",
            )

    @contextmanager
    def _errors(self, repo: str, revision: str | None = None, path: str | None = None):
        """Translate huggingface_hub and network exceptions into one-line RegistryErrors."""
        from huggingface_hub import errors as hf_errors
        import requests

        where = f"hf:{repo}" + (f"@{revision}" if revision else "")
        try:
            yield
        except hf_errors.GatedRepoError:
            raise RegistryError(
                f"{where} is gated: you need to accept its terms and authenticate",
                "accept the terms on the model page, then set HF_TOKEN (or `huggingface-cli login`)",
            ) from None
        except hf_errors.RepositoryNotFoundError:
            raise RegistryError(
                f"{where}: repository not found on {self.endpoint} (or it is private)",
                "check the repo id in the model's source; for a private repo set HF_TOKEN",
            ) from None
        except hf_errors.RevisionNotFoundError:
            raise RegistryError(
                f"{where}: revision {revision!r} not found",
                "use an existing branch, tag or commit of the repo",
            ) from None
        except hf_errors.EntryNotFoundError:
            raise RegistryError(f"{where}: file {path!r} not found", "re-lock the model: `gpux lock --upgrade NAME`") from None
        except hf_errors.OfflineModeIsEnabled:
            raise RegistryError(f"{where}: HF_HUB_OFFLINE is set, so the Hub cannot be reached", "unset it, or use what is in the store") from None
        except hf_errors.HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 403):
                raise RegistryError(f"{where}: not authorized (HTTP {status})", "set HF_TOKEN to a token with access") from None
            raise RegistryError(f"{where}: the Hub answered HTTP {status}", "retry later; check HF_ENDPOINT") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RegistryError(
                f"{where}: cannot reach {self.endpoint} ({type(exc).__name__})",
                "check the network or HF_ENDPOINT; models already in the store work with --offline",
            ) from None
        except requests.RequestException as exc:
            # e.g. a transfer cut mid-body (ChunkedEncodingError): what arrived is kept and resumed next time
            raise RegistryError(
                f"{where}" + (f": {path}" if path else "") + f": transfer failed ({type(exc).__name__})",
                "run the command again: large downloads resume where they stopped",
            ) from None

    def resolve(self, repo: str, revision: str | None, *, pin: str | None = None) -> PinnedModel:
        return self._resolve(repo, revision, pin, None)

    def resolve_streaming(self, repo: str, revision: str | None, on_listed: Listed, *, pin: str | None = None) -> PinnedModel:
        # LFS files come with their sha256: they can be fetched while the small files are hashed, and
        # small files the caller does not need (README.md, .gitattributes) are not downloaded at all.
        return self._resolve(repo, revision, pin, on_listed)

    def _resolve(self, repo: str, revision: str | None, pin: str | None, on_listed: Listed | None) -> PinnedModel:
        from huggingface_hub import HfApi

        rev = pin or revision or "main"
        self._need_network(f"resolving hf:{repo}@{rev}")
        with self._errors(repo, rev):
            info = HfApi(endpoint=self.endpoint).model_info(repo, revision=rev, files_metadata=True)
        commit = info.sha or ""
        if not is_git_commit(commit):
            raise RegistryError(f"hf:{repo}@{rev}: the server returned no commit id", "check HF_ENDPOINT points to a Hub")
        config: dict = {}
        siblings = sorted(info.siblings or [], key=lambda s: s.rfilename)
        for sib in siblings:  # every name and hash is checked before anything is downloaded
            check_repo_path(repo, sib.rfilename)
            check_listed_hashes(f"hf:{repo}@{commit[:12]}", sib)
        large = [FileEntry(s.rfilename, s.lfs.sha256, s.lfs.size) for s in siblings if s.lfs is not None]
        paths = [s.rfilename for s in siblings]
        wanted = on_listed(commit, paths, large) if on_listed is not None else None
        # config.json is read for the model's metadata even when the caller does not keep it.
        small = [s for s in siblings if s.lfs is None and (wanted is None or s.rfilename in wanted or s.rfilename == "config.json")]
        with ThreadPoolExecutor(max_workers=min(SMALL_FILE_JOBS, len(small) or 1)) as pool:
            hashed = list(pool.map(lambda s: self._hash_small(repo, commit, s.rfilename, s.blob_id, s.size), small))
        for entry in hashed:
            if entry.path == "config.json":
                config = self._read_json(entry, repo)
        files = sorted(hashed + large)
        card = info.card_data.to_dict() if info.card_data is not None else {}
        license_ = card.get("license") or next((t.split(":", 1)[1] for t in info.tags or [] if t.startswith("license:")), None)
        model_info = ModelInfo(
            pipeline_tag=info.pipeline_tag,
            library=info.library_name,
            architectures=list(config.get("architectures") or (info.config or {}).get("architectures") or []),
            model_type=config.get("model_type") or (info.config or {}).get("model_type"),
            license=license_,
            card_data=card,
            config=config,
        )
        return PinnedModel(self.name, repo, revision, commit, files, model_info, paths)

    def _store(self):
        if self.store is None:
            from gpuxbuild.store import Store

            self.store = Store()
        return self.store

    def _hash_small(self, repo: str, commit: str, path: str, blob_id: str | None, size: int | None) -> FileEntry:
        """The sha256 of a small file: from the store's git-blob index, else downloaded into the store
        (hashed as it streams) and checked against its git blob sha1 before it becomes visible."""
        store = self._store()
        label = f"hf:{repo}@{commit[:12]}: {path}"
        if not blob_id or size is None:
            raise RegistryError(f"{label}: the server lists no git blob id or size for it", "check HF_ENDPOINT points to a Hub")
        # One GET, no metadata request first: a git-stored file is never Xet-backed, and the blob sha1
        # check proves the bytes are this commit's.
        sha = store.ensure_blob(blob_id, size, lambda dest, _resume: self._get(repo, commit, path, dest, 0, size, None, head=False),
                                label=label)
        return FileEntry(path, sha, size)

    def _read_json(self, entry: FileEntry, repo: str) -> dict:
        try:
            data = json.loads(self._store().object_path(entry.sha256).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise RegistryError(f"hf:{repo}: {entry.path} is not valid JSON ({exc})", "fix the file in the repo") from None
        return data if isinstance(data, dict) else {}

    def _get(self, repo, commit, path, dest: BinaryIO, resume_from: int, size: int | None, progress: Progress | None,
             *, head: bool = True):
        """Download one file of `commit` into `dest`; `head` first asks for its metadata (CDN location, Xet)."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.file_download import http_get, is_xet_available
        from huggingface_hub.utils import build_hf_headers

        self._need_network(f"downloading hf:{repo}@{commit[:12]}/{path}")
        with self._errors(repo, commit, path):
            url = hf_hub_url(repo, path, revision=commit, endpoint=self.endpoint)
            if head:
                meta = get_hf_file_metadata(url, endpoint=self.endpoint)
                if meta.commit_hash and meta.commit_hash != commit:
                    raise RegistryError(f"hf:{repo}: asked for commit {commit}, server answered {meta.commit_hash}", "check HF_ENDPOINT")
                # As hf_hub_download does: Xet only when hf_xet is installed and HF_HUB_DISABLE_XET is unset.
                if meta.xet_file_data is not None and is_xet_available():
                    self._xet_get(meta, dest, size, path, label=f"hf:{repo}@{commit[:12]}: {path}")
                    return
                url = meta.location
            http_get(
                url,
                dest,
                resume_size=resume_from,
                headers=build_hf_headers(),
                # The store checks size and sha256 (and stops a longer body), and names the model in its error.
                expected_size=None,
                # An explicit (empty: the environment's) proxy setting keeps http_get streaming through `dest`
                # when HF_HUB_ENABLE_HF_TRANSFER is set: hf_transfer would write the file by name, unhashed.
                proxies={},
                displayed_filename=path,
                _tqdm_bar=_Ticks(progress),
            )

    def _xet_get(self, meta, dest: BinaryIO, size, path: str, *, label: str) -> None:
        """Xet-backed files: the client writes to a path, so stream that file into `dest` afterwards."""
        import tempfile
        from pathlib import Path

        from huggingface_hub import errors as hf_errors
        from huggingface_hub.file_download import xet_get
        from huggingface_hub.utils import build_hf_headers

        hint = "retry; or set HF_HUB_DISABLE_XET=1 to download it over plain HTTP"
        with tempfile.TemporaryDirectory(dir=self._store().tmp_dir()) as d:
            tmp = Path(d) / "xet"
            try:
                xet_get(incomplete_path=tmp, xet_file_data=meta.xet_file_data, headers=build_hf_headers(),
                        expected_size=size, displayed_filename=path)
            except hf_errors.HfHubHTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                if status in (401, 403):
                    raise  # reported as an authorization problem
                raise RegistryError(f"{label}: the Xet download failed (HTTP {status})", hint) from None
            except (RuntimeError, OSError, ValueError) as exc:  # hf_xet's own failures
                raise RegistryError(f"{label}: the Xet download failed ({type(exc).__name__}: {exc})", hint) from None
            dest.seek(0)
            dest.truncate()
            with open(tmp, "rb") as f:
                while chunk := f.read(1 << 20):
                    dest.write(chunk)

    def download(
        self, repo: str, commit: str, file: FileEntry, dest: BinaryIO, *, resume_from: int = 0, progress: Progress | None = None
    ) -> None:
        self._get(repo, commit, file.path, dest, resume_from, file.size, progress)
