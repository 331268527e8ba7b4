"""`gpux verify NAME|PATH`: re-check an artifact folder offline and stop at the first mismatch.

In order: every file against artifact.json (and no file it does not list), the artifact digest against the
gpux.lock entry, provenance.json against what artifact.json and the lock entry make of it, and the DSSE
signature of the provenance when there is one (cryptographically with `--key`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gpuxbuild.errors import GpuxError, IntegrityError
from gpuxbuild.hashing import sha256_bytes, sha256_file

if TYPE_CHECKING:
    from gpuxbuild.project.lockfile import LockedModel
    from gpuxbuild.store.objects import Store


@dataclass
class VerifyReport:
    """What `gpux verify` found intact."""

    name: str
    folder: Path
    digest: str
    files: int
    locked: bool  # the digest and provenance were compared with a gpux.lock entry
    signature: str  # none | unchecked | verified

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.folder),
            "digest": self.digest,
            "files": self.files,
            "locked": self.locked,
            "signature": self.signature,
        }


def _fail(folder: Path, what: str) -> IntegrityError:
    return IntegrityError(
        f"{folder}: {what}",
        "the artifact was changed after it was built: do not ship it; rebuild it with `gpux build` "
        "(`gpux cache verify` checks the whole store)",
    )


def target_folder(target: str, project: Path, store: Store) -> tuple[Path, LockedModel | None]:
    """The artifact folder `target` (a folder, or a model of the project's gpux.lock) and its lock entry, if any."""
    from gpuxbuild.project.lockfile import lock_path, locked_model, read_lock
    from gpuxbuild.store.artifacts import artifact_path

    as_path = Path(target).expanduser()
    if as_path.is_dir():
        try:
            name = json.loads((as_path / "artifact.json").read_bytes())["name"]
        except (OSError, ValueError, KeyError, TypeError):
            raise _fail(as_path, "artifact.json missing or unreadable") from None
        lock = read_lock(lock_path(project))
        return as_path.resolve(), (locked_model(project, name) if lock and name in lock.models else None)
    entry = locked_model(project, target)
    if entry is None:
        raise GpuxError(
            f"no model {target!r} in {project / 'gpux.lock'}, and no folder of that name",
            "pass a model name of the project's gpux.lock, or an artifact folder",
            exit_code=2,
        )
    if not entry.artifact:
        raise GpuxError(f"model {target!r} has no artifact recorded in gpux.lock", "run `gpux build` first")
    folder = artifact_path(store, entry.artifact["build_key"])
    if not folder.is_dir():
        raise GpuxError(f"model {target!r}: its artifact is not in the store ({folder})", "run `gpux build` first")
    return folder, entry


def _evidence_folder(folder: Path, entry: LockedModel | None, digest: str, store: Store) -> Path:
    """Where the provenance of the artifact in `folder` is: the folder itself, else (a folder `gpux sync` placed,
    which holds only what artifact.json lists) the store's artifact of the lock entry, when it has the same digest."""
    from gpuxbuild.build.provenance import PROVENANCE
    from gpuxbuild.store.artifacts import artifact_path

    if (folder / PROVENANCE).is_file() or entry is None or not entry.artifact:
        return folder
    stored = artifact_path(store, entry.artifact["build_key"])
    try:
        same = "sha256:" + sha256_file(stored / "artifact.json") == digest
    except OSError:
        return folder
    return stored if same else folder


def verify(target: str, *, project: Path, store: Store, key: Path | None = None) -> VerifyReport:
    """Check the artifact `target`; raise IntegrityError (exit 1) at the first mismatch."""
    from gpuxbuild.build.provenance import PROVENANCE, SIGNED_PROVENANCE, check_envelope, mismatch

    folder, entry = target_folder(target, project, store)
    try:
        data = (folder / "artifact.json").read_bytes()
        manifest = json.loads(data)
        listed = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise _fail(folder, "artifact.json missing or unreadable") from None
    for f in listed:
        p = folder / f["path"]
        if not p.is_file():
            raise _fail(folder, f"{f['path']}: missing")
        if p.stat().st_size != f["size"] or sha256_file(p) != f["sha256"]:
            raise _fail(folder, f"{f['path']}: sha256 differs from artifact.json")
    known = {f["path"] for f in listed} | {"artifact.json", PROVENANCE, SIGNED_PROVENANCE}
    extra = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    if unlisted := [p for p in extra if p not in known]:
        raise _fail(folder, f"{unlisted[0]}: not listed in artifact.json")
    digest = "sha256:" + sha256_bytes(data)
    recorded = (entry.artifact or {}).get("digest") if entry else None
    if recorded and recorded != digest:
        raise _fail(folder, f"artifact digest {digest} is not the {recorded} gpux.lock records for {manifest['name']}")
    evidence = _evidence_folder(folder, entry, digest, store)
    try:
        prov_bytes = (evidence / PROVENANCE).read_bytes()
        where = mismatch(manifest, digest, json.loads(prov_bytes), *((entry.files, entry.options) if entry else ()))
    except FileNotFoundError:
        raise IntegrityError(
            f"{folder}: no {PROVENANCE}",
            "`gpux build` writes it (also for an artifact built before gpuxbuild wrote provenance)",
        ) from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise _fail(folder, f"{PROVENANCE}: not a gpuxbuild provenance statement") from None
    if where is not None:
        against = "artifact.json and gpux.lock" if entry is not None else "artifact.json"
        raise _fail(folder, f"{PROVENANCE}: {where} does not match {against}")
    signature = "none"
    if (evidence / SIGNED_PROVENANCE).is_file():
        try:
            envelope = json.loads((evidence / SIGNED_PROVENANCE).read_bytes())
        except ValueError:
            raise _fail(folder, f"{SIGNED_PROVENANCE}: not JSON") from None
        if (problem := check_envelope(envelope, prov_bytes, key)) is not None:
            raise _fail(folder, problem)
        signature = "verified" if key is not None else "unchecked"
    elif key is not None:
        raise _fail(folder, f"no {SIGNED_PROVENANCE} to check with --key: the provenance is not signed")
    return VerifyReport(manifest["name"], folder, digest, len(listed), entry is not None, signature)
