"""Docker-like ad hoc models: `gpux pull`, `ls`, `rm`, `inspect`.

A pulled model is recorded in the store (refs/pulled/...) with its commit and files; a tag record maps
the requested revision to that commit so that `gpux run org/name` finds it without the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from gpuxbuild.errors import GpuxError, shorten
from gpuxbuild.fsutil import read_json, remove_tree, write_atomic
from gpuxbuild.hashing import canonical_json
from gpuxbuild.project.manifest import adhoc_spec, check_revision
from gpuxbuild.project.selection import check_pickles, is_pickle
from gpuxbuild.registries import get_manager, parse_source
from gpuxbuild.registries.base import FileEntry, is_git_commit
from gpuxbuild.store.fetch import Fetcher, Reporter, missing_files
from gpuxbuild.store.objects import Store


@dataclass(frozen=True)
class Ref:
    """A parsed `[registry:]repo[@revision]` reference."""

    registry: str
    repo: str
    revision: str | None

    def __str__(self) -> str:
        prefix = (
            "path:" if self.registry == "local" else ("" if self.registry == "huggingface" else f"{self.registry}:")
        )
        return f"{prefix}{self.repo}" + (f"@{self.revision}" if self.revision else "")


def parse_ref(text: str, *, registry: str | None = None, revision: str | None = None) -> Ref:
    """`org/name`, `org/name@REV`, `hf:org/name[@REV]`, `path:./dir`; `--revision REV` may repeat `@REV`, not contradict it."""
    body, _, rev = text.rpartition("@") if "@" in text else (text, "", None)
    if rev is not None and revision is not None and rev != revision:
        raise GpuxError(f"{shorten(text)}: revision given twice ({rev!r} and --revision {revision!r})", "give it once")
    rev = rev if revision is None else revision
    if rev is not None:
        bad = check_revision(rev)
        if bad:
            raise GpuxError(f"{shorten(text)}: {bad}", "use a branch, tag or 40-hex commit", exit_code=2)
    try:
        reg, repo = parse_source(body, registry)
    except GpuxError as exc:
        raise GpuxError(f"{shorten(text) or repr(text)}: {exc.message}", exc.hint, exit_code=2) from None
    return Ref(reg, repo, rev)


def _safe(part: str) -> str:
    return quote(part, safe="")


class Records:
    """Pulled-model records in the store."""

    def __init__(self, store: Store):
        self.store = store
        self.base = store.root / "refs" / "pulled"

    def _dir(self, registry: str, repo: str) -> Path:
        return self.base / _safe(registry) / _safe(repo)

    def save(self, record: dict, revision: str | None) -> None:
        """Write `record` (keeping the artifact an earlier pull of the same commit and task built) and tag it."""
        d = self._dir(record["registry"], record["repo"])
        path = self.commit_path(record)
        old = read_json(path) or {}
        if old.get("artifact") and not record.get("artifact") and old.get("task") == record.get("task"):
            record = {**record, "artifact": old["artifact"]}
        write_atomic(path, canonical_json(record))
        if revision and revision != record["commit"]:  # a commit is found by itself; tags are names for it
            write_atomic(d / "tags" / f"{_safe(revision)}.json", canonical_json({"commit": record["commit"]}))
        self.touch(record)

    def commit_path(self, record: dict) -> Path:
        return self._dir(record["registry"], record["repo"]) / "commits" / f"{record['commit']}.json"

    def touch(self, record: dict) -> None:
        """Mark the model as used now (`gpux ls` shows it as LAST USED)."""
        used = self.commit_path(record).with_suffix(".used")
        used.parent.mkdir(parents=True, exist_ok=True)
        used.touch()

    def last_used(self, record: dict) -> float | None:
        try:
            return self.commit_path(record).with_suffix(".used").stat().st_mtime
        except FileNotFoundError:
            return None

    def tags(self, registry: str, repo: str) -> dict[str, str]:
        d = self._dir(registry, repo) / "tags"
        out = {}
        if d.is_dir():
            for p in sorted(d.glob("*.json")):
                out[unquote(p.stem)] = (read_json(p) or {}).get("commit")
        return out

    def tags_of(self, record: dict) -> list[str]:
        """The revisions (branches, tags) that point at this record's commit, sorted."""
        return sorted(t for t, c in self.tags(record["registry"], record["repo"]).items() if c == record["commit"])

    def all(self) -> list[dict]:
        out = []
        if self.base.is_dir():
            for p in sorted(self.base.glob("*/*/commits/*.json")):
                rec = read_json(p)
                if rec:
                    out.append(rec)
        return out

    def find(self, ref: Ref) -> list[dict]:
        """Records matching `ref`: by tag, by commit (prefix), or every commit of the repo when no revision."""
        d = self._dir(ref.registry, ref.repo) / "commits"
        recs = [read_json(p) for p in sorted(d.glob("*.json"))] if d.is_dir() else []
        if ref.revision is None:
            return recs
        tag = self.tags(ref.registry, ref.repo).get(ref.revision)
        return [
            r for r in recs if r["commit"] == tag or (len(ref.revision) >= 7 and r["commit"].startswith(ref.revision))
        ]

    def lookup(self, ref: Ref) -> dict | None:
        """The one record `ref` means: its revision's, else `main`'s, else the only one."""
        if ref.revision is not None:
            found = self.find(ref)
            return found[0] if len(found) == 1 else None
        tags = self.tags(ref.registry, ref.repo)
        if "main" in tags:
            found = self.find(Ref(ref.registry, ref.repo, "main"))
            return found[0] if found else None
        found = self.find(ref)
        return found[0] if len(found) == 1 else None

    def delete(self, record: dict) -> None:
        d = self._dir(record["registry"], record["repo"])
        for suffix in (".json", ".used"):
            self.commit_path(record).with_suffix(suffix).unlink(missing_ok=True)
        for tag in self.tags_of(record):
            (d / "tags" / f"{_safe(tag)}.json").unlink(missing_ok=True)


@dataclass
class PullResult:
    ref: Ref
    record: dict
    downloaded: list[str]  # paths this pull downloaded (small files fetched while resolving included)
    cached: list[str]  # paths that were in the store already
    project: Path
    objects_downloaded: int = 0  # every object this pull stored, small files hashed while resolving included
    bytes_downloaded: int = 0
    resolved_online: bool = False  # False: the pin came from the store (pulled before, or offline)
    allow_pickle: bool = False

    @property
    def already(self) -> bool:
        """Everything was in the store: nothing was downloaded."""
        return self.objects_downloaded == 0

    def as_dict(self) -> dict:
        return {
            "ref": str(self.ref),
            "commit": self.record["commit"],
            "task": self.record.get("task"),
            "size": self.record["size"],
            "files": len(self.record["files"]),
            "downloaded": self.downloaded,
            "cached": self.cached,
            "objects_downloaded": self.objects_downloaded,
            "bytes_downloaded": self.bytes_downloaded,
            "already_pulled": self.already,
            "resolved_online": self.resolved_online,
            "artifact": self.record.get("artifact"),
        }


def make_record(ref: Ref, commit: str, files: list[FileEntry], task, library, architecture, license_) -> dict:
    """The pulled-model record kept under refs/pulled (canonical JSON, no timestamps)."""
    return {
        "registry": ref.registry,
        "repo": ref.repo,
        "commit": commit,
        "task": task,
        "library": library,
        "architecture": architecture,
        "license": license_,
        "files": [f.as_dict() for f in sorted(files)],
        "size": sum(f.size for f in files),
    }


def early_files(spec, keep: set[str] | None, listed: list[FileEntry]) -> list[FileEntry]:
    """Of the files a registry listed with their sha256 before resolving the rest, those the pull will
    fetch whatever the rest turns out to be: `keep`, the lock's selection, decides by names alone.
    Nothing when the selection failed or keeps pickles the model does not allow (resolving reports it)."""
    if not keep or (not spec.allow_pickle and any(is_pickle(p) for p in keep)):
        return []
    return [f for f in listed if f.path in keep]


def pull(
    ref: Ref,
    *,
    store: Store,
    project: Path,
    offline: bool = False,
    allow_pickle: bool = False,
    task: str | None = None,
    upgrade: bool = False,
    jobs: int = 4,
    reporter: Reporter | None = None,
    on_resolved=None,
) -> PullResult:
    """Resolve `ref`, download what the store lacks, and record it.

    A revision pulled before keeps the commit it was pinned to, with no request at all (like an
    unchanged entry of gpux.lock); `upgrade` re-resolves it online, as `gpux lock --upgrade` does.
    """
    from gpuxbuild.project.lockfile import LockedModel
    from gpuxbuild.project.resolver import resolve_model

    store.clean_tmp()
    records = Records(store)
    manager = get_manager(ref.registry, project=project, offline=offline, store=store)
    tag = ref.revision or ("main" if ref.registry != "local" else None)
    known = records.lookup(Ref(ref.registry, ref.repo, tag)) if ref.registry != "local" else None
    before = (*store.stats.stored(), set(store.downloaded_objects))
    online = not manager.offline and (known is None or (upgrade and not is_git_commit(ref.revision)))
    if not online and known is None:
        raise GpuxError(
            f"{ref}: not in the store, and offline mode is on",
            "pull it once online; `gpux ls` shows what is available offline",
        )
    with Fetcher(manager, ref.repo, store, label=str(ref), jobs=jobs, reporter=reporter) as fetcher:
        record = known
        if online:
            spec = adhoc_spec(
                str(ref), ref.registry, ref.repo, revision=ref.revision, task=task, allow_pickle=allow_pickle
            )

            def on_listed(commit: str, listed: list[FileEntry], keep: set[str] | None) -> None:
                fetcher.add(commit, early_files(spec, keep, listed))

            entry: LockedModel = resolve_model(manager, spec, on_listed=on_listed)
            record = make_record(
                ref, entry.commit, entry.files, entry.task, entry.library, entry.architecture, entry.license
            )
        files = [FileEntry(f["path"], f["sha256"], f["size"]) for f in record["files"]]
        if on_resolved:
            on_resolved(record)
        check_pickles(str(ref), files, allow_pickle)
        fetcher.add(record["commit"], files)
        fetcher.wait()
    # Saving the record and checking its objects under the gc lock means a concurrent `rm`/`cache prune`
    # either saw the record (and kept the objects) or ran before, and what it deleted is fetched again.
    with store.lock("gc"):
        records.save(record, tag)
        record = read_json(records.commit_path(record)) or record
        missing = missing_files(store, files)
    if missing:
        manager.fetch(ref.repo, record["commit"], missing, label=str(ref), jobs=jobs, reporter=reporter)
    new = store.downloaded_objects - before[2]
    return PullResult(
        ref,
        record,
        sorted(f.path for f in files if f.sha256 in new),
        sorted(f.path for f in files if f.sha256 not in new),
        project,
        objects_downloaded=store.stats.stored()[0] - before[0],
        bytes_downloaded=store.stats.stored()[1] - before[1],
        resolved_online=online,
        allow_pickle=allow_pickle,
    )


def resolve_name(name: str, store: Store) -> dict:
    """The pulled record `name` (`org/name[@rev]`) refers to, or a GpuxError listing what is there."""
    ref = parse_ref(name)
    records = Records(store)
    rec = records.lookup(ref)
    if rec is None:
        found = records.find(Ref(ref.registry, ref.repo, None))
        if len(found) > 1:
            commits = ", ".join(r["commit"][:12] for r in found)
            raise GpuxError(f"{name}: several revisions are pulled ({commits})", f"say which: {ref.repo}@REVISION")
        raise GpuxError(f"{name}: no such pulled model", f"pull it with `gpux pull {name}`; `gpux ls` lists models")
    return rec


def remove(name: str, store: Store) -> tuple[list[dict], int]:
    """Forget the pulled model(s) `name` matches and delete their objects and artifact that nothing else
    (another pulled model, a synced project) uses. Returns (records removed, bytes freed)."""
    from gpuxbuild.store.gc import live_objects, referenced_artifacts, tree_size

    ref = parse_ref(name)
    records = Records(store)
    with store.lock("gc"):
        victims = records.find(ref) if ref.revision else records.find(Ref(ref.registry, ref.repo, None))
        if not victims:
            raise GpuxError(f"{name}: no such pulled model", "`gpux ls` lists pulled models")
        for rec in victims:
            records.delete(rec)
        live, live_arts = live_objects(store), referenced_artifacts(store)
        freed = 0
        for sha in sorted({f["sha256"] for rec in victims for f in rec["files"]} - live):
            p = store.object_path(sha)
            with store.lock(f"obj-{sha}"):
                if p.exists():
                    freed += p.stat().st_size
                    p.unlink()
        for key in sorted(
            {(r.get("artifact") or {}).get("build_key", "").removeprefix("sha256:") for r in victims} - {""}
        ):
            if key not in live_arts:
                d = store.root / "artifacts" / key
                if d.is_dir():
                    freed += tree_size(d)
                    remove_tree(d)
    return victims, freed


def list_models(store: Store) -> list[dict]:
    """Pulled models (with tags and last use) and models of synced projects, for `gpux ls`."""
    from gpuxbuild.store.gc import project_records

    records = Records(store)
    rows = []
    for rec in records.all():
        tags = records.tags_of(rec)
        rows.append(
            {
                "name": str(Ref(rec["registry"], rec["repo"], None)),
                "kind": "pulled",
                "revision": ",".join(tags) or None,
                "commit": rec["commit"],
                "task": rec.get("task"),
                "size": rec["size"],
                "last_used": records.last_used(rec),
            }
        )
    for proj in project_records(store):
        for name, m in sorted(proj.get("models", {}).items()):
            rows.append(
                {
                    "name": name,
                    "kind": "synced",
                    "project": proj.get("project"),
                    "revision": m.get("revision"),
                    "commit": m.get("commit"),
                    "task": m.get("task"),
                    "size": m.get("size", 0),
                    "last_used": proj.get("synced_at"),
                }
            )
    return rows


def human_size(n: float) -> str:
    """`1.5 MB` style sizes (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
