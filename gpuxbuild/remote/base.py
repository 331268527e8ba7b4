"""What every remote backend offers: named objects that are read whole or streamed, listed, and created once.

Keys are relative paths (`blobs/sha256/<hex>`, `artifacts/<hex>.json`). `create` is the conditional create that
makes publishing atomic: it never replaces an object, so two publishers cannot clobber each other. An index can
carry attachments: small files kept beside artifact.json but not listed in it (its provenance), stored by
artifact digest under `attestations/<hex>/<name>` (an OCI registry keeps them in the artifact's manifest).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

from gpuxbuild.errors import GpuxError
from gpuxbuild.hashing import sha256_bytes
from gpuxbuild.network import redact_url

ATTESTATIONS = "attestations/"


def attachment_key(index: bytes, name: str) -> str:
    """Where attachment `name` of the artifact whose artifact.json is `index` is kept: by artifact digest, so
    that two publishers of different artifacts for one build key never mix their attachments."""
    return f"{ATTESTATIONS}{sha256_bytes(index)}/{name}"


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

    def create_index(self, key: str, index: bytes, attached: Sequence[tuple[str, bytes]]) -> bool:
        """Create the index `key` (artifact.json's bytes) unless it exists (then False), after its attachments
        ((name, bytes), in order), so that an index is never visible without them. An attachment already held
        with other bytes (another gpuxbuild's provenance of the same artifact) is kept, and the later ones are
        not written: they would not match it."""
        for name, data in attached:
            if not self.create(attachment_key(index, name), data) and self.get(attachment_key(index, name)) != data:
                break
        return self.create(key, index)

    def get_attached(self, key: str, index: bytes, names: tuple[str, ...]) -> dict[str, bytes]:
        """The attachments `names` the remote holds for the index `key` whose bytes are `index`, by name."""
        found = {name: self.get(attachment_key(index, name)) for name in names}
        return {name: data for name, data in found.items() if data is not None}
