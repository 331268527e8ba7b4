"""Which artifact folder a NAME means, for `gpux run`, `serve` and `doctor`.

In order: an artifact folder path; a model of the project's gpux.lock (its synced folder, else its
artifact in the store, else built now); a pulled model `org/name[@rev]` (pulled and built now when
it is not there yet, like `docker run`).
"""

from __future__ import annotations

from pathlib import Path

from gpuxbuild.errors import GpuxError
from gpuxbuild.store import Store


def is_artifact(folder: Path) -> bool:
    return (folder / "artifact.json").is_file()


def _from_lock(name: str, project: Path, store: Store, offline: bool) -> Path | None:
    from gpuxbuild.build.artifact import artifact_path
    from gpuxbuild.lockfile import locked_model
    from gpuxbuild.sync import DEFAULT_TARGET

    entry = locked_model(project, name)
    if entry is None:
        return None
    synced = project / DEFAULT_TARGET / name
    if is_artifact(synced):
        return synced
    if entry.artifact and is_artifact(artifact_path(store, entry.artifact["build_key"])):
        return artifact_path(store, entry.artifact["build_key"])
    from gpuxbuild.build.pipeline import build_one, job_from_lock
    from gpuxbuild.manifest import MANIFEST_NAME, load_manifest

    manifest = load_manifest(project / MANIFEST_NAME) if (project / MANIFEST_NAME).is_file() else None
    return Path(build_one(job_from_lock(entry, manifest), store=store, project=project, offline=offline).path)


def _from_pulled(name: str, project: Path, store: Store, offline: bool, on_pull=None) -> Path:
    from gpuxbuild.build.pipeline import build_pulled
    from gpuxbuild.pull import Records, parse_ref, pull

    ref = parse_ref(name)
    rec = Records(store).lookup(ref)
    art = (rec or {}).get("artifact") or {}
    if art.get("path") and is_artifact(Path(art["path"])):
        Records(store).touch(rec)
        return Path(art["path"])
    if on_pull:
        on_pull(str(ref))
    pulled = pull(ref, store=store, project=project, offline=offline)
    return Path(build_pulled(pulled, store=store, offline=offline).path)


def locate(name: str, *, project: Path, store: Store, offline: bool = False, on_pull=None) -> Path:
    """The artifact folder `name` refers to, building or pulling it first when needed."""
    as_path = Path(name).expanduser()
    if as_path.is_dir():
        if is_artifact(as_path):
            return as_path.resolve()
        raise GpuxError(f"{name} is a folder but not a gpuxbuild artifact (no artifact.json)", "pass a built artifact or a model name")
    found = _from_lock(name, project, store, offline)
    if found is not None:
        return found
    if "/" not in name and ":" not in name:
        raise GpuxError(
            f"no model {name!r} in this project's gpux.lock, and it is not a repo id",
            "use a model name from gpux.models.yml, an org/name repo id, or an artifact folder",
        )
    return _from_pulled(name, project, store, offline, on_pull)
