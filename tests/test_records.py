"""Typed persisted records (issue 14): each reads and writes its JSON file byte for byte as before, the
copies of constants kept for start-up speed equal their originals, and garbage collection takes what is
alive as input."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from helpers import gpux, publish, write_manifest

from gpuxbuild.hashing import canonical_json
from gpuxbuild.store.artifacts import ArtifactManifest, read_manifest
from gpuxbuild.store.refs import ProjectRecord, PulledRecord, Records, read_project_record
from gpuxbuild.sync.record import SyncRecord, read_record

SYNC_RECORD = {
    "version": 1,
    "models": {
        "a": {
            "build_key": "sha256:" + "1" * 64,
            "digest": "sha256:" + "2" * 64,
            "files": {
                "model.onnx": {"sha256": "3" * 64, "size": 12, "mtime_ns": 5, "ctime_ns": 6, "ino": 7},
                "artifact.json": {"sha256": "4" * 64, "size": 3, "mtime_ns": 8, "ctime_ns": 9, "ino": 10},
            },
            "inputs": {"commit": "c" * 40, "options": "sha256:o", "sources": "sha256:s", "task": "fill-mask"},
        }
    },
    "fast": {"lock": "l" * 64, "manifest": None, "tools": ["onnx-1.0.dist-info"], "checks": 2},
}
PROJECT_RECORD = {
    "project": "/p",
    "synced_at": 1700000000,
    "models": {
        "a": {
            "commit": "c" * 40,
            "revision": "main",
            "task": None,
            "size": 10,
            "files": ["3" * 64],
            "artifact": {"digest": None, "build_key": "sha256:" + "1" * 64},
        }
    },
}
PULLED_RECORD = {
    "registry": "huggingface",
    "repo": "org/name",
    "commit": "c" * 40,
    "task": "text-classification",
    "library": "transformers",
    "architecture": None,
    "license": "mit",
    "files": [{"path": "config.json", "sha256": "3" * 64, "size": 10}],
    "size": 10,
    "artifact": {"digest": "sha256:" + "2" * 64, "build_key": "sha256:" + "1" * 64, "path": "/s/artifacts/1"},
}


def test_records_write_what_they_read():
    assert (
        SyncRecord.from_dict(SYNC_RECORD).to_json()
        == (json.dumps(SYNC_RECORD, indent=1, sort_keys=True) + "\n").encode()
    )
    assert (
        ProjectRecord.from_dict(PROJECT_RECORD).to_json()
        == (json.dumps(PROJECT_RECORD, indent=2, sort_keys=True) + "\n").encode()
    )
    assert canonical_json(PulledRecord.from_dict(PULLED_RECORD).as_dict()) == canonical_json(PULLED_RECORD)
    # Optional parts stay absent rather than becoming nulls.
    bare = {k: v for k, v in PULLED_RECORD.items() if k != "artifact"}
    assert PulledRecord.from_dict(bare).as_dict() == bare
    no_memo = {k: v for k, v in SYNC_RECORD.items() if k != "fast"}
    assert SyncRecord.from_dict(no_memo).as_dict() == no_memo


def test_a_damaged_artifact_manifest_lists_no_files():
    manifest = ArtifactManifest.from_dict({"graphs": {"model": "model.onnx"}, "files": [{"path": "x"}]})
    assert manifest.files is None and manifest.graphs == {"model": "model.onnx"}
    with pytest.raises(ValueError, match="lists no files"):
        manifest.listed()


def test_a_damaged_sync_record_reads_as_empty(tmp_path):
    (tmp_path / ".gpux-sync.json").write_text(json.dumps({"version": 1, "models": {"a": {"digest": "x"}}}))
    assert read_record(tmp_path) == SyncRecord()


def test_pulled_record_keeps_the_artifact_of_an_earlier_pull(tmp_path):
    from gpuxbuild.store.objects import Store

    records = Records(Store(tmp_path / "store"))
    built = PulledRecord.from_dict(PULLED_RECORD)
    records.save(built, "main")
    again = records.save(built.replace(artifact=None), "main")
    assert again == built and records.lookup("huggingface", "org/name", None) == built
    assert records.commit_path(built).read_bytes() == canonical_json(PULLED_RECORD)


def test_the_files_sync_writes_round_trip_byte_for_byte(hub, repo_id, tmp_path, gpux_home):
    publish(hub, repo_id, "onnx-shipped")
    write_manifest(tmp_path, {"a": {"source": f"hf:{repo_id}"}})
    gpux("sync", cwd=tmp_path)
    target = tmp_path / ".gpux" / "models"
    assert read_record(target).to_json() == (target / ".gpux-sync.json").read_bytes()
    assert read_manifest(target / "a").to_json() == (target / "a" / "artifact.json").read_bytes()
    (path,) = (gpux_home / "refs" / "projects").glob("*.json")
    assert read_project_record(path).to_json() == path.read_bytes()


def test_copies_kept_for_start_up_speed_equal_their_originals():
    from gpuxbuild.project.lockfile import LOCK_NAME
    from gpuxbuild.project.manifest import MANIFEST_NAME
    from gpuxbuild.project.resolver import LockAction
    from gpuxbuild.store.artifacts import ARTIFACT_MANIFEST
    from gpuxbuild.sync import plan, record

    assert plan.ARTIFACT_MANIFEST == ARTIFACT_MANIFEST
    assert tuple(a for a, _ in record.ACTIONS) == plan.SYNC_ACTIONS == get_args(plan.SyncAction)
    assert (record.LOCK_FILE, record.MANIFEST_FILE) == (LOCK_NAME, MANIFEST_NAME)
    assert set(get_args(LockAction)) == {"added", "updated", "removed", "unchanged"}


def test_garbage_collection_imports_no_higher_layer():
    """store/gc.py takes the live roots as input (gpuxbuild.store.refs.live_roots, passed by the command)."""
    from test_architecture import GRAPH

    core = {"gpuxbuild.errors", "gpuxbuild.hashing", "gpuxbuild.fsutil", "gpuxbuild.records"}
    for module in ("gpuxbuild.store.gc", "gpuxbuild.store.refs", "gpuxbuild.sync.record"):
        above = {m for m in GRAPH[module] if m not in core and not m.startswith("gpuxbuild.store.")}
        assert above == set(), (module, above)
