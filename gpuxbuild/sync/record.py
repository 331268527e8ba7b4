"""What a sync target holds, by its record, and the check that it already mirrors the lock.

The target keeps a record of what `gpux sync` placed (`.gpux-sync.json`: per model its build key and
artifact digest, per file its sha256, size, mtime, ctime and inode). A complete sync also stores in it a
fingerprint of what its result depended on (the bytes of gpux.lock and gpux.models.yml, the toolchain's
versions), so that the next sync can answer "nothing to do" by comparing fingerprints and stat-ing the
placed files, without parsing the lock.

This module imports only the standard library: `gpux sync` answers a no-op from here without importing
the CLI framework, the store's machinery or any ML package (gpuxbuild.cli.quick).
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

from gpuxbuild.hashing import sha256_bytes, sha256_file
from gpuxbuild.store.verified import stat_fields, verified_artifact_files

DEFAULT_TARGET = Path(".gpux") / "models"
RECORD_NAME = ".gpux-sync.json"
RECORD_VERSION = 1
TMP_PREFIX, OLD_PREFIX = ".tmp-", ".old-"
# Files of the target itself that sync manages (never reported as the user's).
OWN_FILES = (RECORD_NAME, ".gitignore")
LOCK_FILE, MANIFEST_FILE = "gpux.lock", "gpux.models.yml"  # = lockfile.LOCK_NAME, manifest.MANIFEST_NAME
# Distributions whose versions enter build keys (gpuxbuild.build.artifact.toolchain_versions), plus our own.
TOOLCHAIN_DISTS = ("gpuxbuild", "onnx", "onnxruntime", "optimum", "optimum-onnx", "torch", "transformers")
# The store's project record (what `cache prune` keeps for a project) is refreshed by a full sync at least
# this often, so the no-op check stops trusting it when it is older.
FAST_PATH_MAX_AGE = 3600
# What a complete sync checked of the lock before it took its fingerprint; a fingerprint taken by a sync that
# checked less (before lock entries were verified field by field) is not trusted.
LOCK_CHECKS = 2
ACTIONS = (("add", "added"), ("update", "updated"), ("remove", "removed"), ("unchanged", "unchanged"))


def read_record(target: Path) -> dict:
    """The target's record of what sync placed: {"version", "models": {name: {...}}, "fast": ...}."""
    try:
        data = json.loads((target / RECORD_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return {"version": RECORD_VERSION, "models": {}}
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION or not isinstance(data.get("models"), dict):
        return {"version": RECORD_VERSION, "models": {}}
    return data


def stat_record(sha256: str, st: os.stat_result) -> dict:
    """A placed file's record entry: its hash and the stat fields trusted to mean it is unchanged."""
    return {
        "sha256": sha256,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "ino": st.st_ino,
    }


def check_files(
    folder: Path, files: dict[str, dict], store_root: Path | None = None, build_key: str | None = None
) -> tuple[list[str], dict]:
    """(drifted files with why, stat records of files whose stat changed but whose bytes did not).

    Trusts an unchanged (size, mtime_ns, ctime_ns, inode), or one equal to the verified stat of the
    store's file of artifact `build_key` it is a hard link of (another sync linking the same file changes
    the ctime of every link); only other files are re-hashed.
    """
    drifted, refresh = [], {}
    trusted = None  # read only when a stat differs: a no-op sync reads no more than it must
    for rel, rec in sorted(files.items()):
        p = folder / rel
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            drifted.append(f"{rel} (deleted)")
            continue
        now = stat_fields(st)
        if not stat.S_ISREG(st.st_mode):
            drifted.append(f"{rel} (not a file)")
            continue
        if now == [rec["size"], rec.get("mtime_ns"), rec.get("ctime_ns"), rec.get("ino")]:
            continue
        if trusted is None:
            trusted = verified_artifact_files(store_root, build_key) if store_root else {}
        if now == trusted.get(rel):
            continue
        if st.st_size == rec["size"] and sha256_file(p) == rec["sha256"]:
            refresh[rel] = stat_record(rec["sha256"], st)
        else:
            drifted.append(f"{rel} (changed)")
    return drifted, refresh


def user_files(folder: Path, managed: set[str]) -> list[str]:
    """Files (and symlinks) under `folder` that are not in `managed` (POSIX paths relative to `folder`)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        rel_dir = Path(dirpath).relative_to(folder)
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = (rel_dir / n).as_posix()
            if rel not in managed:
                found.append(rel)
    return sorted(found)


def project_id(project: Path) -> str:
    """The sha256 of the project's absolute path: names its record and its lock in the store."""
    return sha256_bytes(str(project.resolve()).encode())


def project_record_path(store_root: Path, project: Path) -> Path:
    """refs/projects/<project id>.json in the store: what the project's last sync keeps alive."""
    return store_root / "refs" / "projects" / f"{project_id(project)}.json"


def _installed(dists: tuple[str, ...]) -> list[str]:
    """The installed `*.dist-info` folder names (name and version) of `dists`, found by listing sys.path.

    A fingerprint of the toolchain, ~100x cheaper than importing importlib.metadata.
    """
    wanted = {d.replace("-", "_").lower() for d in dists}
    found = []
    for entry in sys.path:
        try:
            names = os.listdir(entry) if entry else []
        except OSError:
            continue
        found += [
            n
            for n in names
            if n.endswith(".dist-info") and n[:-10].rsplit("-", 1)[0].replace("-", "_").lower() in wanted
        ]
    return sorted(found)


def fingerprint(project: Path, frozen: bool) -> dict:
    """What a no-op sync's result depends on besides the target: lock and manifest bytes, toolchain versions."""

    def sha(p: Path) -> str | None:
        try:
            return sha256_bytes(p.read_bytes())
        except FileNotFoundError:
            return None

    return {
        "lock": sha(project / LOCK_FILE),
        "manifest": None if frozen else sha(project / MANIFEST_FILE),
        "tools": _installed(TOOLCHAIN_DISTS),
        "checks": LOCK_CHECKS,
    }


def noop_state(project: Path, target: Path, store_root: Path, *, frozen: bool) -> dict | None:
    """What the target holds when a sync of `project` would change nothing, else None (also when unsure).

    Returns {"models": [{name, commit, build_key, digest, user_files}], "user_files": [...]}, models sorted.
    Valid when the lock, the manifest (unless `frozen`) and the toolchain are byte-for-byte those of the
    last complete sync, whose fingerprint was taken after the lock was checked against that manifest, and
    every placed file still has its recorded stat. It only reads, so it needs no project lock: every file
    it reads is replaced by atomic renames, and a sync running meanwhile changes at least one of them
    (lock, record, a placed file's inode, or leaves a staging folder), which this check sees as a difference.
    """
    try:
        return _noop_state(project, target, store_root, frozen=frozen)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # a damaged record or an unreadable file: the full sync reports or repairs it


def _noop_state(project: Path, target: Path, store_root: Path, *, frozen: bool) -> dict | None:
    record = read_record(target)
    memo = record.get("fast")
    if not memo:
        return None
    now = fingerprint(project, frozen)
    if now["lock"] is None or any(memo.get(k) != now[k] for k in ("lock", "tools", "checks")):
        return None
    if not frozen and (memo["manifest"] is None or memo["manifest"] != now["manifest"]):
        return None
    proj = json.loads(project_record_path(store_root, project).read_bytes())
    if time.time() - proj.get("synced_at", 0) > FAST_PATH_MAX_AGE or sorted(proj.get("models", {})) != sorted(
        record["models"]
    ):
        return None
    models = []
    for name, rec in sorted(record["models"].items()):
        drifted, refresh = check_files(target / name, rec["files"], store_root, rec["build_key"])
        if drifted or refresh:
            return None
        models.append(
            {
                "name": name,
                "commit": (rec.get("inputs") or {}).get("commit"),
                "build_key": rec["build_key"],
                "digest": rec["digest"],
                "user_files": [f"{name}/{p}" for p in user_files(target / name, set(rec["files"]))],
            }
        )
    loose = []
    with os.scandir(target) as entries:
        for e in entries:
            if e.name.startswith((TMP_PREFIX, OLD_PREFIX)):
                return None
            if e.name not in record["models"] and e.name not in OWN_FILES:
                loose.append(e.name + ("/" if e.is_dir(follow_symlinks=False) else ""))
    return {"models": models, "user_files": sorted(loose)}


def summary_line(counts: dict[str, int]) -> str:
    """ "2 added, 1 updated, 1 removed, 4 unchanged" for counts per action."""
    return ", ".join(f"{counts.get(a, 0)} {done}" for a, done in ACTIONS)


def cache_line(
    reused: int, built: int, downloaded: str | None = None, link_modes: list[str] | tuple = (), remote: int = 0
) -> str:
    """The line on where artifacts came from: reused from the store, built, from the remote cache; sources
    downloaded; how placed."""
    line = f"artifacts: {reused} reused, {built} built"
    if remote:
        line += f", {remote} from the remote cache"
    if downloaded:
        line += f"; {downloaded}"
    if link_modes:
        line += f"; placed by {'/'.join(link_modes)}"
    return line
