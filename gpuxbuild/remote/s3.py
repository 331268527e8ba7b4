"""`s3://bucket/prefix`: AWS S3 and every S3-compatible store (MinIO, SeaweedFS, Ceph RGW, R2, GCS's S3 API).

The client is `obstore` (object_store, the Rust crate behind Apache Arrow's and Polars' cloud I/O): its
`put(mode="create")` sends `If-None-Match: *`, the conditional create that makes publishing atomic (boto3 can,
but needs hand-written multipart; the minio SDK drops the header), large files go up in parallel parts, and a
multipart upload that dies is never visible. Credentials and the endpoint come from the standard AWS_* variables
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, AWS_REGION), else the shared
credentials file and AWS_PROFILE; errors are cut to one line with URLs redacted, so no secret reaches a message.
Retries follow GPUX_HTTP_RETRIES and GPUX_HTTP_TIMEOUT. The client's set-up is shared with the s3:// model
source (gpuxbuild/s3client.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gpuxbuild.remote.base import Backend, Progress, RemoteError, RemoteSpec, Sink, part_size
from gpuxbuild.s3client import CREDENTIALS_HINT, s3_failure, s3_store

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PARALLEL_PARTS = 8  # parts of one file in flight at once


class S3Backend(Backend):
    def __init__(self, spec: RemoteSpec):
        super().__init__(spec)
        try:
            import obstore
            import obstore.store  # s3_store needs it: its absence is the missing extra
        except ImportError as exc:
            from gpuxbuild.errors import MissingExtraError

            raise MissingExtraError("remote", f"the s3:// remote {spec.display}") from exc
        self._obstore = obstore
        parts = urlsplit(spec.url)
        self.prefix = parts.path.strip("/")
        self.store = s3_store(parts.netloc)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, key: str, exc: Exception) -> RemoteError:
        """One line naming the remote, the object and the cause (a status, the store's error code), no secrets."""
        cause, denied = s3_failure(exc)
        hint = (
            CREDENTIALS_HINT if denied else "check the URL, AWS_ENDPOINT_URL and the network, or pass --remote-optional"
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
