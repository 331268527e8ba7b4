"""The registry table: which `ModelManager` serves which source prefix.

Built-in registries are one `register(...)` line below each. Third-party packages add theirs through the
entry point group `gpuxbuild.registries` (docs/registries.md); those are looked up only when a source names
a prefix no built-in registry has, so commands on built-in sources never scan the installed packages.
"""

from __future__ import annotations

import importlib
import posixpath
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gpuxbuild.errors import GpuxError, ManifestError, RegistryError, quote
from gpuxbuild.network import redact_url
from gpuxbuild.registries.base import ModelInfo, ModelManager, PinnedModel
from gpuxbuild.store.files import FileEntry

__all__ = [
    "FileEntry",
    "ModelInfo",
    "ModelManager",
    "PinnedModel",
    "get_manager",
    "known_registries",
    "parse_source",
    "registry_entries",
]

ENTRY_POINT_GROUP = "gpuxbuild.registries"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class RegistryEntry:
    """One registry: its name, the source prefixes that select it, and what its references and pins look like."""

    name: str
    prefixes: tuple[str, ...]
    target: str  # "module:Class", imported only when the registry is used
    ref_pattern: str  # what a reference in this registry looks like, for early validation
    ref_help: str
    commit_length: int = 40  # hex digits of its pins: 40 (a git commit) or 64 (a sha256)
    url: bool = False  # sources are URLs (`PREFIX://...`), kept whole as the reference
    revisions: bool = True  # references take a branch or tag (`revision:`, default main)
    origin: str = "built-in"  # or the plugin's distribution: "NAME VERSION"
    example: str = ""  # a source for error hints (default: PREFIX:org/name)

    @property
    def example_source(self) -> str:
        return self.example or f"{self.prefixes[-1]}:org/name"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "prefixes": [p + (":" if not self.url else "://") for p in self.prefixes],
            "origin": self.origin,
            "reference": self.ref_help,
        }


_TABLE: dict[str, RegistryEntry] = {}
_plugins_loaded = False
_plugin_problems: list[str] = []  # one line per installed plugin that could not be registered
_plugin_lock = threading.Lock()


def register(
    name: str,
    prefixes: tuple[str, ...],
    target: str,
    ref_pattern: str = r".+",
    ref_help: str = "",
    *,
    commit_length: int = 40,
    url: bool = False,
    revisions: bool = True,
    origin: str = "built-in",
    example: str = "",
) -> None:
    """Make a registry known under `name` and its source prefixes (`hf` in `hf:org/name`)."""
    all_prefixes = prefixes if url else (name, *prefixes)
    _TABLE[name] = RegistryEntry(
        name, all_prefixes, target, ref_pattern, ref_help, commit_length, url, revisions, origin, example
    )


register(
    "huggingface",
    ("hf",),
    "gpuxbuild.registries.huggingface:HuggingFaceManager",
    # The Hub's rules (huggingface_hub.utils.validate_repo_id), so that no id reaches its client to be refused there:
    # ASCII letters, digits, '-', '_', '.'; parts of at most 96 characters; not ending in .git ("--", ".." below).
    r"(?!.*\.git$)(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?/)?[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?",
    "a Hub repo id like org/name (letters, digits, '-', '_', '.'; parts of at most 96 characters)",
)
register(
    "local",
    ("path",),
    "gpuxbuild.registries.local:LocalManager",
    r".+",
    "a folder path relative to the project",
    commit_length=64,
    revisions=False,
)
register(
    "mlflow",
    (),
    "gpuxbuild.registries.mlflow:MlflowManager",
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,255}(?:/[1-9][0-9]{0,9}|@[A-Za-z_][A-Za-z0-9_-]{0,255})",
    "an MLflow registered model as NAME/VERSION or NAME@ALIAS",
    commit_length=64,  # a digest of the name, version, run id and logged model
    revisions=False,  # the source names its version or alias
    example="mlflow:NAME/3 or mlflow:NAME@champion",
)


register(
    "onnx-zoo",
    (),
    "gpuxbuild.registries.onnx_zoo:OnnxZooManager",
    r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?",  # one Hub repo name, in the zoo's organisation
    "a model name of the ONNX Model Zoo, e.g. resnet50_Opset17 (a repo of huggingface.co/onnxmodelzoo)",
)
register(
    "s3",
    ("s3",),
    "gpuxbuild.registries.s3:S3Manager",
    r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?",
    "s3://bucket/prefix/ (a folder of model files)",
    commit_length=64,
    url=True,
    revisions=False,
)
register(
    "https",
    ("https", "http"),
    "gpuxbuild.registries.url:UrlManager",
    r"https?://[^\s/?#]+/[^\s?#]*",
    "https://host/path/file, or https://host/folder/ with `files:` (no query or fragment)",
    commit_length=64,
    url=True,
    revisions=False,
)


register(
    "oci",
    ("oci",),
    "gpuxbuild.registries.oci:OciManager",
    r"oci://[A-Za-z0-9.-]+(:[0-9]+)?/[a-z0-9]+([._/-][a-z0-9]+)*(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|@sha256:[0-9a-f]{64})?",
    "oci://registry/repository:tag or oci://registry/repository@sha256:... (an OCI artifact of model files)",
    commit_length=64,
    url=True,
    revisions=False,
)


def _builtin_names() -> frozenset[str]:
    return frozenset(n for n, e in _TABLE.items() if e.origin == "built-in")


def known_registries() -> list[str]:
    """Names of every registered registry."""
    return sorted(_TABLE)


def _lookup(name_or_prefix: str) -> RegistryEntry | None:
    for entry in _TABLE.values():
        if name_or_prefix in entry.prefixes:
            return entry
    return None


def _find(name_or_prefix: str) -> RegistryEntry:
    """The registry of a name or prefix; installed plugins are loaded only for one no built-in registry has."""
    found = _lookup(name_or_prefix)
    if found is None:
        load_plugins()
        found = _lookup(name_or_prefix)
    if found is None:
        raise _unknown(name_or_prefix)
    return found


def load_plugins() -> list[str]:
    """Register the registries of the installed plugins (entry points `gpuxbuild.registries`, each
    `NAME = "module:Class"`), once per process; returns one line per plugin that could not be loaded."""
    global _plugins_loaded
    with _plugin_lock:
        if _plugins_loaded:
            return list(_plugin_problems)
        from importlib.metadata import entry_points

        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "unknown package"
            problem = _register_plugin(ep.name, ep.value, dist)
            if problem:
                _plugin_problems.append(f"plugin {ep.name!r} ({dist}): {problem}")
        _plugins_loaded = True
        return list(_plugin_problems)


def _register_plugin(name: str, target: str, dist: str) -> str | None:
    """Register the plugin `name` = `target` ("module:Class"); why it cannot be, or None."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        return "its entry point name is not a registry name (lowercase letters, digits, '-', '_')"
    if name in _builtin_names():
        return f"{name!r} is a built-in registry; a plugin cannot replace it"
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except Exception as exc:  # any failure of third-party code is reported, never raised through
        return f"cannot load {target} ({type(exc).__name__}: {str(exc)[:200]})"
    if not (isinstance(cls, type) and issubclass(cls, ModelManager)):
        return f"{target} is not a ModelManager subclass"
    prefixes = tuple(p for p in getattr(cls, "source_prefixes", ()) if p != name)
    taken = [p for p in (name, *prefixes) if _lookup(p) is not None]
    if taken:
        owner = _lookup(taken[0])
        return f"{taken[0]!r} is a source prefix of registry {(owner.name if owner else '?')!r} already"
    if cls.commit_length not in (40, 64):
        return "commit_length must be 40 or 64"
    register(
        name,
        prefixes,
        target,
        cls.ref_pattern,
        cls.ref_help,
        commit_length=cls.commit_length,
        revisions=cls.revisions,
        origin=dist,
    )
    return None


def registry_entries() -> tuple[list[RegistryEntry], list[str]]:
    """Every registry, built-in ones first then plugins, by name; and the plugins that failed to load."""
    problems = load_plugins()
    entries = sorted(_TABLE.values(), key=lambda e: (e.origin != "built-in", e.name))
    return entries, problems


def check_registry(name: str) -> None:
    """Raise ManifestError unless `name` is a registry's name or prefix."""
    _find(name)


def commit_length(registry: str) -> int:
    """How many hex digits a pin of `registry` has."""
    return _find(registry).commit_length


def takes_revisions(registry: str) -> bool:
    """Whether references of `registry` take a branch or tag (`revision:`)."""
    return _find(registry).revisions


def takes_file_list(registry: str, ref: str) -> bool:
    """Whether the reference is a folder whose files the manifest lists (`files:`): an https:// folder URL."""
    return registry == "https" and ref.endswith("/")


def _unknown(name: str) -> ManifestError:
    prefixes = ", ".join(
        f"{e.name} ({'/'.join(p + (':' if not e.url else '://') for p in e.prefixes)})" for e in _TABLE.values()
    )
    return ManifestError(
        f"unknown registry {quote(name)}",
        f"known registries: {prefixes}; a plugin package adds more (`gpux registries` lists what is installed)",
    )


def parse_source(source: str, registry: str | None = None, *, project: Path | None = None) -> tuple[str, str]:
    """Split a source string into (registry name, reference).

    `hf:org/name` -> ("huggingface", "org/name"); `path:./x`, `./x`, `../x` -> ("local", "x" normalized);
    `s3://bucket/x/` -> ("s3", "s3://bucket/x") (URL sources are their own reference);
    a bare `org/name` goes to `registry` (default huggingface).
    """
    if source.startswith(("./", "../")) or source in (".", ".."):
        entry, ref = _TABLE["local"], source
    else:
        m = re.match(r"^([a-z][a-z0-9_-]*):(.*)$", source, re.DOTALL)
        name, ref = (m.group(1), m.group(2)) if m else (registry or "huggingface", source)
        entry = _find(name)
        if entry.url:
            ref = source
    if registry is not None and _find(registry) is not entry:
        raise ManifestError(
            f"source {quote(source)} belongs to registry {entry.name!r}, not {quote(registry)}", "drop one of the two"
        )
    if entry.name == "local":
        ref = _local_ref(ref, project)
    elif entry.url:
        ref = _url_ref(entry, ref)
    elif not re.fullmatch(entry.ref_pattern, ref) or ".." in ref or "--" in ref:
        raise ManifestError(f"bad source {quote(source)}: expected {entry.ref_help}", f"e.g. {entry.example_source}")
    return entry.name, ref


def _url_ref(entry: RegistryEntry, ref: str) -> str:
    """A URL source, checked: it matches the registry's pattern, has no `.`/`..` path parts, and a plain
    `http://` one points to this machine (bytes fetched in clear text from elsewhere could be anyone's)."""
    try:
        parts = urlsplit(ref)
        host = parts.hostname
    except ValueError:
        parts, host = None, None
    if (
        parts is None
        or not host
        or not re.fullmatch(entry.ref_pattern, ref)
        or any(p in (".", "..") for p in parts.path.split("/"))
    ):
        raise ManifestError(f"bad source {quote(ref)}: expected {entry.ref_help}", "check the URL")
    if "@" in parts.netloc:
        raise ManifestError(
            f"source {quote(redact_url(ref))}: credentials in a source URL would be written to gpux.lock",
            "take them out: https:// reads ~/.netrc, s3:// the AWS_* variables, oci:// the docker login",
        )
    if parts.scheme == "http" and host not in _LOOPBACK:
        raise ManifestError(
            f"source {quote(ref)}: plain http:// is accepted only on this machine (127.0.0.1, localhost, ::1)",
            "use https://, so that what `gpux lock` pins is what the server sent",
        )
    return ref


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
    entry = _find(name)
    module, cls = entry.target.split(":")
    try:
        manager_cls = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise RegistryError(
            f"registry {entry.name!r} cannot be loaded: {exc}",
            "install the package it needs (`gpux registries` lists the registries and where they come from)",
        ) from exc
    manager = manager_cls(project=project, offline=offline, store=store)
    if not isinstance(manager, ModelManager):
        raise GpuxError(f"registry {entry.name!r}: {entry.target} is not a ModelManager", "fix or remove the plugin")
    return manager
