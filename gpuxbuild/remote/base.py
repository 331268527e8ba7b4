"""What every remote backend offers: named objects that are read whole or streamed, listed, and created once.

Keys are relative paths (`blobs/sha256/<hex>`, `artifacts/<hex>.json`). `create` is the conditional create that
makes publishing atomic: it never replaces an object, so two publishers cannot clobber each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

from gpuxbuild.errors import GpuxError
from gpuxbuild.network import redact_url


class Sink(Protocol):
    """Where a download writes: a file, or the store's hashing writer."""

    def write(self, data: bytes, /) -> int: ...


Progress = Callable[[int], None]  # told the number of bytes of each part that went up
PART_SIZE = 8 << 20  # the default size of an upload's parts


def part_size() -> int:
    """Bytes per part of a large upload (S3 multipart, OCI chunked): GPUX_REMOTE_PART_SIZE, else 8 MiB. A file no
    larger goes up in one request. AWS S3 takes parts of 5 MiB or more."""
    from gpuxbuild.network import _env_number

    return int(_env_number("GPUX_REMOTE_PART_SIZE", PART_SIZE, integer=True, minimum=1))


class RemoteError(GpuxError):
    """A remote could not be read or written (unreachable, refused credentials, a bad URL)."""


@dataclass(frozen=True)
class RemoteSpec:
    """One configured remote: its URL (as given, credentials and all) and whether its failures are only warned."""

    url: str
    optional: bool = False

    @property
    def display(self) -> str:
        """The URL as messages show it: credentials hidden."""
        return redact_url(self.url)


class Backend(ABC):
    def __init__(self, spec: RemoteSpec):
        self.spec = spec

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The object's bytes, None when there is no such object."""

    @abstractmethod
    def download(self, key: str, f: Sink, start: int = 0) -> None:
        """Write the object's bytes from offset `start` to `f` (a missing object raises RemoteError)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def create(self, key: str, source: bytes | Path) -> bool:
        """Create the object from bytes or a file unless it exists (then False); never visible half-written."""

    def upload(self, key: str, source: Path, progress: Progress | None = None) -> None:
        """Write a content-addressed object (a blob) from a file, in parts where the store takes them; `progress` is
        told each part's bytes. Writing the same bytes again is harmless, so no create-once is needed; an upload
        cut off is never visible."""
        self.create(key, source)
        if progress:
            progress(source.stat().st_size)

    @abstractmethod
    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under `prefix`."""
