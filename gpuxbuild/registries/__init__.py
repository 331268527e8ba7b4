"""The registry table: which `ModelManager` serves which source prefix.

Adding a registry is one module in this package and one `register(...)` line below.
"""

from __future__ import annotations

import importlib
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from gpuxbuild.errors import ManifestError, quote
from gpuxbuild.registries.base import ModelInfo, ModelManager, PinnedModel
from gpuxbuild.store.files import FileEntry

__all__ = ["FileEntry", "ModelInfo", "ModelManager", "PinnedModel", "get_manager", "known_registries", "parse_source"]


@dataclass(frozen=True)
class _Entry:
    name: str
    prefixes: tuple[str, ...]
    target: str  # "module:Class", imported only when the registry is used
    ref_pattern: str  # what a reference in this registry looks like, for early validation
    ref_help: str


_TABLE: dict[str, _Entry] = {}


def register(name: str, prefixes: tuple[str, ...], target: str, ref_pattern: str = r".+", ref_help: str = "") -> None:
    """Make a registry known under `name` and its source prefixes (`hf` in `hf:org/name`)."""
    _TABLE[name] = _Entry(name, (name, *prefixes), target, ref_pattern, ref_help)


register(
    "huggingface",
    ("hf",),
    "gpuxbuild.registries.huggingface:HuggingFaceManager",
    # The Hub's rules (huggingface_hub.utils.validate_repo_id), so that no id reaches its client to be refused there:
    # ASCII letters, digits, '-', '_', '.'; parts of at most 96 characters; not ending in .git ("--", ".." below).
    r"(?!.*\.git$)(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?/)?[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?",
    "a Hub repo id like org/name (letters, digits, '-', '_', '.'; parts of at most 96 characters)",
)
register("local", ("path",), "gpuxbuild.registries.local:LocalManager", r".+", "a folder path relative to the project")
register(
    "mlflow",
    (),
    "gpuxbuild.registries.mlflow:MlflowManager",
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,255}(?:/[1-9][0-9]{0,9}|@[A-Za-z_][A-Za-z0-9_-]{0,255})",
    "an MLflow registered model as NAME/VERSION or NAME@ALIAS",
)
# Registries whose commit is a sha256 content digest (64 hex digits) rather than a git commit.
DIGEST_PINNED = frozenset({"local", "mlflow"})


def known_registries() -> list[str]:
    """Names of every registered registry."""
    return sorted(_TABLE)


def _lookup(name_or_prefix: str) -> _Entry | None:
    for entry in _TABLE.values():
        if name_or_prefix in entry.prefixes:
            return entry
    return None


def check_registry(name: str) -> None:
    """Raise ManifestError unless `name` is a registry's name or prefix."""
    if _lookup(name) is None:
        raise _unknown(name)


def _unknown(name: str) -> ManifestError:
    prefixes = ", ".join(f"{e.name} ({'/'.join(p + ':' for p in e.prefixes)})" for e in _TABLE.values())
    return ManifestError(f"unknown registry {quote(name)}", f"known registries: {prefixes}")


def parse_source(source: str, registry: str | None = None, *, project: Path | None = None) -> tuple[str, str]:
    """Split a source string into (registry name, reference).

    `hf:org/name` -> ("huggingface", "org/name"); `path:./x`, `./x`, `../x` -> ("local", "x" normalized);
    a bare `org/name` goes to `registry` (default huggingface).
    """
    if source.startswith(("./", "../")) or source in (".", ".."):
        entry, ref = _TABLE["local"], source
    else:
        m = re.match(r"^([a-z][a-z0-9_-]*):(.*)$", source)
        name, ref = (m.group(1), m.group(2)) if m else (registry or "huggingface", source)
        found = _lookup(name)
        if found is None:
            raise _unknown(name)
        entry = found
    if registry is not None and _lookup(registry) is not entry:
        if _lookup(registry) is None:
            raise _unknown(registry)
        raise ManifestError(
            f"source {quote(source)} belongs to registry {entry.name!r}, not {quote(registry)}", "drop one of the two"
        )
    if entry.name == "local":
        ref = _local_ref(ref, project)
    elif not re.fullmatch(entry.ref_pattern, ref) or ".." in ref or "--" in ref:
        raise ManifestError(
            f"bad source {quote(source)}: expected {entry.ref_help}",
            "e.g. mlflow:NAME/3 or mlflow:NAME@champion"
            if entry.name == "mlflow"
            else f"e.g. {entry.prefixes[-1]}:org/name",
        )
    return entry.name, ref


def local_ref_problem(ref: str, project: Path | None) -> str | None:
    """Why the local registry's folder `ref` is not usable in a lock: absolute, or (given the `project`, as
    for the manifest and the lock) outside the project by `..` or a symlink. None when it is fine."""
    if not ref:
        return "the local path is empty"
    if Path(ref).is_absolute():
        return f"absolute path {quote(ref)}: a lock must not depend on where the project lives"
    if project is not None:
        if posixpath.normpath(ref).split("/")[0] == "..":
            return f"{quote(ref)} points outside the project"
        root = project.resolve()
        if not (root / ref).resolve().is_relative_to(root):
            return f"{quote(ref)} links outside the project"
    return None


def _local_ref(ref: str, project: Path | None) -> str:
    problem = local_ref_problem(ref, project)
    if problem:
        raise ManifestError(problem, "keep local models in a folder inside the project, e.g. path:./models/x")
    return Path(ref).as_posix()


def get_manager(name: str, *, project: Path, offline: bool = False, store=None) -> ModelManager:
    """An instance of the registry `name` (a name or a prefix)."""
    entry = _lookup(name)
    if entry is None:
        raise _unknown(name)
    module, cls = entry.target.split(":")
    return getattr(importlib.import_module(module), cls)(project=project, offline=offline, store=store)
