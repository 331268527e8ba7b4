"""`gpux build`: turn locked (or pulled) models into artifacts in the store.

Per model: compute the build key; if the artifact exists it is reused ("cached"); otherwise fetch the
sources, lay them out in a staging folder (hardlinks to store objects), convert (optimum export, or the
ONNX files the repo ships), write gpux.yml and artifact.json, and rename the folder into place under a
per-artifact lock. A failure or a kill leaves only a staging folder, which nothing trusts.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from gpuxbuild.build import DEFAULT_JOBS
from gpuxbuild.build.artifact import build_key, not_reproducible, toolchain_versions, write_manifest
from gpuxbuild.errors import GpuxError, quote
from gpuxbuild.fsutil import read_json, remove_tree
from gpuxbuild.hashing import sha256_bytes
from gpuxbuild.project.selection import check_pickles, conversion_path
from gpuxbuild.registries import get_manager
from gpuxbuild.store.artifacts import (
    ARTIFACT_FORMAT,
    ARTIFACT_MANIFEST,
    artifact_path,
    publish,
    remember_artifact,
    verified_artifact,
)
from gpuxbuild.store.fetch import missing_files
from gpuxbuild.store.files import FileEntry
from gpuxbuild.store.linker import Linker
from gpuxbuild.store.refs import ArtifactRef, Records
from gpuxbuild.tasks import takes_text

if TYPE_CHECKING:
    from gpuxbuild.remote.cache import RemoteCache
    from gpuxbuild.store.objects import Store

# Repo files an artifact carries next to its graphs, when present.
METADATA_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    "2_Normalize",
    "preprocessor_config.json",
    "README.md",
)
EXPORT_PEAK_FACTOR = 6  # export peaks near 6x the fp32 weights (field notes)

Stage = Callable[[str, str], None]  # (model name, stage)


@dataclass
class BuildJob:
    """Everything needed to build one model; comes from a lock entry or a pulled record."""

    name: str
    registry: str
    repo: str
    commit: str
    task: str
    library: str
    files: list[FileEntry]
    options: dict
    # The security options (SECURITY_OPTIONS) as the manifest (or `gpux pull`'s flags) grants them; None when
    # none was read (`sync --frozen`): the lock alone never grants one, so a build that needs one refuses.
    grants: dict | None = None
    recorded: dict | None = None  # the artifact gpux.lock records for it (digest, build_key, toolchain), if any

    def granted(self, option: str) -> bool:
        """Whether the build may use `option` (allow_pickle, trust_remote_code)."""
        if self.grants is not None:
            return bool(self.grants.get(option))
        if self.options.get(option):
            raise GpuxError(
                f"model {self.name!r}: {option} is only taken from gpux.models.yml, and none was read",
                "build it with `gpux sync` or `gpux build` next to the manifest, then sync --frozen reuses it",
            )
        return False

    @property
    def source(self) -> dict:
        return {"registry": self.registry, "repo": self.repo, "commit": self.commit}

    # Derived once per job: planning, scheduling and building each ask for them.
    @cached_property
    def conversion(self) -> str:
        return conversion_path([f.path for f in self.files], self.options.get("convert", {}))

    @cached_property
    def toolchain(self) -> dict:
        here = toolchain_versions(self.conversion, self.options.get("convert", {}))
        locked = (self.recorded or {}).get("toolchain")
        # Without the converter stack nothing can be built here, so the artifact can only come from a remote cache:
        # it is looked up under the toolchain gpux.lock records, and its digest is checked against the lock's.
        if locked and "absent" in here.values():
            return dict(locked)
        return here

    @property
    def expected_digest(self) -> str | None:
        """The digest gpux.lock records for this very build key (what a download must match), else None."""
        rec = self.recorded or {}
        return rec.get("digest") if rec.get("build_key") == self.key else None

    @cached_property
    def key(self) -> str:
        return build_key(
            name=self.name,
            source=self.source,
            files=[f.as_dict() for f in self.files],
            task=self.task,
            library=self.library,
            options=self.options,
            conversion=self.conversion,
            toolchain=self.toolchain,
        )

    @property
    def weights_bytes(self) -> int:
        return sum(f.size for f in self.files if f.path.endswith((".safetensors", ".bin", ".pt", ".pth", ".ckpt")))


@dataclass
class BuildResult:
    name: str
    status: str  # cached | built | downloaded (from a remote cache) | failed
    digest: str | None = None
    build_key: str | None = None
    path: str | None = None
    toolchain: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)
    error: str | None = None
    hint: str | None = None
    note: str | None = None  # why the digest differs from the one gpux.lock recorded (another toolchain)
    exception: GpuxError | None = field(default=None, repr=False)  # the failure itself, for callers that re-raise it

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "digest": self.digest,
            "build_key": self.build_key,
            "path": self.path,
            "toolchain": self.toolchain,
            "stages": self.stages,
            "error": self.error,
            "note": self.note,
        }

    @property
    def lock_record(self) -> dict:
        return {"digest": self.digest, "build_key": self.build_key, "toolchain": self.toolchain}


def safe_join(root: Path, rel: str) -> Path:
    """`root/rel`, refusing anything that would land outside `root`."""
    p = (root / rel).resolve()
    if not p.is_relative_to(root.resolve()) or rel.startswith("/") or ".." in rel.split("/"):
        raise GpuxError(f"refusing file name {quote(rel)}: it would land outside {root.name}", "report the repo")
    return p


def _snapshot(store: Store, files: list[FileEntry], dest: Path) -> None:
    """Lay out source files in `dest` as links to their store objects (a copy across filesystems)."""
    linker = Linker("auto")
    for f in files:
        p = safe_join(dest, f.path)
        p.parent.mkdir(parents=True, exist_ok=True)
        linker.place(store.object_path(f.sha256), p)


def _copy_metadata(src: Path, out: Path) -> None:
    for rel in METADATA_FILES:
        s = src / rel
        if s.is_dir():
            shutil.copytree(s, out / rel, dirs_exist_ok=True)
        elif s.is_file() and not (out / rel).exists():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(s, out / rel)


def _convert(job: BuildJob, src: Path, out: Path, validate: bool, stages: dict, pool) -> tuple[dict, dict]:
    """Export or place the graphs of `job` into `out`: (graph role -> file, the graphs' inputs and outputs where
    the exporter read them (gpuxyml.graph_io, by file name))."""
    convert = job.options.get("convert", {})
    if job.conversion == "onnx":
        from gpuxbuild.build.onnx_files import place_onnx

        t = time.perf_counter()
        graphs = place_onnx(src, out, convert.get("variant"), repo=job.repo)
        _copy_metadata(src, out)
        if takes_text(job.task) and not (out / "tokenizer.json").exists():
            from gpuxbuild.build.tokenizer import ensure_fast_tokenizer

            ensure_fast_tokenizer(src, out)
        stages["place_onnx"] = round(time.perf_counter() - t, 3)
        return graphs, {}
    from gpuxbuild.build.convert import export_onnx

    result = export_onnx(
        src,
        out,
        task=job.task,
        library=job.library,
        opset=convert.get("opset"),
        dtype=convert.get("dtype", "fp32"),
        optimize=convert.get("optimize"),
        quantize=convert.get("quantize"),
        validate=validate and convert.get("validate", True),
        atol=convert.get("atol"),
        trust_remote_code=job.granted("trust_remote_code"),
        name=job.name,
        pool=pool,
    )
    stages.update({k: round(v, 3) for k, v in result.stages.items()})
    _copy_metadata(src, out)
    return result.graphs, result.io


def build_one(
    job: BuildJob,
    *,
    store: Store,
    project: Path,
    offline: bool = False,
    validate: bool = True,
    on_stage: Stage | None = None,
    pool=None,
    sign_key: Path | None = None,
    remotes: RemoteCache | None = None,
    force: bool = False,
) -> BuildResult:
    """Build (or reuse) one model's artifact and write its provenance (signed with `sign_key`, an EC private key,
    when given). Raises GpuxError on failure. `force` builds it again and replaces the stored one.

    `remotes` (a remote cache) supplies source files the store lacks before the registry is asked.

    `pool` (a `convert.ExportPool`) runs exports in long-lived workers; without one an export gets its own process.
    """
    stage = on_stage or (lambda n, s: None)
    key, toolchain = job.key, job.toolchain
    dest = artifact_path(store, key)
    res = BuildResult(job.name, "cached", build_key=key, toolchain=toolchain, path=str(dest))
    if not force and (found := verified_artifact(store, key)) is not None:
        res.digest = found
        os.utime(dest)  # a recent use keeps it from `cache prune`
        _provenance(job, dest, sign_key)  # artifacts built before provenance existed get theirs now
        stage(job.name, "cached")
        return res
    check_pickles(job.name, job.files, job.granted("allow_pickle"))
    job.granted("trust_remote_code")  # refuse now, not after the fetch
    stage(job.name, "waiting for lock")
    with store.lock(f"art-{key.removeprefix('sha256:')}"):
        if not force and (found := verified_artifact(store, key)) is not None:
            res.digest = found
            _provenance(job, dest, sign_key)
            stage(job.name, "cached")
            return res
        t = time.perf_counter()
        stage(job.name, "fetching sources")
        # Nothing is built from an object that is not verified: a changed stat means a re-hash, and a
        # corrupt object goes to quarantine/, so the fetch below downloads it again.
        for f in job.files:
            store.check_object(f.sha256)
        if remotes:
            for f in missing_files(store, job.files):
                remotes.fetch_object(store, f.sha256, f.size, f"{job.name}: {f.path}")
        manager = get_manager(job.registry, project=project, offline=offline, store=store)
        manager.fetch(job.repo, job.commit, job.files, label=job.name)
        res.stages["fetch"] = round(time.perf_counter() - t, 3)
        work = store.tmp_dir() / f"build-{uuid.uuid4().hex}"
        src, out = work / "src", work / "out"
        try:
            _snapshot(store, job.files, src)
            out.mkdir(parents=True)
            stage(job.name, "converting" if job.conversion == "export" else "placing ONNX")
            graphs, io = _convert(job, src, out, validate, res.stages, pool)
            stage(job.name, "writing gpux.yml")
            from gpuxbuild.build.gpuxyml import render_gpux_yml

            config = read_json(out / "config.json", {}) or {}
            text = render_gpux_yml(
                name=job.name,
                task=job.task,
                graphs=graphs,
                artifact_dir=out,
                config=config,
                runtime=job.options.get("runtime", {}),
                source=job.source,
                format_version=ARTIFACT_FORMAT,
                io=io,
            )
            (out / "gpux.yml").write_text(text, encoding="utf-8")
            res.digest = write_manifest(
                out,
                task=job.task,
                graphs=graphs,
                source=job.source,
                library=job.library,
                key=key,
                toolchain=toolchain,
                name=job.name,
            )
            publish(out, dest, replace=force)
            remember_artifact(store, key, res.digest)
            _provenance(job, dest, sign_key)
        finally:
            if work.exists():
                remove_tree(work, ignore_errors=True)
        res.status = "built"
        res.stages["total"] = round(time.perf_counter() - t, 3)
        stage(job.name, "built")
        return res


def _provenance(job: BuildJob, folder: Path, sign_key: Path | None) -> None:
    """Write the provenance of the artifact in `folder`, built by `job` (build/provenance.py)."""
    from gpuxbuild.build.provenance import write_provenance

    data = (folder / ARTIFACT_MANIFEST).read_bytes()
    write_provenance(folder, json.loads(data), "sha256:" + sha256_bytes(data), job.files, job.options, sign_key)


def download_one(
    job: BuildJob, *, store: Store, remotes: RemoteCache, on_stage: Stage | None = None
) -> BuildResult | None:
    """The artifact of `job` from the remote cache when the store lacks it and a remote holds it, else None."""
    from gpuxbuild.build.remote_artifact import fetch_artifact

    key = job.key
    if verified_artifact(store, key) is not None:
        return None
    with store.lock(f"art-{key.removeprefix('sha256:')}"):
        if verified_artifact(store, key) is not None:
            return None
        if on_stage:
            on_stage(job.name, "looking in the remote cache")
        found = fetch_artifact(
            store,
            remotes,
            key,
            job.expected_digest,
            note=on_stage and (lambda what: on_stage(job.name, what)),
            entry=(job.files, job.options),
        )
    if found is None:
        return None
    if on_stage:
        on_stage(job.name, "downloaded")
    return BuildResult(
        job.name,
        "downloaded",
        digest=found,
        build_key=key,
        toolchain=job.toolchain,
        path=str(artifact_path(store, key)),
    )


def memory_bounded_jobs(jobs: int, batch: list[BuildJob]) -> int:
    """At most `jobs`, and no more parallel exports than the machine's free memory holds at ~6x weights each."""
    exports = [j.weights_bytes for j in batch if j.conversion == "export"]
    if not exports:
        return max(1, jobs)
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return max(1, jobs)
    per_job = max(EXPORT_PEAK_FACTOR * max(exports), 1 << 30)  # imports alone take ~1 GB
    return max(1, min(jobs, avail // per_job))


def build_many(
    batch: list[BuildJob],
    *,
    store: Store,
    project: Path,
    jobs: int = DEFAULT_JOBS,
    offline: bool = False,
    validate: bool = True,
    keep_going: bool = True,
    on_stage: Stage | None = None,
    sign_key: Path | None = None,
    remotes: RemoteCache | None = None,
) -> list[BuildResult]:
    """Build several models in parallel; failures are reported per model (all build with `keep_going`).

    With `remotes`, artifacts the store lacks are first downloaded from the remote cache; only the rest are built.
    """
    downloaded: dict[str, BuildResult] = {}
    for job in batch:
        if not remotes:
            break
        try:
            if (got := download_one(job, store=store, remotes=remotes, on_stage=on_stage)) is not None:
                downloaded[job.name] = got
        except GpuxError as exc:
            if not keep_going:
                raise
            downloaded[job.name] = BuildResult(job.name, "failed", error=exc.message, hint=exc.hint, exception=exc)
    todo = [j for j in batch if j.name not in downloaded]
    built = {
        r.name: r
        for r in _build_all(todo, store, project, jobs, offline, validate, keep_going, on_stage, remotes, sign_key)
    }
    return [downloaded.get(j.name) or built[j.name] for j in batch]


def _build_all(
    batch: list[BuildJob],
    store: Store,
    project: Path,
    jobs: int,
    offline: bool,
    validate: bool,
    keep_going: bool,
    on_stage: Stage | None,
    remotes: RemoteCache | None,
    sign_key: Path | None,
) -> list[BuildResult]:
    if not batch:
        return []
    from gpuxbuild.build.convert import ExportPool

    workers = memory_bounded_jobs(jobs, batch)

    def one(job: BuildJob) -> BuildResult:
        try:
            return build_one(
                job,
                store=store,
                project=project,
                offline=offline,
                validate=validate,
                on_stage=on_stage,
                pool=pool,
                sign_key=sign_key,
                remotes=remotes,
            )
        except GpuxError as exc:
            if on_stage:
                on_stage(job.name, "failed")
            if not keep_going:
                raise
            return BuildResult(job.name, "failed", error=exc.message, hint=exc.hint, exception=exc)

    # Export processes start on first use, so builds that only place shipped ONNX never import torch.
    with ExportPool(workers) as pool:
        threads = ThreadPoolExecutor(max_workers=workers)
        try:
            pool.prestart(sum(will_export(j, store) for j in batch))
            return list(threads.map(one, batch))
        except BaseException:
            # Ctrl-C (or a failure without keep_going): end the exports in flight now rather than when they finish;
            # their threads then remove what they staged, and builds not started yet never start.
            pool.stop()
            raise
        finally:
            threads.shutdown(wait=True, cancel_futures=True)


SECURITY_OPTIONS = ("allow_pickle", "trust_remote_code")


def will_export(job: BuildJob, store: Store) -> bool:
    """Whether building `job` runs the ONNX exporter (it converts, and its artifact is not in the store yet)."""
    return job.conversion == "export" and not (artifact_path(store, job.key) / ARTIFACT_MANIFEST).is_file()


def job_from_lock(entry, manifest=None) -> BuildJob:
    """A BuildJob from a gpux.lock model entry (verified against `manifest` by the caller); the security options
    come from `manifest` only (no manifest: none granted)."""
    spec = manifest.models.get(entry.name) if manifest is not None else None
    grants = {k: getattr(spec, k) for k in SECURITY_OPTIONS} if spec is not None else None
    return BuildJob(
        entry.name,
        entry.registry,
        entry.repo,
        entry.commit,
        entry.task,
        entry.library or "transformers",
        list(entry.files),
        entry.options,
        grants,
        entry.artifact,
    )


def pulled_job(ref, rec, allow_pickle: bool) -> BuildJob:
    """The BuildJob of a model `gpux pull` resolved to the pull record `rec`."""
    from gpuxbuild.project.lockfile import options_of
    from gpuxbuild.project.manifest import adhoc_spec

    spec = adhoc_spec(str(ref), rec.registry, rec.repo, allow_pickle=allow_pickle)
    return BuildJob(
        spec.name,
        rec.registry,
        rec.repo,
        rec.commit,
        rec.task,
        rec.library or "transformers",
        [FileEntry(**f) for f in rec.files],
        options_of(spec),
        {k: getattr(spec, k) for k in SECURITY_OPTIONS},
    )


def prestart_export(pool, ref, allow_pickle: bool, store: Store, remotes: RemoteCache | None) -> Callable:
    """Start `pool`'s export worker now when pulling `ref` may export it, so that the worker's imports (torch,
    transformers, optimum: 4-5 s of CPU) overlap resolution and download; returns an `on_resolved` hook for
    `pull(ref, ...)` that keeps it only if the model will be exported. Not with a remote cache, which may supply
    the artifact instead.

    A model never pulled before starts its worker before anything is known: most Hub repos ship no ONNX, and
    resolving takes 0.4-0.8 s (huggingface_hub's import, the listing, config.json) that the worker would
    otherwise wait for. A repo that does ship ONNX has its worker killed as soon as it resolves, having cost that
    much CPU on the other core."""
    if remotes:
        return lambda rec: None
    known = Records(store).lookup(ref.registry, ref.repo, ref.revision)
    speculative = known is None
    if speculative or will_export(pulled_job(ref, known, allow_pickle), store):
        pool.prestart(1)

    def on_resolved(rec) -> None:
        if will_export(pulled_job(ref, rec, allow_pickle), store):
            pool.prestart(1)
        else:
            pool.close()

    return on_resolved


def build_pulled(
    pulled,
    *,
    store: Store,
    offline: bool = False,
    remotes: RemoteCache | None = None,
    force: bool = False,
    pool=None,
) -> BuildResult:
    """Build a model fetched by `gpux pull` and record its artifact in the pull record; `force` converts it
    again (no stored or remote artifact is reused); `pool`: as build_one's."""
    rec = pulled.record
    job = pulled_job(pulled.ref, rec, pulled.allow_pickle)
    got = download_one(job, store=store, remotes=remotes) if remotes and not force else None
    res = got or build_one(
        job, store=store, project=pulled.project, offline=offline, remotes=remotes, force=force, pool=pool
    )
    rec.artifact = ArtifactRef(res.digest, res.build_key, res.path)
    Records(store).save(rec, pulled.ref.revision or ("main" if rec.registry != "local" else None))
    return res


@dataclass
class ProjectBuild:
    results: list[BuildResult]
    lock_written: bool = False

    @property
    def failed(self) -> list[BuildResult]:
        return [r for r in self.results if r.status == "failed"]


def _locked_mismatch(entry, res: BuildResult) -> str | None:
    locked = entry.artifact or {}
    if not locked.get("digest"):
        return "gpux.lock records no artifact digest for it: run `gpux build` and commit gpux.lock"
    if locked["digest"] == res.digest:
        return None
    old, new = locked.get("toolchain", {}), res.toolchain
    why = (
        _toolchain_diff(old, new)
        if old != new
        else "same toolchain versions as locked, so the inputs or the build changed"
    )
    return f"artifact {res.digest} differs from the locked {locked['digest']} ({why})"


def _toolchain_diff(old: dict, new: dict) -> str:
    """ "toolchain differs: torch 2.5 (locked 2.4), ..." between a lock's recorded toolchain and this one."""
    diffs = [
        f"{k} {new.get(k, 'absent')} (locked {old.get(k, 'absent')})"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    return "toolchain differs: " + ", ".join(diffs)


def build_project(
    project: Path,
    names: tuple[str, ...] = (),
    *,
    store: Store,
    locked: bool = False,
    jobs: int = DEFAULT_JOBS,
    offline: bool = False,
    validate: bool = True,
    keep_going: bool = True,
    on_stage: Stage | None = None,
    sign_key: Path | None = None,
    remotes: RemoteCache | None = None,
    shard: tuple[int, int] | None = None,
) -> ProjectBuild:
    """Build the project's locked models (all, or `names`) and record their artifact digests in gpux.lock.

    `shard` (I, N) builds only share I of N of them (gpuxbuild.build.shard), for a CI matrix.

    With `locked`, the lock must be up to date and is not written: every artifact must have the digest
    the lock records, which is how CI proves a committed lock still builds the same bytes.
    """
    from gpuxbuild.project.lockfile import check_lock, lock_path, read_lock, write_lock
    from gpuxbuild.project.manifest import MANIFEST_NAME, load_manifest
    from gpuxbuild.project.resolver import lock_project

    if sign_key is not None:  # a bad key is refused before anything is built
        from gpuxbuild.build.provenance import load_signing_key

        load_signing_key(sign_key)
    manifest = load_manifest(project / MANIFEST_NAME)
    if locked:
        lock = read_lock(lock_path(project))
        check_lock(manifest, lock)
    else:
        lock = lock_project(project, store=store, offline=offline).lock
    if lock is None:  # a missing lock is stale: check_lock raised
        raise ValueError(f"no gpux.lock in {project} after checking it")
    unknown = sorted(set(names) - set(lock.models))
    if unknown:
        raise GpuxError(
            f"no model {', '.join(unknown)} in gpux.lock", f"models: {', '.join(sorted(lock.models)) or 'none'}"
        )
    chosen = sorted(names or lock.models)
    if shard is not None:
        from gpuxbuild.build.shard import shard_of

        chosen = shard_of({n: sum(f.size for f in lock.models[n].files) for n in chosen}, *shard)
    entries = [lock.models[n] for n in chosen]
    results = build_many(
        [job_from_lock(e, manifest) for e in entries],
        store=store,
        project=project,
        jobs=jobs,
        offline=offline,
        validate=validate,
        keep_going=keep_going,
        on_stage=on_stage,
        sign_key=sign_key,
        remotes=remotes,
    )
    store.save_counters(
        builds=sum(r.status == "built" for r in results), build_hits=sum(r.status == "cached" for r in results)
    )
    out = ProjectBuild(results)
    if locked:
        for entry, res in zip(entries, results, strict=True):
            if res.status != "failed" and (problem := _locked_mismatch(entry, res)):
                res.status, res.error = "failed", f"model {entry.name!r}: {problem}"
                res.hint = "if the change is intended, run `gpux build` without --locked and commit gpux.lock"
        return out
    for entry, res in zip(entries, results, strict=True):
        recorded = entry.artifact or {}
        if res.status == "failed":
            continue
        if res.digest is None:  # build_one gives every result that did not fail a digest
            raise ValueError(f"build of {entry.name!r} succeeded without a digest")
        if recorded.get("build_key") == res.build_key and recorded.get("digest") not in (None, res.digest):
            # Same inputs, same toolchain, other bytes: never recorded over the reviewed digest.
            exc = not_reproducible(entry.name, res.digest, recorded["digest"])
            res.status, res.error, res.hint, res.exception = "failed", exc.message, exc.hint, exc
            continue
        if recorded.get("digest") not in (None, res.digest) and recorded.get("toolchain") != res.toolchain:
            res.note = "new digest: " + _toolchain_diff(recorded.get("toolchain") or {}, res.toolchain)
        entry.artifact = res.lock_record
    out.lock_written = write_lock(lock_path(project), lock)
    return out
