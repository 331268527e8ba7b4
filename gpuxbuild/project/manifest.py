"""`gpux.models.yml`: the models a project declares, validated, with defaults applied.

The manifest is read with line information so that every error names the file, the field path
(`models.sentiment.revision`) and the line.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gpuxbuild.errors import ManifestError, quote
from gpuxbuild.hashing import digest
from gpuxbuild.schemas_io import describe_error, field_path, first_error, load_schema, schema_validator
from gpuxbuild.yaml_io import DuplicateKey, load_yaml

MANIFEST_NAME = "gpux.models.yml"
MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 1 << 20  # a manifest of 1,000 models is ~100 KB
MAX_MANIFEST_NODES = 100_000  # with aliases expanded; 1,000 models of 20 fields are 40,000

DEFAULT_CONVERT = {
    "from": "auto",
    "variant": "default",
    "opset": None,
    "dtype": "fp32",
    "optimize": None,
    "quantize": None,
    "validate": True,
    "atol": None,
}
DEFAULT_RUNTIME = {"gpu": {"memory": "2GB", "backend": "auto"}}

# git check-ref-format, in short: no control chars, space, ~^:?*[\, no "..", "@{", "//", no leading "-" or "/",
# no trailing "/", "." or ".lock".
_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^[-/]|/$|\.$|\.lock$|^@$|(^|/)\.")


def check_revision(rev: str) -> str | None:
    """Why `rev` is not a usable branch, tag or commit name, or None when it is."""
    if not rev:
        return "the revision is empty"
    if _BAD_REF.search(rev):
        return f"{quote(rev)} is not a valid branch, tag or commit (git ref rules: no spaces, '..', '~^:?*[\\', leading '-')"
    return None


@dataclass(frozen=True)
class ModelSpec:
    """One model as the manifest declares it, with defaults applied (the 'effective' entry)."""

    name: str
    source: str
    registry: str
    ref: str  # repo id for remote registries, a project-relative path for `local`
    revision: str | None
    task: str | None
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    allow_pickle: bool
    trust_remote_code: bool
    convert: dict = field(hash=False)
    runtime: dict = field(hash=False)
    # How the model's signature is checked: {"key": path} or {"identity": ..., "issuer": ...}; None: not checked.
    verify: dict | None = field(default=None, hash=False)
    files: tuple[str, ...] = ()  # an https:// folder's file paths, as the manifest lists them

    def as_dict(self) -> dict:
        """The entry as plain data, the form that is digested and written to the lock.

        `verify` appears only when set, so entries without it keep the digests they had before it existed."""
        d = {
            "source": self.source,
            "registry": self.registry,
            "ref": self.ref,
            "revision": self.revision,
            "task": self.task,
            "include": list(self.include),
            "exclude": list(self.exclude),
            "allow_pickle": self.allow_pickle,
            "trust_remote_code": self.trust_remote_code,
            "convert": self.convert,
            "runtime": self.runtime,
        }
        if self.verify is not None:
            d["verify"] = self.verify
        if self.files:
            d["files"] = list(self.files)
        return d

    @property
    def digest(self) -> str:
        """Digest of everything in the entry; a lock entry with the same digest is up to date."""
        return digest(self.as_dict())


def adhoc_spec(
    source: str,
    registry: str,
    ref: str,
    *,
    revision: str | None = None,
    task: str | None = None,
    allow_pickle: bool = False,
) -> ModelSpec:
    """The spec of a model used without a manifest (`gpux pull`, `gpux run org/name`): all defaults,
    named after the repo's last path segment."""
    return ModelSpec(
        name=ref.rstrip("/").rsplit("/", 1)[-1],
        source=source,
        registry=registry,
        ref=ref,
        revision=revision,
        task=task,
        include=(),
        exclude=(),
        allow_pickle=allow_pickle,
        trust_remote_code=False,
        convert=copy.deepcopy(DEFAULT_CONVERT),
        runtime=copy.deepcopy(DEFAULT_RUNTIME),
    )


@dataclass(frozen=True)
class Policy:
    """The manifest's `policy:`: what `gpux lock` refuses to pin. None: no rule."""

    allow_licenses: tuple[str, ...] | None = None


@dataclass
class Manifest:
    """A parsed, validated manifest."""

    path: Path
    models: dict[str, ModelSpec]
    policy: Policy = field(default_factory=Policy)
    remotes: tuple[str, ...] = ()  # cache.remote: the remote caches, read in order, pushed to the first
    remote_optional: bool = False  # cache.optional

    @property
    def digest(self) -> str:
        """Digest of the content that matters to the lock (effective entries, not comments or order)."""
        return manifest_digest(self.models.values())


def manifest_digest(specs) -> str:
    """Digest over effective model entries, independent of their order in the file."""
    return digest({"version": MANIFEST_VERSION, "models": {s.name: s.as_dict() for s in specs}})


def _line_of(node: yaml.Node | None, path: list) -> int | None:
    """1-based line of the YAML node at `path` (or its deepest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _error(path: Path, line: int | None, field_: str | None, reason: str, hint: str) -> ManifestError:
    where = f"{path.name}:{line}" if line else path.name
    what = f"{field_}: {reason}" if field_ else reason
    return ManifestError(f"{where}: {what}", hint)


def load_manifest(path: Path) -> Manifest:
    """Read and validate a manifest file. Raises ManifestError (exit 2) naming the file, field and line."""
    if not path.is_file():
        raise ManifestError(
            f"{path.name}: no manifest in {path.parent}",
            "run `gpux init` to create one, or pass --project DIR",
        )
    return parse_manifest(path.read_bytes(), path)


def parse_manifest(text: str | bytes, path: Path) -> Manifest:
    """Validate manifest `text` read from `path` (the path is used for messages and relative sources)."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    try:
        data, node = load_yaml(
            raw,
            path.name,
            max_bytes=MAX_MANIFEST_BYTES,
            max_nodes=MAX_MANIFEST_NODES,
            hint="fix the file; `gpux help manifest` says what a manifest may hold (Limits)",
        )
    except DuplicateKey as exc:
        raise _error(
            path, exc.line, None, f"duplicate key {quote(exc.key)}", "each key, and each model name, may appear once"
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise _error(
            path, line, None, f"invalid YAML: {problem}", "fix the YAML syntax (indentation, quotes, colons)"
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _error(path, 1, None, "expected a mapping with 'version' and 'models'", "see `gpux init` for an example")

    err = first_error(schema_validator(load_schema("gpux.models.schema.json")), data)
    if err is not None:
        fpath, reason = describe_error(err)
        raise _error(path, _line_of(node, fpath), field_path(fpath), reason, "see `gpux help manifest` for the fields")

    defaults = data.get("defaults") or {}
    models = {}
    for name, entry in (data.get("models") or {}).items():
        models[name] = _effective(name, entry or {}, defaults, path, node)
    allowed = (data.get("policy") or {}).get("allow_licenses")
    cache = data.get("cache") or {}
    remote = cache.get("remote") or ()
    remotes = (remote,) if isinstance(remote, str) else tuple(remote)
    return Manifest(
        path=path,
        models=models,
        policy=Policy(None if allowed is None else tuple(allowed)),
        remotes=remotes,
        remote_optional=bool(cache.get("optional")),
    )


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _effective(name: str, entry: dict, defaults: dict, path: Path, node) -> ModelSpec:
    from gpuxbuild.registries import check_registry, parse_source, takes_file_list, takes_revisions

    def get(key, fallback=None):
        return entry.get(key, defaults.get(key, fallback))

    field_ = f"models.{name}"
    if get("registry") is not None:
        try:
            check_registry(get("registry"))
        except ManifestError as exc:
            where = ["models", name, "registry"] if "registry" in entry else ["defaults", "registry"]
            raise _error(path, _line_of(node, where), field_path(where), exc.message, exc.hint or "") from exc
    try:
        registry, ref = parse_source(entry["source"], get("registry"), project=path.parent)
    except ManifestError as exc:
        raise _error(
            path, _line_of(node, ["models", name, "source"]), f"{field_}.source", exc.message, exc.hint or ""
        ) from exc
    revision = get("revision")
    # (a local folder's `revision:` was always accepted, and is kept as written)
    if revision is not None and "revision" in entry and registry != "local" and not takes_revisions(registry):
        raise _error(
            path,
            _line_of(node, ["models", name, "revision"]),
            f"{field_}.revision",
            f"registry {registry!r} has no revisions (its source pins what it names)",
            "remove `revision:`",
        )
    if revision is not None and "revision" not in entry and not takes_revisions(registry) and registry != "local":
        revision = None  # a `defaults: revision:` is for the registries that have revisions
    if revision is not None:
        bad = check_revision(revision)
        if bad:
            where = ["models", name, "revision"] if "revision" in entry else ["defaults", "revision"]
            raise _error(path, _line_of(node, where), field_path(where), bad, "use a branch, a tag or a 40-hex commit")
    elif takes_revisions(registry):
        revision = "main"
    files = tuple(entry.get("files") or ())
    folder = takes_file_list(registry, ref)
    if bool(files) != folder:
        where = ["models", name, "files" if files else "source"]
        raise _error(
            path,
            _line_of(node, where),
            field_path(where),
            "`files:` is only for an https:// folder source (a URL ending in /)"
            if files
            else "an https:// folder source needs `files:`, the paths of the model's files under it",
            "list the files, e.g. files: [config.json, tokenizer.json, onnx/model.onnx]"
            if not files
            else "remove `files:`, or end the source URL with / to name the folder",
        )
    runtime = _merge(DEFAULT_RUNTIME, _merge(defaults.get("runtime") or {}, entry.get("runtime") or {}))
    if isinstance(runtime.get("labels"), dict):
        runtime["labels"] = {str(k): v for k, v in sorted(runtime["labels"].items(), key=lambda kv: int(kv[0]))}
    return ModelSpec(
        name=name,
        source=entry["source"],
        registry=registry,
        ref=ref,
        revision=revision,
        task=entry.get("task"),
        include=tuple(get("include") or ()),
        exclude=tuple(get("exclude") or ()),
        allow_pickle=bool(get("allow_pickle", False)),
        trust_remote_code=bool(get("trust_remote_code", False)),
        convert=_merge(DEFAULT_CONVERT, _merge(defaults.get("convert") or {}, entry.get("convert") or {})),
        runtime=runtime,
        verify=dict(sorted(get("verify").items())) if get("verify") else None,
        files=files,
    )


STARTER = """\
# gpux.models.yml: the models this project uses. `gpux lock` pins them into gpux.lock
# (commit it); `gpux sync` builds them into .gpux/models/. Fields: `gpux help manifest`.
version: 1

# Settings every model inherits unless it sets its own.
defaults:
  trust_remote_code: false   # never run code shipped in a model repo
  # convert: {opset: 17, dtype: fp32, optimize: null, quantize: null}
  # runtime: {gpu: {backend: auto, memory: 2GB}}

models:
  # sentiment:
  #   source: hf:distilbert/distilbert-base-uncased-finetuned-sst-2-english
  #   revision: main            # branch, tag or 40-hex commit
  #   task: text-classification # optional: inferred when absent
  # local-model:
  #   source: path:./models/my-model
"""
