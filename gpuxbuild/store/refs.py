"""The store's refs: what keeps objects and artifacts alive (refs/pulled/..., refs/projects/...).

A pulled-model record (refs/pulled/<registry>/<repo>/commits/<commit>.json, canonical JSON) names a
pulled commit, its files and the artifact built from it; a tag record maps a revision to that commit. A
project record (refs/projects/<sha256 of the project path>.json) is what a project's last `gpux sync`
keeps alive. `live_roots` gathers both for garbage collection (gpuxbuild.store.gc takes them as input).

Standard library only, and light: the no-op `gpux sync` (gpuxbuild.sync.record) reads project records.
"""

from __future__ import annotations

import json
from urllib.parse import quote, unquote

from gpuxbuild.fsutil import read_json, write_atomic
from gpuxbuild.hashing import canonical_json, sha256_bytes
from gpuxbuild.records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (gpuxbuild.records says why)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from gpuxbuild.store.objects import Store


class ArtifactRef(Record):
    """The artifact a record refers to: its digest, build key and (pulled models) its store folder."""

    __slots__ = ("build_key", "digest", "path")

    def __init__(self, digest: str | None, build_key: str | None, path: str | None = None):
        self.digest, self.build_key, self.path = digest, build_key, path

    @classmethod
    def from_dict(cls, data: dict | None) -> ArtifactRef | None:
        if not data:
            return None
        return cls(data.get("digest"), data.get("build_key"), data.get("path"))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"digest": self.digest, "build_key": self.build_key}
        if self.path is not None:
            out["path"] = self.path
        return out

    @property
    def key_hex(self) -> str:
        """The build key without its `sha256:` prefix ("" when none): the artifact's folder name."""
        return (self.build_key or "").removeprefix("sha256:")


class PulledRecord(Record):
    """A pulled model: the commit `gpux pull` pinned, its files ({path, sha256, size}) and built artifact."""

    __slots__ = (
        "architecture",
        "artifact",
        "commit",
        "files",
        "library",
        "license",
        "registry",
        "repo",
        "size",
        "task",
    )

    def __init__(
        self,
        registry: str,
        repo: str,
        commit: str,
        task: str | None,
        library: str | None,
        architecture: str | None,
        license: str | None,
        files: list[dict[str, Any]],
        size: int,
        artifact: ArtifactRef | None = None,
    ):
        self.registry, self.repo, self.commit = registry, repo, commit
        self.task, self.library, self.architecture, self.license = task, library, architecture, license
        self.files, self.size, self.artifact = files, size, artifact

    @classmethod
    def from_dict(cls, data: dict) -> PulledRecord:
        return cls(
            registry=data["registry"],
            repo=data["repo"],
            commit=data["commit"],
            task=data.get("task"),
            library=data.get("library"),
            architecture=data.get("architecture"),
            license=data.get("license"),
            files=list(data.get("files", [])),
            size=data["size"],
            artifact=ArtifactRef.from_dict(data.get("artifact")),
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "registry": self.registry,
            "repo": self.repo,
            "commit": self.commit,
            "task": self.task,
            "library": self.library,
            "architecture": self.architecture,
            "license": self.license,
            "files": self.files,
            "size": self.size,
        }
        if self.artifact is not None:
            out["artifact"] = self.artifact.as_dict()
        return out


def _safe(part: str) -> str:
    return quote(part, safe="")


class Records:
    """Pulled-model records in the store."""

    def __init__(self, store: Store):
        self.store = store
        self.base = store.root / "refs" / "pulled"

    def _dir(self, registry: str, repo: str) -> Path:
        return self.base / _safe(registry) / _safe(repo)

    def _read(self, path: Path) -> PulledRecord | None:
        data = read_json(path)
        return PulledRecord.from_dict(data) if data else None

    def save(self, record: PulledRecord, revision: str | None) -> PulledRecord:
        """Write `record` (keeping the artifact an earlier pull of the same commit and task built) and tag
        it; returns what was written."""
        d = self._dir(record.registry, record.repo)
        path = self.commit_path(record)
        old = self._read(path)
        if old and old.artifact and not record.artifact and old.task == record.task:
            record = record.replace(artifact=old.artifact)
        write_atomic(path, canonical_json(record.as_dict()))
        if revision and revision != record.commit:  # a commit is found by itself; tags are names for it
            write_atomic(d / "tags" / f"{_safe(revision)}.json", canonical_json({"commit": record.commit}))
        self.touch(record)
        return record

    def commit_path(self, record: PulledRecord) -> Path:
        return self._dir(record.registry, record.repo) / "commits" / f"{record.commit}.json"

    def touch(self, record: PulledRecord) -> None:
        """Mark the model as used now (`gpux ls` shows it as LAST USED)."""
        used = self.commit_path(record).with_suffix(".used")
        used.parent.mkdir(parents=True, exist_ok=True)
        used.touch()

    def last_used(self, record: PulledRecord) -> float | None:
        try:
            return self.commit_path(record).with_suffix(".used").stat().st_mtime
        except FileNotFoundError:
            return None

    def tags(self, registry: str, repo: str) -> dict[str, str | None]:
        d = self._dir(registry, repo) / "tags"
        out = {}
        if d.is_dir():
            for p in sorted(d.glob("*.json")):
                out[unquote(p.stem)] = (read_json(p) or {}).get("commit")
        return out

    def tags_of(self, record: PulledRecord) -> list[str]:
        """The revisions (branches, tags) that point at this record's commit, sorted."""
        return sorted(t for t, c in self.tags(record.registry, record.repo).items() if c == record.commit)

    def all(self) -> list[PulledRecord]:
        out = []
        if self.base.is_dir():
            for p in sorted(self.base.glob("*/*/commits/*.json")):
                rec = self._read(p)
                if rec:
                    out.append(rec)
        return out

    def find(self, registry: str, repo: str, revision: str | None) -> list[PulledRecord]:
        """Records matching a reference: by tag, by commit (prefix), or every commit of the repo when no
        revision."""
        d = self._dir(registry, repo) / "commits"
        recs = [r for p in sorted(d.glob("*.json")) if (r := self._read(p))] if d.is_dir() else []
        if revision is None:
            return recs
        tag = self.tags(registry, repo).get(revision)
        return [r for r in recs if r.commit == tag or (len(revision) >= 7 and r.commit.startswith(revision))]

    def lookup(self, registry: str, repo: str, revision: str | None) -> PulledRecord | None:
        """The one record a reference means: its revision's, else `main`'s, else the only one."""
        if revision is not None:
            found = self.find(registry, repo, revision)
            return found[0] if len(found) == 1 else None
        if "main" in self.tags(registry, repo):
            found = self.find(registry, repo, "main")
            return found[0] if found else None
        found = self.find(registry, repo, None)
        return found[0] if len(found) == 1 else None

    def delete(self, record: PulledRecord) -> None:
        d = self._dir(record.registry, record.repo)
        for suffix in (".json", ".used"):
            self.commit_path(record).with_suffix(suffix).unlink(missing_ok=True)
        for tag in self.tags_of(record):
            (d / "tags" / f"{_safe(tag)}.json").unlink(missing_ok=True)


class ProjectModel(Record):
    """What a project record keeps of one synced model: its pin, size, source files (sha256, sorted) and
    artifact."""

    __slots__ = ("artifact", "commit", "files", "revision", "size", "task")

    def __init__(
        self,
        commit: str | None,
        revision: str | None,
        task: str | None,
        size: int,
        files: list[str],
        artifact: ArtifactRef | None,
    ):
        self.commit, self.revision, self.task, self.size = commit, revision, task, size
        self.files, self.artifact = files, artifact

    @classmethod
    def from_dict(cls, data: dict) -> ProjectModel:
        return cls(
            data.get("commit"),
            data.get("revision"),
            data.get("task"),
            data.get("size", 0),
            list(data.get("files", [])),
            ArtifactRef.from_dict(data.get("artifact")),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "revision": self.revision,
            "task": self.task,
            "size": self.size,
            "files": self.files,
            "artifact": self.artifact.as_dict() if self.artifact else None,
        }


class ProjectRecord(Record):
    """refs/projects/<project id>.json: the project's path, when it was last synced (seconds since the
    epoch), its models."""

    __slots__ = ("models", "project", "synced_at")

    def __init__(self, project: str | None, synced_at: int | None, models: dict[str, ProjectModel]):
        self.project, self.synced_at, self.models = project, synced_at, models

    @classmethod
    def from_dict(cls, data: dict) -> ProjectRecord:
        models = data.get("models", {})
        return cls(
            data.get("project"),
            data.get("synced_at"),
            {name: ProjectModel.from_dict(m) for name, m in models.items()},
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "synced_at": self.synced_at,
            "models": {name: m.as_dict() for name, m in self.models.items()},
        }

    def to_json(self) -> bytes:
        """The bytes written to disk (indented JSON, sorted keys, trailing newline)."""
        return (json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n").encode("utf-8")


def project_id(project: Path) -> str:
    """The sha256 of the project's absolute path: names its record and its lock in the store."""
    return sha256_bytes(str(project.resolve()).encode())


def project_record_path(store_root: Path, project: Path) -> Path:
    """refs/projects/<project id>.json in the store: what the project's last sync keeps alive."""
    return store_root / "refs" / "projects" / f"{project_id(project)}.json"


def read_project_record(path: Path) -> ProjectRecord | None:
    """The project record at `path`, or None when there is none."""
    data = read_json(path)
    return ProjectRecord.from_dict(data) if data else None


def project_records(store_root: Path) -> list[ProjectRecord]:
    """Records that `gpux sync` keeps of each synced project (refs/projects/*.json)."""
    base = store_root / "refs" / "projects"
    return [r for p in sorted(base.glob("*.json")) if (r := read_project_record(p))] if base.is_dir() else []


class LiveRoots(Record):
    """What the refs keep alive: garbage collection's input (besides what running commands hold): sha256 of
    objects, build keys (hex) of artifacts, and how many pulled models and synced projects there are."""

    __slots__ = ("artifacts", "objects", "pulled_models", "synced_projects")

    def __init__(self, objects: frozenset[str], artifacts: frozenset[str], pulled_models: int, synced_projects: int):
        self.objects, self.artifacts = objects, artifacts
        self.pulled_models, self.synced_projects = pulled_models, synced_projects


def live_roots(store: Store) -> LiveRoots:
    """The objects and artifacts every pulled model and synced project refers to."""
    pulled = Records(store).all()
    projects = project_records(store.root)
    synced = [m for p in projects for m in p.models.values()]
    objects = {f["sha256"] for rec in pulled for f in rec.files} | {sha for m in synced for sha in m.files}
    arts = [rec.artifact for rec in pulled] + [m.artifact for m in synced]
    return LiveRoots(
        frozenset(objects),
        frozenset(a.key_hex for a in arts if a and a.build_key),
        len(pulled),
        len(projects),
    )
