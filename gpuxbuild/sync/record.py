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
from gpuxbuild.records import Record
from gpuxbuild.store.refs import ProjectRecord, project_record_path
from gpuxbuild.store.verified import read_verified_artifact, stat_fields

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (gpuxbuild.records says why)
if TYPE_CHECKING:
    from typing import Any

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
# The sync actions (gpuxbuild.sync.plan.SyncAction; a copy: typing is not imported here) and their past tense.
ACTIONS = (("add", "added"), ("update", "updated"), ("remove", "removed"), ("unchanged", "unchanged"))


class FileStat(Record):
    """A placed file's record entry: its hash and the stat fields trusted to mean it is unchanged (unknown
    for a folder adopted from its artifact.json, until its files are re-hashed)."""

    __slots__ = ("ctime_ns", "ino", "mtime_ns", "sha256", "size")

    def __init__(
        self,
        sha256: str,
        size: int,
        mtime_ns: int | None = None,
        ctime_ns: int | None = None,
        ino: int | None = None,
    ):
        self.sha256, self.size, self.mtime_ns, self.ctime_ns, self.ino = sha256, size, mtime_ns, ctime_ns, ino

    @classmethod
    def from_dict(cls, data: dict) -> FileStat:
        return cls(data["sha256"], data["size"], data.get("mtime_ns"), data.get("ctime_ns"), data.get("ino"))

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self._fields().items() if v is not None}


class ModelInputs(Record):
    """What a sync record keeps of a model's lock entry, to say why its artifact changed: its commit, the
    digests of its options and of its source files, its task."""

    __slots__ = ("commit", "options", "sources", "task")

    def __init__(self, commit: str | None, options: str | None, sources: str | None, task: str | None):
        self.commit, self.options, self.sources, self.task = commit, options, sources, task

    @classmethod
    def from_dict(cls, data: dict | None) -> ModelInputs | None:
        if data is None:
            return None
        return cls(data.get("commit"), data.get("options"), data.get("sources"), data.get("task"))

    def as_dict(self) -> dict[str, Any]:
        return self._fields()


class PlacedModel(Record):
    """What sync placed in one model folder: the artifact (build key, digest) and every file's stat."""

    __slots__ = ("build_key", "digest", "files", "inputs")

    def __init__(
        self,
        build_key: str | None,
        digest: str | None,
        files: dict[str, FileStat],
        inputs: ModelInputs | None = None,
    ):
        self.build_key, self.digest, self.files, self.inputs = build_key, digest, files, inputs

    @classmethod
    def from_dict(cls, data: dict) -> PlacedModel:
        return cls(
            data.get("build_key"),
            data.get("digest"),
            {rel: FileStat.from_dict(f) for rel, f in data["files"].items()},
            ModelInputs.from_dict(data.get("inputs")),
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "build_key": self.build_key,
            "digest": self.digest,
            "files": {rel: f.as_dict() for rel, f in self.files.items()},
        }
        if self.inputs is not None:
            out["inputs"] = self.inputs.as_dict()
        return out


class Fingerprint(Record):
    """What a no-op sync's result depends on besides the target (see `fingerprint`): sha256 of gpux.lock and
    of gpux.models.yml (None with --frozen), the toolchain's installed distributions, and the
    `LOCK_CHECKS` of the sync that took it."""

    __slots__ = ("checks", "lock", "manifest", "tools")

    def __init__(self, lock: str | None, manifest: str | None, tools: list[str] | None, checks: int | None):
        self.lock, self.manifest, self.tools, self.checks = lock, manifest, tools, checks

    @classmethod
    def from_dict(cls, data: dict) -> Fingerprint:
        return cls(data.get("lock"), data.get("manifest"), data.get("tools"), data.get("checks"))

    def as_dict(self) -> dict[str, Any]:
        return self._fields()


class SyncRecord(Record):
    """`.gpux-sync.json`: what sync placed per model, and the fingerprint of the last complete sync."""

    __slots__ = ("fast", "models", "version")

    def __init__(
        self,
        models: dict[str, PlacedModel] | None = None,
        fast: Fingerprint | None = None,
        version: int = RECORD_VERSION,
    ):
        self.models = {} if models is None else models
        self.fast, self.version = fast, version

    @classmethod
    def from_dict(cls, data: dict) -> SyncRecord:
        fast = data.get("fast")
        return cls(
            {name: PlacedModel.from_dict(m) for name, m in data["models"].items()},
            Fingerprint.from_dict(fast) if fast else None,
            data["version"],
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "models": {n: m.as_dict() for n, m in self.models.items()}}
        if self.fast is not None:
            out["fast"] = self.fast.as_dict()
        return out

    def to_json(self) -> bytes:
        """The bytes written to the target (indented JSON, sorted keys, trailing newline)."""
        return (json.dumps(self.as_dict(), indent=1, sort_keys=True) + "\n").encode("utf-8")


def read_record(target: Path) -> SyncRecord:
    """The target's record of what sync placed; an empty one when there is none or it cannot be read (the
    model folders are then adopted by their artifact.json, or reported)."""
    try:
        data = json.loads((target / RECORD_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return SyncRecord()
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION or not isinstance(data.get("models"), dict):
        return SyncRecord()
    try:
        return SyncRecord.from_dict(data)
    except (KeyError, TypeError, AttributeError):
        return SyncRecord()


def stat_record(sha256: str, st: os.stat_result) -> FileStat:
    """A placed file's record entry: its hash and the stat fields trusted to mean it is unchanged."""
    return FileStat(sha256, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def check_files(
    folder: Path, files: dict[str, FileStat], store_root: Path | None = None, build_key: str | None = None
) -> tuple[list[str], dict[str, FileStat]]:
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
        if now == [rec.size, rec.mtime_ns, rec.ctime_ns, rec.ino]:
            continue
        if trusted is None:
            trusted = read_verified_artifact(store_root, build_key).files if store_root else {}
        if now == trusted.get(rel):
            continue
        if st.st_size == rec.size and sha256_file(p) == rec.sha256:
            refresh[rel] = stat_record(rec.sha256, st)
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


def fingerprint(project: Path, frozen: bool) -> Fingerprint:
    """What a no-op sync's result depends on besides the target: lock and manifest bytes, toolchain versions."""

    def sha(p: Path) -> str | None:
        try:
            return sha256_bytes(p.read_bytes())
        except FileNotFoundError:
            return None

    return Fingerprint(
        lock=sha(project / LOCK_FILE),
        manifest=None if frozen else sha(project / MANIFEST_FILE),
        tools=_installed(TOOLCHAIN_DISTS),
        checks=LOCK_CHECKS,
    )


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
    memo = record.fast
    if not memo:
        return None
    now = fingerprint(project, frozen)
    if now.lock is None or (memo.lock, memo.tools, memo.checks) != (now.lock, now.tools, now.checks):
        return None
    if not frozen and (memo.manifest is None or memo.manifest != now.manifest):
        return None
    proj = ProjectRecord.from_dict(json.loads(project_record_path(store_root, project).read_bytes()))
    if time.time() - (proj.synced_at or 0) > FAST_PATH_MAX_AGE or sorted(proj.models) != sorted(record.models):
        return None
    models = []
    for name, rec in sorted(record.models.items()):
        drifted, refresh = check_files(target / name, rec.files, store_root, rec.build_key)
        if drifted or refresh:
            return None
        models.append(
            {
                "name": name,
                "commit": rec.inputs.commit if rec.inputs else None,
                "build_key": rec.build_key,
                "digest": rec.digest,
                "user_files": [f"{name}/{p}" for p in user_files(target / name, set(rec.files))],
            }
        )
    loose = []
    with os.scandir(target) as entries:
        for e in entries:
            if e.name.startswith((TMP_PREFIX, OLD_PREFIX)):
                return None
            if e.name not in record.models and e.name not in OWN_FILES:
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
