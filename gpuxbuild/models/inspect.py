"""`gpux inspect NAME`: everything known about a pulled model or a model of the project's gpux.lock."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gpuxbuild.errors import GpuxError
from gpuxbuild.store.artifacts import ARTIFACT_MANIFEST, artifact_digest, artifact_path
from gpuxbuild.store.refs import ArtifactRef, PulledRecord, Records, project_records
from gpuxbuild.sync.record import DEFAULT_TARGET

if TYPE_CHECKING:
    from gpuxbuild.store.objects import Store


def inspect_model(name: str, *, store: Store, project: Path) -> dict:
    """Everything known about `name`, as plain data: registry, repo, revision, commit, task, library, license,
    files with hashes (and whether each is stored), and the artifact (digest, path, gpux.yml) when built.

    `name` is looked up like `gpux run` does: a model of `project`'s gpux.lock first, else a pulled model
    (`org/name[@REV]`).
    """
    from gpuxbuild.models.pull import resolve_name
    from gpuxbuild.project.lockfile import lock_path, locked_model

    entry = locked_model(project, name)
    if entry is not None:
        return _from_lock(entry, store, project)
    try:
        rec = resolve_name(name, store)
    except GpuxError as exc:
        if not lock_path(project).is_file():
            raise
        raise GpuxError(exc.message, (exc.hint or "") + f"; or name a model of {lock_path(project)}") from None
    return _from_pulled(rec, store)


def _files(store: Store, files: list[dict]) -> list[dict]:
    return [{**f, "stored": store.has_object(f["sha256"])} for f in sorted(files, key=lambda f: f["path"])]


def _artifact(store: Store, art: ArtifactRef | None) -> dict | None:
    """Where a recorded artifact lives, if it is in the store."""
    if not art:
        return None
    path = Path(art.path) if art.path else (artifact_path(store, art.build_key) if art.build_key else None)
    if path is None or not (path / ARTIFACT_MANIFEST).is_file():
        return None
    gpux_yml = path / "gpux.yml"
    return {
        "digest": art.digest or artifact_digest(path),
        "build_key": art.build_key,
        "path": str(path),
        "gpux_yml": str(gpux_yml) if gpux_yml.is_file() else None,
    }


def _from_pulled(rec: PulledRecord, store: Store) -> dict:
    from gpuxbuild.models.pull import Ref

    records = Records(store)
    tags = records.tags_of(rec)
    return {
        "name": str(Ref(rec.registry, rec.repo, None)),
        "kind": "pulled",
        "registry": rec.registry,
        "repo": rec.repo,
        "revision": ",".join(tags) or None,
        "commit": rec.commit,
        "task": rec.task,
        "library": rec.library,
        "architecture": rec.architecture,
        "license": rec.license,
        "size": rec.size,
        "files": _files(store, rec.files),
        "artifact": _artifact(store, rec.artifact),
        "last_used": records.last_used(rec),
    }


def _from_lock(entry, store: Store, project: Path) -> dict:
    synced = next((p.models.get(entry.name) for p in project_records(store.root) if p.project == str(project)), None)
    artifact = _artifact(store, synced.artifact if synced else None) or _artifact(
        store, ArtifactRef.from_dict(entry.artifact)
    )
    folder = project / DEFAULT_TARGET / entry.name
    if artifact and (folder / ARTIFACT_MANIFEST).is_file():
        # the project's synced copy is what `gpux run NAME` uses
        artifact = {
            **artifact,
            "path": str(folder),
            "gpux_yml": str(folder / "gpux.yml"),
            "store_path": artifact["path"],
        }
    return {
        "name": entry.name,
        "kind": "locked",
        "project": str(project),
        "source": entry.source,
        "registry": entry.registry,
        "repo": entry.repo,
        "revision": entry.revision,
        "commit": entry.commit,
        "task": entry.task,
        "library": entry.library,
        "architecture": entry.architecture,
        "license": entry.license,
        "size": entry.size,
        "files": _files(store, [f.as_dict() for f in entry.files]),
        "artifact": artifact,
        "synced": synced is not None,
    }
