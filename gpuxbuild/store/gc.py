"""`gpux cache verify | prune | info`.

What the refs keep alive (gpuxbuild.store.refs.live_roots) is an input: this module knows the store's
objects, artifacts and holds, not what refers to them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gpuxbuild.fsutil import remove_tree
from gpuxbuild.hashing import is_sha256, sha256_file
from gpuxbuild.store.objects import Store, remove_if_stale
from gpuxbuild.store.verified import stat_fields

if TYPE_CHECKING:
    from pathlib import Path

    from gpuxbuild.store.refs import LiveRoots

RECENT_BUILD_SECONDS = 7 * 24 * 3600
# Re-hashes one artifact of the store by build key (hex): (files checked, problems found).
ArtifactCheck = Callable[[Store, str], tuple[int, list[str]]]


def live_artifacts(store: Store, referenced: frozenset[str], now: float | None = None) -> set[str]:
    """The `referenced` artifacts (build keys, hex), and those built or used within `RECENT_BUILD_SECONDS`."""
    keys = set(referenced)
    base = store.root / "artifacts"
    now = now or time.time()
    if base.is_dir():
        for d in base.iterdir():
            if d.is_dir() and now - d.stat().st_mtime < RECENT_BUILD_SECONDS:
                keys.add(d.name)
    return keys


def held_objects(store: Store, *, clean: bool = True) -> set[str]:
    """sha256 of the objects other running commands hold (`Store.hold`; not `store` itself: the pruning
    one); `clean` removes the hold files of finished or killed ones."""
    import fcntl

    held: set[str] = set()
    base = store.root / "holds"
    for p in sorted(base.iterdir()) if base.is_dir() else []:
        if store.holds_file == p:
            continue
        if p.name.startswith("."):  # a process killed while starting to hold: gone once stale
            if clean:
                remove_if_stale(p)
            continue
        try:
            f = open(p)  # noqa: SIM115 -- `with f:` below; only the open may skip a vanished file
        except FileNotFoundError:
            continue
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its process is running
                held.update(s for line in f if is_sha256(s := line.strip()))
                continue
            if clean:
                p.unlink(missing_ok=True)
    return held


@dataclass
class PruneReport:
    objects: list[str] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    quarantined: list[str] = field(default_factory=list)  # corrupt objects and artifacts found by the checks
    partials: list[str] = field(default_factory=list)  # partial downloads removed (`partials=True`)
    partial_bytes_kept: int = 0  # partial downloads kept for resuming

    def as_dict(self) -> dict:
        return {
            "objects": self.objects,
            "artifacts": self.artifacts,
            "bytes_freed": self.bytes_freed,
            "quarantined": self.quarantined,
            "partials": self.partials,
            "partial_bytes_kept": self.partial_bytes_kept,
        }


def tree_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size


def prune(
    store: Store, roots: Callable[[Store], LiveRoots], *, dry_run: bool = False, partials: bool = False
) -> PruneReport:
    """Remove objects and artifacts that neither `roots` (read under the gc lock) nor a running command
    keeps alive, what is quarantined, and stale temp files; with `partials` also every partial download
    no running command is writing. `dry_run` only reports."""
    report = PruneReport()
    with store.lock("gc"):  # pulls save their records under it, so none is half-counted
        alive = roots(store)
        live = alive.objects | held_objects(store, clean=not dry_run)
        for sha, path in store.iter_objects():
            if sha not in live:
                report.objects.append(sha)
                report.bytes_freed += path.stat().st_size
                if not dry_run:
                    with store.lock(f"obj-{sha}"):
                        path.unlink(missing_ok=True)
        arts = store.root / "artifacts"
        keep = live_artifacts(store, alive.artifacts)
        if arts.is_dir():
            for d in sorted(arts.iterdir()):
                if d.name not in keep:
                    report.artifacts.append(d.name)
                    report.bytes_freed += tree_size(d)
                    if not dry_run:
                        with store.lock(f"art-{d.name}"):
                            remove_tree(d)
    quarantine = store.root / "quarantine"
    for p in sorted(quarantine.glob("*/*")):
        report.quarantined.append(p.name)
        report.bytes_freed += tree_size(p)
        if not dry_run:
            remove_tree(p, ignore_errors=True)
    if partials:
        found = store.partials() if dry_run else store.remove_partials()
        report.partials = [p.name for p, _ in found]
        report.bytes_freed += sum(size for _, size in found)
    if not dry_run:
        store.clean_tmp()
        store.drop_stale_index()
    report.partial_bytes_kept = sum(size for _, size in store.partials())
    return report


@dataclass
class VerifyReport:
    checked: int = 0
    bad_objects: list[dict] = field(default_factory=list)
    bad_artifacts: list[dict] = field(default_factory=list)
    fixed: bool = False

    def __bool__(self) -> bool:
        return bool(self.bad_objects or self.bad_artifacts)

    def as_dict(self) -> dict:
        return {
            "checked": self.checked,
            "bad_objects": self.bad_objects,
            "bad_artifacts": self.bad_artifacts,
            "fixed": self.fixed,
        }


def _rehash(path: Path) -> tuple[os.stat_result, str] | None:
    """(stat before hashing, sha256) of a file, or None when it is not a file (gone meanwhile: a concurrent
    prune or rm)."""
    try:
        st = os.stat(path)
        return st, sha256_file(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def verify(store: Store, check_artifact: ArtifactCheck, *, fix: bool = False, jobs: int | None = None) -> VerifyReport:
    """Re-hash every object (and every artifact file) and report those whose bytes do not match their name.

    The same checks as before a build or a sync (`Store.check_object`, `check_artifact`), but hashing every
    file whatever its stat; intact files get their stat recorded, so those checks trust them again. `fix`
    moves what is corrupt to quarantine/, so it is fetched or built again. Files are hashed `jobs` at a time
    (default: one per CPU, at most 8): hashlib releases the GIL, so a large store is checked at the speed
    of the disk rather than of one core. `check_artifact(store, key)` re-hashes one artifact (the build
    layer knows what an artifact holds).
    """
    report = VerifyReport(fixed=fix)
    objects = list(store.iter_objects())
    with ThreadPoolExecutor(max_workers=jobs or min(8, os.cpu_count() or 1)) as pool:
        named = [(sha, path) for sha, path in objects if is_sha256(sha)]  # other names are wrong anyway
        actuals = dict(zip((sha for sha, _ in named), pool.map(_rehash, [path for _, path in named]), strict=True))
        for sha, path in objects:
            report.checked += 1
            found = actuals.get(sha)
            if found is None and sha in actuals and not path.exists():
                continue  # removed meanwhile
            if found is not None and found[1] == sha:
                store.remember_verified("objects", sha, stat_fields(found[0]))
                continue
            report.bad_objects.append({"object": sha, "actual": found and found[1], "path": str(path)})
            if fix:
                store.quarantine("objects", path)
        arts = store.root / "artifacts"
        keys = sorted(d.name for d in arts.iterdir()) if arts.is_dir() else []
        for key, (checked, problems) in zip(keys, pool.map(lambda k: check_artifact(store, k), keys), strict=True):
            report.checked += checked
            if problems:
                report.bad_artifacts.append({"artifact": key, "problems": problems})
                if fix:
                    store.quarantine("artifacts", arts / key)
    return report


def info(store: Store, roots: LiveRoots) -> dict:
    """Size, object and artifact counts, and hit/miss counters of the store; `roots` counts its refs."""
    n_obj = size_obj = 0
    for _, p in store.iter_objects():
        n_obj += 1
        size_obj += p.stat().st_size
    arts = store.root / "artifacts"
    art_dirs = [d for d in arts.iterdir() if d.is_dir()] if arts.is_dir() else []
    return {
        "root": str(store.root),
        "objects": n_obj,
        "objects_bytes": size_obj,
        "artifacts": len(art_dirs),
        "artifacts_bytes": sum(tree_size(d) for d in art_dirs),
        "pulled_models": roots.pulled_models,
        "synced_projects": roots.synced_projects,
        "counters": store.load_counters(),
    }
