"""Which artifact folder a NAME means, for `gpux run`, `serve` and `doctor`.

In order: an artifact folder path; a model of the project's gpux.lock (its synced folder, else its
artifact in the store, else from the remote cache, else built now); a pulled model: any id `gpux pull` takes
(`org/name[@rev]`, `hf:`/`huggingface:` prefixes, legacy single-segment ids such as `gpt2`), pulled and built
now when it is not there yet, like `docker run` (a single-segment id that is not pulled yet, only outside a
project).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gpuxbuild.errors import GpuxError
from gpuxbuild.store.artifacts import ARTIFACT_MANIFEST
from gpuxbuild.store.refs import Records

if TYPE_CHECKING:
    from gpuxbuild.build.pipeline import BuildResult
    from gpuxbuild.build.push import PushTarget
    from gpuxbuild.store.objects import Store


def is_artifact(folder: Path) -> bool:
    return (folder / ARTIFACT_MANIFEST).is_file()


def _from_lock(name: str, project: Path, store: Store, offline: bool, on_build=None) -> Path | None:
    from gpuxbuild.project.lockfile import locked_model
    from gpuxbuild.store.artifacts import artifact_path, verified_artifact
    from gpuxbuild.sync.record import DEFAULT_TARGET

    entry = locked_model(project, name)
    if entry is None:
        return None
    synced = project / DEFAULT_TARGET / name
    if is_artifact(synced):
        _check_synced(synced, name, store)
        return synced
    if entry.artifact and verified_artifact(store, entry.artifact["build_key"]) is not None:
        return artifact_path(store, entry.artifact["build_key"])
    from gpuxbuild.build.pipeline import build_one, download_one, job_from_lock
    from gpuxbuild.build.remote_artifact import project_remotes
    from gpuxbuild.project.manifest import MANIFEST_NAME, load_manifest

    manifest = load_manifest(project / MANIFEST_NAME) if (project / MANIFEST_NAME).is_file() else None
    job = job_from_lock(entry, manifest)
    remotes = project_remotes(project)
    if remotes and (got := download_one(job, store=store, remotes=remotes)) is not None:
        return artifact_path(store, got.build_key or job.key)
    if on_build:
        on_build(name)
    res = build_one(job, store=store, project=project, offline=offline, remotes=remotes)
    store.save_counters(builds=int(res.status == "built"), build_hits=int(res.status == "cached"))
    return _built_path(res)


def _check_synced(folder: Path, name: str, store: Store) -> None:
    """Refuse to run a synced model folder whose files are not those gpux sync placed (stat, else re-hash)."""
    from gpuxbuild.sync.plan import adopted_record
    from gpuxbuild.sync.record import check_files, read_record

    rec = read_record(folder.parent).models.get(name) or adopted_record(folder)
    files = rec.files if rec else {}
    drifted, _ = check_files(folder, files, store.root, rec.build_key if rec else None)
    if drifted or not files:
        raise GpuxError(
            f"model {name!r}: {folder} is not what gpux sync placed: " + (", ".join(drifted) or "no artifact.json"),
            "run `gpux sync` to restore it (`gpux cache verify` checks the store)",
        )


def _from_pulled(name: str, project: Path, store: Store, offline: bool, on_pull=None) -> Path:
    from gpuxbuild.build.pipeline import build_pulled
    from gpuxbuild.models.pull import parse_ref, pull
    from gpuxbuild.store.artifacts import verified_artifact

    ref = parse_ref(name)
    rec = Records(store).lookup(ref.registry, ref.repo, ref.revision)
    art = rec.artifact if rec else None
    if rec and art and art.path and art.build_key and verified_artifact(store, art.build_key) is not None:
        Records(store).touch(rec)
        return Path(art.path)
    if on_pull:
        on_pull(str(ref))
    from gpuxbuild.build.convert import ExportPool
    from gpuxbuild.build.pipeline import prestart_export
    from gpuxbuild.build.remote_artifact import project_remotes

    remotes = project_remotes(None)
    with ExportPool(1) as pool:
        hook = prestart_export(pool, ref, False, store, remotes)
        pulled = pull(ref, store=store, project=project, offline=offline, on_resolved=hook)
        return _built_path(build_pulled(pulled, store=store, offline=offline, remotes=remotes, pool=pool))


def _built_path(res: BuildResult) -> Path:
    """The artifact folder of a build that returned (a failed one raises; every other result has a path)."""
    if res.path is None:
        raise ValueError(f"build of {res.name!r} returned without an artifact path")
    return Path(res.path)


def locate(name: str, *, project: Path, store: Store, offline: bool = False, on_pull=None, on_build=None) -> Path:
    """The artifact folder `name` refers to, building or pulling it first when needed (`on_pull` / `on_build`
    are told first, with the name)."""
    as_path = Path(name).expanduser()
    if as_path.is_dir():
        if is_artifact(as_path):
            return as_path.resolve()
        raise GpuxError(
            f"{name} is a folder but not a gpuxbuild artifact (no artifact.json)",
            "pass a built artifact or a model name",
        )
    found = _from_lock(name, project, store, offline, on_build)
    if found is not None:
        return found
    if "/" not in name.partition("@")[0] and ":" not in name and not _is_pulled(name, store):
        # A bare word (a legacy Hub id such as `gpt2`) is pulled only outside a project: inside one it is most
        # likely a model name with a typo, which should not send a download on its way.
        from gpuxbuild.project.lockfile import lock_path

        if lock_path(project).is_file():
            raise GpuxError(
                f"no model {name!r} in this project's gpux.lock, and no pulled model of that id",
                f"use a model name from gpux.models.yml or an artifact folder; to pull the Hub's {name!r}, "
                f"run `gpux pull {name}` or `gpux run hf:{name}`",
            )
        try:
            return _from_pulled(name, project, store, offline, on_pull)
        except GpuxError as exc:
            raise GpuxError(
                f"no model {name!r}: {project} has no gpux.lock, and pulling {name!r} failed: {exc.message}",
                f"{exc.hint}; for a model of a project, run `gpux lock` there and pass --project DIR",
                exit_code=exc.exit_code,
            ) from None
    return _from_pulled(name, project, store, offline, on_pull)


def _is_pulled(name: str, store: Store) -> bool:
    """Whether `name` parses as a pull id (legacy single-segment ones included) that has been pulled."""
    from gpuxbuild.models.pull import parse_ref
    from gpuxbuild.store.refs import Records

    try:
        ref = parse_ref(name)
    except GpuxError:
        return False
    return Records(store).lookup(ref.registry, ref.repo, ref.revision) is not None


def pulled_target(name: str, project: Path, store: Store) -> PushTarget | None:
    """What `gpux push NAME` uploads when NAME is no model of the project's gpux.lock but a pulled model's id (as
    `gpux pull` took it): its artifact and source files. None when it is a lock's model; an error naming it when
    it is neither, or pulled with --no-build."""
    from gpuxbuild.build.push import PushTarget
    from gpuxbuild.models.pull import parse_ref
    from gpuxbuild.project.lockfile import locked_model

    if locked_model(project, name) is not None:
        return None
    try:
        ref = parse_ref(name)
    except GpuxError:
        ref = None
    rec = Records(store).lookup(ref.registry, ref.repo, ref.revision) if ref else None
    if rec is None:
        raise GpuxError(
            f"no model {name!r} in gpux.lock, and no pulled model of that id",
            "name a model of gpux.models.yml, or a pulled model as `gpux ls` shows it",
        )
    if rec.artifact is None or not rec.artifact.build_key:
        raise GpuxError(f"not built here: {name}", f"run `gpux pull {name}` without --no-build first")
    return PushTarget(name, rec.artifact.build_key, tuple(sorted({f["sha256"] for f in rec.files})))
