"""A model's file by path, sha256 and size: how registries list files, gpux.lock pins them, the store
fetches them and artifact.json lists an artifact's."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class FileEntry:
    """A file of a pinned model: repo-relative POSIX path, sha256 (hex) and size in bytes."""

    path: str
    sha256: str
    size: int

    def as_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}
