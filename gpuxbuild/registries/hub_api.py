"""The Hugging Face Hub's HTTP API, as much of it as gpuxbuild uses, over plain `requests`: a revision's
listing, a file's URL, the request headers (token, user agent), the Hub's error codes and its Xet headers.

huggingface_hub's `HfApi` and `huggingface_hub.utils` speak the same API, but importing them costs 0.1-0.15 s
more than `requests` alone (its upload, inference and Space APIs, tqdm), paid by every command that resolves
a model: as long as a whole 100 MB download on loopback. Only its cheap `constants` (the endpoint, the token
file, the variables it honours) are read here, and its Xet client is imported when a file is Xet-backed.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests

from gpuxbuild import __version__
from gpuxbuild.network import redact_url

# A 401 on these paths means "not found, or private" to the Hub (huggingface_hub reads it so as well).
_REPO_URL = re.compile(r"^https://[^/]+(/api/(models|datasets|spaces)/(.+)|/(.+)/resolve/(.+))")
_XET_HASH = "X-Xet-Hash"
USER_AGENT = f"gpuxbuild/{__version__}; python/{sys.version.split()[0]}"


class HubHTTPError(requests.HTTPError):
    """An error answer of the Hub. `code` is what it says went wrong (its `X-Error-Code`: "RepoNotFound",
    "RevisionNotFound", "EntryNotFound", "GatedRepo"), or None."""

    def __init__(self, response: requests.Response, code: str | None):
        super().__init__(f"HTTP {response.status_code} for {redact_url(response.url)}", response=response)
        self.code = code


class NotAListing(Exception):
    """The answer to a listing request is no repo listing (not JSON, or not shaped like one)."""


@dataclass(frozen=True)
class RepoFile:
    """One file of a listing: large (LFS) files have their sha256, small ones their git blob id."""

    path: str
    size: int | None
    blob_id: str | None
    lfs: bool = False
    lfs_sha256: str | None = None
    lfs_size: int | None = None


@dataclass(frozen=True)
class RevisionListing:
    """What the Hub says of one revision of a model repo."""

    commit: str
    files: tuple[RepoFile, ...]
    card: dict
    pipeline_tag: str | None
    library: str | None
    config: dict
    tags: tuple[str, ...]


def endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def token() -> str | None:
    """The token huggingface_hub would send: HF_TOKEN (or HUGGING_FACE_HUB_TOKEN), else the stored login;
    none when HF_HUB_DISABLE_IMPLICIT_TOKEN is set."""
    from huggingface_hub import constants

    if constants.HF_HUB_DISABLE_IMPLICIT_TOKEN:
        return None
    found = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not found:
        try:
            found = Path(constants.HF_TOKEN_PATH).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
    return found.replace("\r", "").replace("\n", "").strip() or None


def headers() -> dict[str, str]:
    found = token()
    return {"user-agent": USER_AGENT} | ({"authorization": f"Bearer {found}"} if found else {})


_local = threading.local()


def session() -> requests.Session:
    """This thread's session (its connections are kept alive between requests; sessions are not thread-safe)."""
    if getattr(_local, "session", None) is None:
        _local.session = requests.Session()
    return _local.session


def raise_for_status(response: requests.Response) -> None:
    """Raise `HubHTTPError` for an error answer, with the Hub's error code."""
    if response.status_code < 400:
        return
    code = response.headers.get("X-Error-Code")
    if (
        code is None
        and response.status_code == 401
        and response.headers.get("X-Error-Message") != "Invalid credentials in Authorization header"
        and _REPO_URL.search(response.request.url or "")
    ):
        code = "RepoNotFound"
    raise HubHTTPError(response, code)


def file_url(repo: str, revision: str, path: str) -> str:
    return f"{endpoint()}/{repo}/resolve/{quote(revision, safe='')}/{quote(path)}"


def list_revision(repo: str, revision: str, *, timeout: float) -> RevisionListing:
    """The listing of `revision` (branch, tag or commit) of model repo `repo`, every file with its hashes."""
    response = session().get(
        f"{endpoint()}/api/models/{repo}/revision/{quote(revision, safe='')}",
        params={"blobs": "True"},
        headers=headers(),
        timeout=(timeout, timeout),
    )
    raise_for_status(response)
    try:
        data = response.json()
    except ValueError:
        raise NotAListing from None
    if not isinstance(data, dict) or not isinstance(data.get("siblings") or [], list):
        raise NotAListing
    return RevisionListing(
        commit=str(data.get("sha") or ""),
        files=tuple(_repo_file(s) for s in data.get("siblings") or []),
        card={k: v for k, v in _dict(data.get("cardData")).items() if v is not None},
        pipeline_tag=_str(data.get("pipeline_tag")),
        library=_str(data.get("library_name")),
        config=_dict(data.get("config")),
        tags=tuple(str(t) for t in data.get("tags") or () if isinstance(t, str)),
    )


def _repo_file(entry) -> RepoFile:
    if not isinstance(entry, dict) or not isinstance(entry.get("rfilename"), str):
        raise NotAListing
    lfs = entry.get("lfs")
    return RepoFile(
        entry["rfilename"],
        _int(entry.get("size")),
        _str(entry.get("blobId")),
        lfs is not None,
        _str(_dict(lfs).get("sha256")),
        _int(_dict(lfs).get("size")),
    )


def xet_file_data(response: requests.Response):
    """huggingface_hub's Xet data for a file whose HEAD answer names its Xet hash, else None."""
    if _XET_HASH not in response.headers:
        return None
    from huggingface_hub.utils import parse_xet_file_data_from_response

    return parse_xet_file_data_from_response(response, endpoint=endpoint())


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _str(value) -> str | None:
    return value if isinstance(value, str) else None


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
