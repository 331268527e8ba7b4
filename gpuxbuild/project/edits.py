"""Editing a project's manifest (`gpux init`, `gpux add`, `gpux remove`) with the user's comments and order kept.

Edits are planned in memory and locked before anything is written: a model that fails to resolve
leaves both gpux.models.yml and gpux.lock exactly as they were.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from gpuxbuild.errors import GpuxError, ManifestError
from gpuxbuild.fsutil import write_atomic
from gpuxbuild.project.lockfile import lock_path, read_lock, write_lock
from gpuxbuild.project.manifest import MANIFEST_NAME, STARTER, load_manifest, parse_manifest
from gpuxbuild.project.resolver import LockPlan, plan_lock
from gpuxbuild.registries import parse_source


def init_project(project: Path) -> Path:
    """Write a commented starter manifest. Refuses to overwrite an existing one."""
    path = project / MANIFEST_NAME
    if path.exists():
        raise GpuxError(f"{path.name} already exists in {project}", "edit it, or use `gpux add SOURCE`")
    project.mkdir(parents=True, exist_ok=True)
    write_atomic(path, STARTER.encode("utf-8"))
    return path


def default_name(source: str) -> str:
    """A model name derived from its source: the last path segment, lowercased, made safe."""
    registry, ref = parse_source(source)
    if registry == "mlflow":  # NAME/VERSION, NAME@ALIAS: the registered model's name
        ref = re.split(r"[/@]", ref)[0]
    base = ref.rstrip("/").rsplit("/", 1)[-1].lower()
    if "://" in ref:  # a URL source: its last path segment, without an OCI tag or digest
        base = re.split(r"[@:]", base, maxsplit=1)[0]
    name = re.sub(r"[^a-z0-9._-]+", "-", base).strip("-._")
    return name or "model"


def _yaml():
    from ruamel.yaml import YAML

    y = YAML()
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    return y


def _load_rt(path: Path):
    y = _yaml()
    if path.exists():
        load_manifest(path)  # refuse to edit an invalid manifest
        return y, y.load(path.read_text(encoding="utf-8"))
    return y, y.load(STARTER)


def _dump(y, data) -> str:
    buf = io.StringIO()
    y.dump(data, buf)
    return buf.getvalue()


@dataclass
class EditResult:
    name: str
    plan: LockPlan


def _apply(project: Path, text: str, *, store=None, offline=False, upgrade=False) -> LockPlan:
    path = project / MANIFEST_NAME
    manifest = parse_manifest(text, path)
    plan = plan_lock(manifest, read_lock(lock_path(project)), upgrade=upgrade, store=store, offline=offline)
    write_atomic(path, text.encode("utf-8"))
    plan.written = write_lock(lock_path(project), plan.lock)
    return plan


def add_model(
    project: Path,
    source: str,
    *,
    name: str | None = None,
    revision: str | None = None,
    task: str | None = None,
    store=None,
    offline: bool = False,
) -> EditResult:
    """Add (or replace) a model in the manifest and lock it, like `uv add`."""
    from ruamel.yaml.comments import CommentedMap

    path = project / MANIFEST_NAME
    parse_source(source)  # a bad source fails before anything else
    name = name or default_name(source)
    y, data = _load_rt(path)
    if data.get("models") is None:
        data["models"] = CommentedMap()
    entry = CommentedMap()
    entry["source"] = source
    if revision:
        entry["revision"] = revision
    if task:
        entry["task"] = task
    data["models"][name] = entry
    plan = _apply(project, _dump(y, data), store=store, offline=offline, upgrade={name})
    return EditResult(name, plan)


def remove_model(project: Path, name: str, *, store=None, offline: bool = False) -> EditResult:
    """Remove a model from the manifest and the lock."""
    path = project / MANIFEST_NAME
    if not path.exists():
        raise ManifestError(f"{path.name}: no manifest in {project}", "run `gpux init` first")
    y, data = _load_rt(path)
    models = data.get("models") or {}
    if name not in models:
        known = ", ".join(models) or "none"
        raise GpuxError(f"no model {name!r} in {path.name}", f"models: {known}")
    del models[name]
    plan = _apply(project, _dump(y, data), store=store, offline=offline)
    return EditResult(name, plan)
