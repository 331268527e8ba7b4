"""`s3://bucket/prefix`: AWS S3 and every S3-compatible store (MinIO, SeaweedFS, Ceph RGW, R2, GCS's S3 API).

The client is `obstore` (object_store, the Rust crate behind Apache Arrow's and Polars' cloud I/O): its
`put(mode="create")` sends `If-None-Match: *`, the conditional create that makes publishing atomic (boto3 can,
but needs hand-written multipart; the minio SDK drops the header), large files go up in parallel parts, and a
multipart upload that dies is never visible. Credentials and the endpoint come from the standard AWS_* variables
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_REGION), else the shared
credentials file and AWS_PROFILE; errors are cut to one
line with URLs redacted, so no secret reaches a message. Retries follow GPUX_HTTP_RETRIES and GPUX_HTTP_TIMEOUT.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gpuxbuild.network import DEFAULT_TIMEOUT, MAX_WAIT, RetryPolicy, _env_number, redact_text
from gpuxbuild.remote.base import Backend, Progress, RemoteError, RemoteSpec, Sink, part_size

if TYPE_CHECKING:
    from collections.abc import Iterator

PARALLEL_PARTS = 8  # parts of one file in flight at once
_STATUS = re.compile(r"(\d{3} [A-Z][A-Za-z ]+?)(?::|$)")
_CODE = re.compile(r"<Code>([^<]+)</Code>")


def profile_credentials() -> dict[str, str]:
    """Keys from the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else ~/.aws/credentials), profile
    `AWS_PROFILE` (else default), when the AWS_* variables give none: where the AWS CLI and boto3 look too."""
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return {}
    import configparser

    path = Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials")
    ini = configparser.ConfigParser()
    try:
        ini.read(path)
    except (OSError, configparser.Error):
        return {}
    section = os.environ.get("AWS_PROFILE") or "default"
    if not ini.has_section(section):
        return {}
    keys = {
        "aws_access_key_id": "access_key_id",
        "aws_secret_access_key": "secret_access_key",
        "aws_session_token": "token",
    }
    return {ours: ini.get(section, theirs) for theirs, ours in keys.items() if ini.has_option(section, theirs)}


class S3Backend(Backend):
    def __init__(self, spec: RemoteSpec):
        super().__init__(spec)
        try:
            import obstore
            from obstore.store import S3Store
        except ImportError as exc:
            from gpuxbuild.errors import MissingExtraError

            raise MissingExtraError("remote", f"the s3:// remote {spec.display}") from exc
        self._obstore = obstore
        parts = urlsplit(spec.url)
        self.prefix = parts.path.strip("/")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        policy = RetryPolicy.from_env()
        timeout = _env_number("GPUX_HTTP_TIMEOUT", DEFAULT_TIMEOUT, minimum=0.001)
        options: Any = {"timeout": f"{timeout}s", "connect_timeout": f"{timeout}s"}  # obstore's ClientConfig
        if endpoint and endpoint.startswith("http://"):
            options["allow_http"] = True
        config: Any = {  # obstore's S3Config; the rest (AWS_*) it reads from the environment itself
            "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            **profile_credentials(),
            **({"endpoint": endpoint} if endpoint else {}),
        }
        self.store = S3Store(
            parts.netloc,
            config=config,
            client_options=options,
            retry_config={
                "max_retries": policy.retries,
                "backoff": {
                    "init_backoff": timedelta(seconds=policy.backoff),
                    "max_backoff": timedelta(seconds=MAX_WAIT),
                    "base": 2.0,
                },
                "retry_timeout": timedelta(seconds=max(timeout * (policy.retries + 1), 1.0)),
            },
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, key: str, exc: Exception) -> RemoteError:
        """One line naming the remote, the object and the cause (a status, the store's error code), no secrets."""
        text = str(exc)
        status, code = _STATUS.search(text), _CODE.search(text)
        if status or code:
            cause = " ".join(x for x in (status.group(1).strip() if status else "", code.group(1) if code else "") if x)
        else:
            cause = redact_text(text.splitlines()[0])[:200] if text else type(exc).__name__
        hint = (
            "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the profile) and the bucket's permissions"
            if "403" in cause or "401" in cause or "Denied" in type(exc).__name__ or "Unauth" in type(exc).__name__
            else "check the URL, AWS_ENDPOINT_URL and the network, or pass --remote-optional"
        )
        return RemoteError(f"remote {self.spec.display}: {key}: {cause}", hint)

    def get(self, key: str) -> bytes | None:
        try:
            return bytes(self._obstore.get(self.store, self._key(key)).bytes())
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._error(key, exc) from exc

    def download(self, key: str, f: Sink, start: int = 0) -> None:
        opts = {"range": {"offset": start}} if start else {}
        try:
            stream = iter(self._obstore.get(self.store, self._key(key), options=opts))  # type: ignore[arg-type]
        except FileNotFoundError as exc:
            raise RemoteError(f"remote {self.spec.display}: no object {key}") from exc
        except Exception as exc:
            raise self._error(key, exc) from exc
        while True:
            try:  # only the store's errors are the remote's: the sink's own (a full disk) pass as they are
                chunk = next(stream, None)
            except Exception as exc:
                raise self._error(key, exc) from exc
            if chunk is None:
                return
            f.write(bytes(chunk))

    def exists(self, key: str) -> bool:
        try:
            self._obstore.head(self.store, self._key(key))
            return True
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise self._error(key, exc) from exc

    def create(self, key: str, source: bytes | Path) -> bool:
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            self._obstore.put(self.store, self._key(key), source, mode="create")  # one request: If-None-Match
            return True
        except (AlreadyExistsError, PreconditionError):
            return False
        except Exception as exc:
            raise self._error(key, exc) from exc

    def upload(self, key: str, source: Path, progress: Progress | None = None) -> None:
        """A blob: a large one as a multipart upload, PARALLEL_PARTS parts at a time, which S3 makes visible only
        when complete (obstore cannot send If-None-Match with multipart; a blob rewritten is the same bytes)."""
        size, part = source.stat().st_size, part_size()
        try:
            if size <= part:
                self._obstore.put(self.store, self._key(key), source)
            else:
                self._obstore.put(
                    self.store,
                    self._key(key),
                    _parts(source, part, progress),
                    use_multipart=True,
                    chunk_size=part,
                    max_concurrency=PARALLEL_PARTS,
                )
                return
        except Exception as exc:
            raise self._error(key, exc) from exc
        if progress:
            progress(size)

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        try:
            for batch in self._obstore.list(self.store, prefix=self._key(prefix)):
                for meta in batch:
                    path = meta["path"]
                    yield (path[len(self.prefix) + 1 :] if self.prefix else path), meta["size"]
        except Exception as exc:
            raise self._error(prefix, exc) from exc


def _parts(source: Path, part: int, progress: Progress | None) -> Iterator[bytes]:
    """The file's bytes, `part` at a time, each counted as it is handed to the uploader."""
    with open(source, "rb") as f:
        while chunk := f.read(part):
            yield chunk
            if progress:
                progress(len(chunk))
