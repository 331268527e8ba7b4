"""Network settings shared by every remote (registries now, a remote cache later): timeouts, retries, and URLs
safe to show.

`RetryPolicy.run` retries a call while its failures are transient (a refused or reset connection, a body cut
short, a read timeout, HTTP 429 or 5xx) with exponential backoff, honouring `Retry-After`; the call resumes
from what arrived itself (a download asks for the rest with a Range request). `redact_url` is the one way a
URL reaches a message or a log: credentials in it (`user:password@`, token-like query values) are hidden.
Standard library only, so a client of any kind (requests, boto, httpx) can use it with its own `transient`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gpuxbuild.errors import GpuxError

T = TypeVar("T")

DEFAULT_RETRIES = 3
DEFAULT_TIMEOUT = 30.0  # seconds, as uv's UV_HTTP_TIMEOUT
MAX_WAIT = 60.0  # the longest backoff or Retry-After honoured between two attempts
# Query parameters whose values are credentials (signed CDN URLs, API keys), compared lower-cased.
SECRET_PARAMS = frozenset(
    {
        "token",
        "access_token",
        "auth",
        "authorization",
        "key",
        "api_key",
        "apikey",
        "password",
        "pass",
        "secret",
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "se",
        "sp",
        "sv",
        "skoid",
        "sktid",
        "policy",
        "key-pair-id",
    }
)
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")  # a URL inside a message


def _env_number(name: str, default: float, *, integer: bool = False, minimum: float = 0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        kind = "a whole number" if integer else "a number of seconds"
        raise GpuxError(
            f"{name}={raw!r} is not {kind} of at least {minimum:g}", f"set {name} to e.g. {default:g}, or unset it"
        )
    return value


def http_timeout(kind: str) -> float:
    """Seconds a request may wait to connect, and then for each read: `GPUX_HTTP_TIMEOUT`, else huggingface_hub's
    own variable for the `kind` ("metadata": `HF_HUB_ETAG_TIMEOUT`, "download": `HF_HUB_DOWNLOAD_TIMEOUT`)."""
    hf_name = {"metadata": "HF_HUB_ETAG_TIMEOUT", "download": "HF_HUB_DOWNLOAD_TIMEOUT"}[kind]
    if os.environ.get("GPUX_HTTP_TIMEOUT", "").strip():
        return _env_number("GPUX_HTTP_TIMEOUT", DEFAULT_TIMEOUT, minimum=0.001)
    return _env_number(hf_name, DEFAULT_TIMEOUT, minimum=0.001)


@dataclass(frozen=True)
class Transient:
    """A failure worth another attempt; `retry_after` is the server's own wait in seconds, if it said one."""

    retry_after: float | None = None


class GaveUp(Exception):
    """The last transient failure of a call that used up its attempts (`error` is that failure)."""

    def __init__(self, error: BaseException, attempts: int):
        super().__init__(error, attempts)
        self.error, self.attempts = error, attempts


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried (`GPUX_HTTP_RETRIES`, default 3 retries)."""

    retries: int = DEFAULT_RETRIES
    backoff: float = 1.0  # the first wait; doubled after each failure, up to MAX_WAIT

    @classmethod
    def from_env(cls) -> RetryPolicy:
        return cls(retries=int(_env_number("GPUX_HTTP_RETRIES", DEFAULT_RETRIES, integer=True)))

    def run(
        self,
        call: Callable[[], T],
        transient: Callable[[BaseException], Transient | None],
        *,
        progressed: Callable[[], bool] = lambda: False,
        check: Callable[[], None] = lambda: None,
    ) -> T:
        """`call()`, retried while `transient(error)` says so. Raises the first other error as it is, or
        `GaveUp` once the retries are spent. An attempt after which `progressed()` is true (bytes arrived) starts
        the count afresh: a download that keeps advancing is never given up. `check()` runs while waiting, so a
        stop request (Ctrl-C in another thread) ends the wait at once by raising."""
        failures = 0
        while True:
            try:
                return call()
            except Exception as exc:
                verdict = transient(exc)
                if verdict is None:
                    raise
                failures = 1 if progressed() else failures + 1
                if failures > self.retries:
                    raise GaveUp(exc, failures) from exc
                wait = self.backoff * 2 ** (failures - 1)
                if verdict.retry_after is not None:
                    wait = verdict.retry_after
                _sleep(min(wait, MAX_WAIT), check)


def _sleep(seconds: float, check: Callable[[], None]) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        check()
        time.sleep(min(left, 0.1))
    check()


def retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (a number or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def requests_transient(exc: BaseException) -> Transient | None:
    """Which failures of the `requests` library (and clients built on it) are worth retrying."""
    import requests

    if isinstance(exc, requests.HTTPError):
        response = exc.response
        status = response.status_code if response is not None else None
        if status == 429 or (status is not None and status >= 500):
            return Transient(retry_after(response.headers.get("Retry-After")))
        return None
    if isinstance(exc, (requests.exceptions.SSLError, requests.exceptions.InvalidURL)):
        return None  # a certificate or a URL does not mend itself
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)):
        return Transient()
    return None


def requests_failure_name(exc: BaseException) -> str:
    """The failure's name for a message: the exception's, except a read timeout that `requests` reports as a
    ConnectionError (a body that stalled) is a ReadTimeout."""
    from urllib3.exceptions import ReadTimeoutError

    cause = exc.args[0] if exc.args else None
    return "ReadTimeout" if isinstance(cause, ReadTimeoutError) else type(exc).__name__


def redact_url(url: str) -> str:
    """`url` with its credentials hidden: the `user:password@` part and the values of token-like query
    parameters become `***`. Use it for every URL that reaches a message or a log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unreadable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() in SECRET_PARAMS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """`text` (another library's error message) with every URL in it passed through `redact_url`."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def url_host(url: str) -> str:
    """The `host[:port]` a URL points to, without credentials: what an error names."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "<unreadable URL>"
    return f"{host}:{port}" if port else host or redact_url(url)
