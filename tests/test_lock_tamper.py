"""Hand-edited locks: every field a lock entry derives from the manifest is checked on every read, offline.

Each case edits one entry of a synced project's gpux.lock the way an attacker (or a bad merge) would, keeping
`spec_digest` and `source`; every command that reads the lock must refuse it before anything is placed or run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from helpers import gpux, publish, read_lock, write_manifest


def write_lock(project: Path, data: dict) -> None:
    (project / "gpux.lock").write_text(yaml.safe_dump(data, sort_keys=True))


@pytest.fixture
def project(hub, repo_id, tmp_path):
    """Models `m` (pinned to its first commit) and `other` locked and synced; returns (project, second commit of m)."""
    first = publish(hub, repo_id, "onnx-shipped", card={"pipeline_tag": "text-classification"})
    from tinymodels import make_repo

    second = hub.commit(repo_id, make_repo("onnx-shipped", seed=3))
    publish(hub, repo_id + "-other", "onnx-shipped", card={"pipeline_tag": "text-classification"}, seed=7)
    write_manifest(
        tmp_path, {"m": {"source": f"hf:{repo_id}", "revision": first}, "other": {"source": f"hf:{repo_id}-other"}}
    )
    gpux("sync", cwd=tmp_path)
    # The files of m's second commit, as `gpux lock` lists them: a consistent file list for a swapped commit.
    scratch = tmp_path / "scratch"
    write_manifest(scratch, {"m": {"source": f"hf:{repo_id}", "revision": second}})
    gpux("lock", cwd=scratch)
    return tmp_path, read_lock(scratch)["models"]["m"]


def _swap_repo(m, other, _second):
    m.update(repo=other["repo"], commit=other["commit"], files=other["files"])


def _swap_commit(m, _other, second):
    m.update(commit=second["commit"], files=second["files"])


def _trust(m, _other, _second):
    m["options"]["trust_remote_code"] = True


def _pickle(m, _other, _second):
    m["options"]["allow_pickle"] = True


def _revision(m, _other, second):
    m.update(revision=second["commit"], commit=second["commit"], files=second["files"])


def _convert(m, _other, _second):
    m["options"]["convert"]["from"] = "export"


CASES = {  # edit -> the field the manifest check names, the field the --frozen check names
    "swap-repo": (_swap_repo, "repo", "repo"),
    "swap-commit": (_swap_commit, "commit", "commit"),
    "trust-remote-code": (_trust, "options.trust_remote_code", "spec_digest"),
    "allow-pickle": (_pickle, "options.allow_pickle", "spec_digest"),
    "revision": (_revision, "revision", "spec_digest"),
    "convert": (_convert, "options.convert", "spec_digest"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampered_entry_is_refused_by_every_command(project, case):
    root, second = project
    edit, field_, frozen_field = CASES[case]
    data = read_lock(root)
    edit(data["models"]["m"], data["models"]["other"], second)
    write_lock(root, data)
    lock_bytes = (root / "gpux.lock").read_bytes()
    placed = (root / ".gpux" / "models" / "m" / "artifact.json").read_bytes()
    wanted = f"gpux.lock does not match gpux.models.yml for m: {field_}"
    for args in (
        ("lock", "--check"),
        ("sync", "--locked"),
        ("sync",),
        ("build", "--locked"),
        ("build",),
        ("lock",),
        ("run", "m", "hello"),
        ("sync", "--locked", "--offline"),
    ):
        r = gpux(*args, cwd=root, check=False)
        assert r.returncode == 1 and wanted in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    r = gpux("sync", "--frozen", cwd=root, check=False)
    assert r.returncode == 1 and f"gpux.lock is not consistent for m: {frozen_field}" in r.stderr, r.stderr
    assert (root / "gpux.lock").read_bytes() == lock_bytes
    assert (root / ".gpux" / "models" / "m" / "artifact.json").read_bytes() == placed
    # The repair: re-pin the model from the manifest.
    gpux("lock", "--upgrade", "m", cwd=root)
    gpux("lock", "--check", cwd=root)


def test_frozen_alone_cannot_see_a_consistent_swap(project):
    """--frozen reads no manifest: an edit that also rewrites source and spec_digest consistently passes it
    (docs/lockfile.md says so), but every command that reads the manifest refuses it."""
    root, _ = project
    data = read_lock(root)
    m, other = data["models"]["m"], data["models"]["other"]
    for key in ("source", "repo", "revision", "commit", "files", "spec_digest"):
        m[key] = other[key]
    write_lock(root, data)
    assert gpux("sync", "--frozen", "--dry-run", cwd=root, check=False).returncode == 0
    r = gpux("lock", "--check", cwd=root, check=False)
    assert r.returncode == 1 and "gpux.lock is out of date: changed in the manifest: m" in r.stderr


def test_frozen_build_takes_no_security_option_from_the_lock(project):
    """trust_remote_code / allow_pickle come from the manifest only: a --frozen sync that has to build a model
    whose lock entry asks for one refuses, rather than honour the lock."""
    from gpuxbuild.project.lockfile import LockedModel
    from gpuxbuild.project.manifest import ModelSpec, digest

    root, _ = project
    data = read_lock(root)
    m = data["models"]["m"]
    m["options"]["trust_remote_code"] = True
    m["options"]["convert"]["validate"] = False  # a new build key: the artifact is not in the store
    entry = LockedModel.from_dict("m", m)
    spec = ModelSpec(
        "m",
        entry.source,
        entry.registry,
        entry.repo,
        entry.revision,
        None,
        (),
        (),
        False,
        True,
        entry.options["convert"],
        entry.options["runtime"],
    )
    m["spec_digest"] = spec.digest  # consistent: --frozen cannot tell it from a reviewed lock
    assert digest(spec.as_dict()) == m["spec_digest"]
    write_lock(root, data)
    r = gpux("sync", "--frozen", cwd=root, check=False)
    assert r.returncode == 1 and "trust_remote_code is only taken from gpux.models.yml" in r.stderr, r.stderr


@pytest.mark.parametrize("repo", ["../outside", "/etc", "models/../../outside", "link"])
def test_local_entry_never_points_outside_the_project(tmp_path, repo):
    from tinymodels import write_repo

    root = tmp_path / "p"
    write_repo("onnx-shipped", root / "models" / "m")
    write_repo("onnx-shipped", tmp_path / "outside", seed=5)
    os.symlink(tmp_path / "outside", root / "link")
    write_manifest(root, {"m": {"source": "path:./models/m", "task": "text-classification"}})
    gpux("lock", cwd=root)
    data = read_lock(root)
    data["models"]["m"]["repo"] = repo
    write_lock(root, data)
    for args in (("lock", "--check"), ("sync", "--frozen"), ("sync", "--locked")):
        r = gpux(*args, cwd=root, check=False)
        assert r.returncode == 1 and "for m: repo" in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert not (root / ".gpux").exists()


@pytest.mark.parametrize("source", ["../outside", "path:../outside", "path:models/../../outside", "path:./link"])
def test_local_source_outside_the_project_is_refused(tmp_path, source):
    from tinymodels import write_repo

    root = tmp_path / "p"
    root.mkdir()
    write_repo("onnx-shipped", tmp_path / "outside")
    os.symlink(tmp_path / "outside", root / "link")
    write_manifest(root, {"m": {"source": source, "task": "text-classification"}})
    r = gpux("lock", cwd=root, check=False)
    assert r.returncode == 2 and "models.m.source" in r.stderr and "outside the project" in r.stderr, r.stderr
    assert not (root / "gpux.lock").exists()


@pytest.mark.parametrize(
    "edit, field_",
    [
        (lambda m: m.update(commit="A" * 40), "models.m.commit"),
        (lambda m: m["files"].append(dict(m["files"][0])), "models.m.files"),
        (lambda m: m["files"][0].update(size=-1), "models.m.files[0].size"),
        (lambda m: m["options"]["convert"].update({"from": 12}), "models.m.options.convert.from"),
        (lambda m: m["options"]["convert"].update(speed="max"), "models.m.options.convert"),
        (lambda m: m["options"]["runtime"].update(max_length="x"), "models.m.options.runtime.max_length"),
        # `origin` is one typed record: entry-level ids, and per-file ones under `files`
        (lambda m: m.update(origin={"config.json": {"etag": "e"}}), "models.m.origin"),
        (lambda m: m.update(origin={"files": {"config.json": {"md5": "e"}}}), "models.m.origin.files"),
        (lambda m: m.update(origin={"version": 1}), "models.m.origin.version"),
    ],
)
def test_malformed_lock_fields_are_schema_errors(tmp_path, edit, field_):
    from tinymodels import write_repo

    write_repo("onnx-shipped", tmp_path / "models" / "m")
    write_manifest(tmp_path, {"m": {"source": "path:./models/m", "task": "text-classification"}})
    gpux("lock", cwd=tmp_path)
    data = read_lock(tmp_path)
    edit(data["models"]["m"])
    write_lock(tmp_path, data)
    r = gpux("lock", "--check", cwd=tmp_path, check=False)
    assert r.returncode == 2 and f"gpux.lock: {field_}" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_an_origin_of_both_kinds_reads_back_byte_identical(tmp_path):
    """MLflow's entry-level ids and S3's per-file ones share the one `origin` record of the lock."""
    from tinymodels import write_repo

    from gpuxbuild.project.lockfile import read_lock as load_lock

    write_repo("onnx-shipped", tmp_path / "models" / "m")
    write_manifest(tmp_path, {"m": {"source": "path:./models/m", "task": "text-classification"}})
    gpux("lock", cwd=tmp_path)
    plain = (tmp_path / "gpux.lock").read_text()
    assert "origin" not in plain and load_lock(tmp_path / "gpux.lock").dumps() == plain
    data = read_lock(tmp_path)
    origin = {"run_id": "r1", "version": "3", "files": {"config.json": {"etag": '"e1"', "version_id": "v1"}}}
    data["models"]["m"]["origin"] = origin
    write_lock(tmp_path, data)
    gpux("lock", "--check", cwd=tmp_path)
    lock = load_lock(tmp_path / "gpux.lock")
    assert lock is not None and lock.models["m"].origin is not None
    text = lock.dumps()
    assert yaml.safe_load(text)["models"]["m"]["origin"] == origin
    (tmp_path / "gpux.lock").write_text(text)
    again = load_lock(tmp_path / "gpux.lock")
    assert again is not None and again.dumps() == text


def test_quick_noop_does_not_trust_a_fingerprint_of_a_less_checked_sync(project):
    """A no-op fingerprint taken by an older gpuxbuild (which did not verify entries) of a tampered lock must
    not let the fast path answer "nothing to do"."""
    import hashlib
    import json

    root, _ = project
    data = read_lock(root)
    data["models"]["m"]["options"]["trust_remote_code"] = True
    write_lock(root, data)
    record_path = root / ".gpux" / "models" / ".gpux-sync.json"
    record = json.loads(record_path.read_text())
    record["fast"]["lock"] = hashlib.sha256((root / "gpux.lock").read_bytes()).hexdigest()
    record["fast"].pop("checks", None)
    record_path.write_text(json.dumps(record))
    for args in (("sync",), ("sync", "--frozen")):
        r = gpux(*args, cwd=root, check=False)
        assert r.returncode == 1 and "for m:" in r.stderr, (args, r.stdout, r.stderr)


def test_a_tampered_entry_of_a_removed_model_does_not_block_relocking(tmp_path):
    from tinymodels import write_repo

    write_repo("onnx-shipped", tmp_path / "models" / "m")
    write_manifest(
        tmp_path,
        {
            "m": {"source": "path:./models/m", "task": "text-classification"},
            "gone": {"source": "path:./models/m", "task": "text-classification"},
        },
    )
    gpux("lock", cwd=tmp_path)
    data = read_lock(tmp_path)
    data["models"]["gone"]["options"]["trust_remote_code"] = True
    write_lock(tmp_path, data)
    write_manifest(tmp_path, {"m": {"source": "path:./models/m", "task": "text-classification"}})
    gpux("lock", cwd=tmp_path)
    assert sorted(read_lock(tmp_path)["models"]) == ["m"]
