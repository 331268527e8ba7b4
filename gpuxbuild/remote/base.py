"""What every remote backend offers: named objects that are read whole or streamed, listed, and created once.

Keys are relative paths (`blobs/sha256/<hex>`, `artifacts/<hex>.json`). `create` is the conditional create that
makes publishing atomic: it never replaces an object, so two publishers cannot clobber each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gpuxbuild.remote import RemoteSpec


class Backend(ABC):
    def __init__(self, spec: RemoteSpec):
        self.spec = spec

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The object's bytes, None when there is no such object."""

    @abstractmethod
    def download(self, key: str, f: BinaryIO, start: int = 0) -> None:
        """Write the object's bytes from offset `start` to `f` (a missing object raises RemoteError)."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def create(self, key: str, source: bytes | Path) -> bool:
        """Create the object from bytes or a file unless it exists (then False); never visible half-written."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under `prefix`."""
