"""The `ModelManager` strategy: what every registry implements.

A registry resolves a requested model + revision into a pinned record (an immutable commit and every
file with its sha256 and size), describes a model, and transfers a pinned file's bytes. The store
(`gpuxbuild.store.objects`) owns hashing, locking and atomic placement, so a registry only moves bytes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, ClassVar, TypeGuard

from gpuxbuild.errors import RegistryError, quote
from gpuxbuild.hashing import is_hex_digest
from gpuxbuild.store.files import FileEntry


@dataclass
class ModelInfo:
    """What a registry knows about a model at a commit."""

    pipeline_tag: str | None = None
    library: str | None = None
    architectures: list[str] = field(default_factory=list)
    model_type: str | None = None
    license: str | None = None
    card_data: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def license_of(card: dict, config: dict, tags=()) -> str | None:
    """A model's license: the card's `license:` (a list joined with " OR "), else a `license:N` tag, else
    config.json's `license`; None when none says."""
    found = card.get("license")
    if isinstance(found, list):
        found = " OR ".join(str(x) for x in found) or None
    if not found:
        found = next((t.split(":", 1)[1] for t in tags if t.startswith("license:")), None)
    if not found and isinstance(config.get("license"), str):
        found = config["license"]
    return str(found) if found else None


@dataclass(frozen=True)
class FileOrigin:
    """A file's own ids in the registry's store (S3: its ETag and version id)."""

    etag: str | None = None
    version_id: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in (("etag", self.etag), ("version_id", self.version_id)) if v}


@dataclass(frozen=True)
class Origin:
    """Where a pin came from, beyond its commit: gpux.lock's `origin`, written only when it holds something.
    Entry-level ids of registries that version models themselves (MLflow: the registered version and the run
    that logged it) and per-file ids of stores that have them (S3: ETag and version id). The sha256 of each
    file is what is trusted; these are for the record, to find the model again in its registry."""

    version: str | None = None
    run_id: str | None = None
    files: dict[str, FileOrigin] = field(default_factory=dict)  # path -> its ids

    def __bool__(self) -> bool:
        return bool(self.as_dict())

    def kept(self, paths: set[str]) -> Origin:
        """Only the files of `paths` (those the lock keeps)."""
        return Origin(self.version, self.run_id, {p: o for p, o in self.files.items() if p in paths})

    def as_dict(self) -> dict:
        d: dict = {k: v for k, v in (("version", self.version), ("run_id", self.run_id)) if v}
        files = {p: o.as_dict() for p, o in sorted(self.files.items()) if o.as_dict()}
        if files:
            d["files"] = files
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Origin:
        files = {p: FileOrigin(o.get("etag"), o.get("version_id")) for p, o in (d.get("files") or {}).items()}
        return cls(d.get("version"), d.get("run_id"), files)


@dataclass
class PinnedModel:
    """A model resolved to an immutable commit, with its files at that commit.

    `paths` lists every path of the commit; `files` holds at least those the caller said it needs
    (see `ModelManager.resolve_streaming`), each with its sha256. Empty `paths` means `files` is all.
    """

    registry: str
    repo: str
    revision: str | None
    commit: str
    files: list[FileEntry]
    info: ModelInfo
    paths: list[str] = field(default_factory=list)
    # What the registry pinned besides the commit and the sha256s, for the lock to show (never trusted).
    origin: Origin = field(default_factory=Origin)

    def all_paths(self) -> list[str]:
        """Every path of the commit, sorted."""
        return sorted(self.paths or (f.path for f in self.files))


def check_repo_path(repo: str, path: str) -> None:
    """Refuse a file name that could land outside the model's folder (absolute, `..`, backslashes, empty parts)."""
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or any(p in ("", ".", "..") for p in parts)
        or (len(path) > 1 and path[1] == ":")
    ):
        raise RegistryError(
            f"{repo}: refusing unsafe file name {quote(path)} from the registry (it could land outside the model folder)",
            "report the repo to its owner; exclude the file with `exclude:` if you trust the rest",
        )


def offline_miss(label: str) -> RegistryError:
    """The error of a download that offline mode forbids; `label` names the file (`REPO: PATH`)."""
    return RegistryError(f"{label} is not in the store and offline mode is on", "run once online")


Progress = Callable[[int], None]
# (commit, every path of the commit, the files whose sha256 is already known) -> the paths whose sha256
# the caller needs (None: all of them)
Listed = Callable[[str, list[str], list[FileEntry]], "Collection[str] | None"]


def is_git_commit(rev: str | None) -> TypeGuard[str]:
    """True for a full git commit id: 40 lowercase hex characters."""
    return is_hex_digest(rev, 40)


class ModelManager(ABC):
    """A model registry. Subclasses set `name` and implement the abstract methods.

    `offline=True` means: make no network request; raise RegistryError naming what is missing.
    A plugin's class attributes below describe its sources to the registry table (built-in registries
    give the same in their `register(...)` line).
    """

    name: ClassVar[str]
    source_prefixes: ClassVar[tuple[str, ...]] = ()  # prefixes besides the entry point's name
    ref_pattern: ClassVar[str] = r"[A-Za-z0-9][A-Za-z0-9._/-]*"  # what a reference looks like (checked early)
    ref_help: ClassVar[str] = "a model name"
    commit_length: ClassVar[int] = 40  # hex digits of a pin: 40 (a git commit) or 64 (a sha256)
    revisions: ClassVar[bool] = True  # references take a branch or tag (`revision:`, default main)

    def __init__(self, *, project: Path, offline: bool = False, store=None):
        self.project = project
        self.offline = offline
        self.store = store  # a gpuxbuild.store.objects.Store, for registries that keep bytes while resolving

    @abstractmethod
    def resolve(self, repo: str, revision: str | None, *, pin: str | None = None) -> PinnedModel:
        """Resolve `revision` (branch, tag or commit) of `repo` to a commit and list its files with hashes.

        With `pin`, list the files at that already-pinned commit instead of resolving `revision` again.
        """

    def resolve_streaming(
        self, repo: str, revision: str | None, on_listed: Listed, *, pin: str | None = None
    ) -> PinnedModel:
        """`resolve()`, first telling `on_listed` the commit, its paths and the files whose sha256 is known
        before the others are hashed, so that a caller can start fetching those meanwhile. `on_listed`
        returns the paths the caller needs; a registry that hashes files by downloading them may then
        leave the others out of `files` (`paths` still lists them).

        Registries that learn every hash at once need not override it: `on_listed` is then not called.
        """
        return self.resolve(repo, revision, pin=pin)

    @abstractmethod
    def download(
        self,
        repo: str,
        commit: str,
        file: FileEntry,
        dest: BinaryIO,
        *,
        resume_from: int = 0,
        progress: Progress | None = None,
    ) -> None:
        """Write the bytes of `file` at `commit` into `dest` (opened for append), starting at `resume_from`."""

    def fetch(
        self, repo: str, commit: str, files: list[FileEntry], *, label: str | None = None, jobs: int = 4, reporter=None
    ):
        """Fetch a pinned file set into `self.store`: parallel, hashed while streaming, atomic (see gpuxbuild.store.fetch)."""
        from gpuxbuild.store.fetch import fetch
        from gpuxbuild.store.objects import Store

        if self.store is None:
            self.store = Store()
        return fetch(
            self, repo, commit, files, self.store, label=label or self.display(repo), jobs=jobs, reporter=reporter
        )

    def with_files(self, files: tuple[str, ...]) -> ModelManager:
        """This registry for a folder whose file paths the manifest lists (`files:`); only registries whose
        folders cannot be listed (https://) take them."""
        raise RegistryError(f"the {self.name} registry lists its folders itself", "remove `files:`")

    def describe(self, repo: str, revision: str | None) -> ModelInfo:
        """Task/pipeline tag, architecture, license and card data of a model."""
        return self.resolve_streaming(repo, revision, lambda *_: ()).info

    def display(self, repo: str) -> str:
        """How the model is shown to users, e.g. `hf:org/name`."""
        return f"{self.name}:{repo}"
