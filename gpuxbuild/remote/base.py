"""What every remote backend offers: named objects that are read whole or streamed, listed, and created once.

Keys are relative paths (`blobs/sha256/<hex>`, `artifacts/<hex>.json`). `create` is the conditional create that
makes publishing atomic: it never replaces an object, so two publishers cannot clobber each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
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

    @abstractmethod
    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under `prefix`."""
