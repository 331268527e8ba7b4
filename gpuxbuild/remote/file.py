"""`file:///path`: a remote on a shared folder (NFS, SMB, a mounted volume).

Objects are files under the folder; each is written to `.tmp/` first, then hard-linked to its name, which fails
if the name exists: the same create-once guarantee the object stores give with If-None-Match.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from gpuxbuild.fsutil import fsync_dir
from gpuxbuild.remote.base import Backend, RemoteError, RemoteSpec, Sink

if TYPE_CHECKING:
    from collections.abc import Iterator

CHUNK = 1 << 20


class FileBackend(Backend):
    def __init__(self, spec: RemoteSpec):
        super().__init__(spec)
        parts = urlsplit(spec.url)
        self.root = Path(unquote(parts.path))
        if parts.netloc not in ("", "localhost"):
            raise RemoteError(
                f"remote {spec.display}: file:// URLs name a local path", "write file:///mount/path (three slashes)"
            )
        if not self.root.is_dir():
            raise RemoteError(
                f"remote {spec.display}: no such folder {self.root}", "mount the share, or create the folder"
            )

    def _path(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RemoteError(f"remote {self.spec.display}: reading {key}: {exc.strerror}") from exc

    def download(self, key: str, f: Sink, start: int = 0) -> None:
        try:
            with open(self._path(key), "rb") as src:
                src.seek(start)
                shutil.copyfileobj(src, f, CHUNK)
        except FileNotFoundError as exc:
            raise RemoteError(f"remote {self.spec.display}: no object {key}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def create(self, key: str, source: bytes | Path) -> bool:
        dest = self._path(key)
        if dest.exists():
            return False
        tmp = self.root / ".tmp" / f"{uuid.uuid4().hex}"
        try:
            tmp.parent.mkdir(exist_ok=True)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                if isinstance(source, bytes):
                    out.write(source)
                else:
                    with open(source, "rb") as src:
                        shutil.copyfileobj(src, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, dest)
            except FileExistsError:
                return False
            fsync_dir(dest.parent)
            return True
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise RemoteError(f"remote {self.spec.display}: writing {key}: {exc.strerror}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        base = self._path(prefix)
        if not base.is_dir():
            return
        for p in sorted(base.rglob("*")):
            if p.is_file():
                yield p.relative_to(self.root).as_posix(), p.stat().st_size
