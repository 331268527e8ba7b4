"""The shared remote cache (docs/remote-cache.md) through the real CLI: homes sharing artifacts and sources
through a remote, verification on download, conditional publishing, remotes that fail."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers import gets, gpux, publish, read_lock, write_manifest


@pytest.fixture
def onnx_repo(hub, repo_id):
    """A repo shipping ONNX (no export, no torch needed to build)."""
    publish(hub, repo_id, "onnx-shipped")
    return repo_id


@pytest.fixture
def remote(tmp_path_factory) -> str:
    """An empty file:// remote."""
    return tmp_path_factory.mktemp("remote").as_uri()


@pytest.fixture
def home(hf_env, tmp_path_factory):
    """Switch to a fresh, empty GPUX_HOME (another machine)."""

    def switch() -> Path:
        path = tmp_path_factory.mktemp("home")
        hf_env(GPUX_HOME=str(path))
        return path

    return switch


def remote_root(url: str) -> Path:
    return Path(url.removeprefix("file://"))


def digest_of(project: Path, name: str) -> str:
    return read_lock(project)["models"][name]["artifact"]["digest"]


def test_two_homes_share_through_the_remote(hub, onnx_repo, tmp_path, remote, home):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    r = gpux("build", "--push", "--remote", remote, cwd=tmp_path)
    assert "pushed a" in r.stdout
    digest = digest_of(tmp_path, "a")
    index = json.loads(next((remote_root(remote) / "artifacts").iterdir()).read_bytes())
    assert sorted((remote_root(remote) / "blobs" / "sha256").iterdir())  # the files, by sha256
    assert {f["sha256"] for f in index["files"]} <= {p.name for p in (remote_root(remote) / "blobs/sha256").iterdir()}

    # Another machine: an empty store; sync takes the artifact from the remote, downloads no source file.
    home()
    hub.reset_log()
    r = gpux("sync", "--locked", "--remote", remote, cwd=tmp_path)
    assert "0 reused, 0 built, 1 from the remote cache" in r.stdout
    assert gets(hub, onnx_repo) == {}
    folder = tmp_path / ".gpux" / "models" / "a"
    assert "sha256:" + hashlib.sha256((folder / "artifact.json").read_bytes()).hexdigest() == digest
    # `build --locked` there passes by digest, building nothing.
    r = gpux("build", "--locked", "--remote", remote, cwd=tmp_path)
    assert "0 built, 1 cached, 0 failed" in r.stdout

    # A second push of the same artifact changes nothing on the remote.
    before = sorted(p.relative_to(remote_root(remote)) for p in remote_root(remote).rglob("*"))
    r = gpux("push", "--remote", remote, cwd=tmp_path)
    assert "present a (already on the remote)" in r.stdout
    assert sorted(p.relative_to(remote_root(remote)) for p in remote_root(remote).rglob("*")) == before


def test_remote_from_manifest_and_environment(hub, onnx_repo, tmp_path, remote, home, hf_env):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    hf_env(GPUX_REMOTE=remote)
    gpux("build", "--push", cwd=tmp_path)
    hf_env(GPUX_REMOTE=None)
    manifest = tmp_path / "gpux.models.yml"
    manifest.write_text(manifest.read_text() + f"cache:\n  remote: [{remote}]\n")
    home()
    r = gpux("build", "--locked", cwd=tmp_path)
    assert "0 built, 0 cached, 1 downloaded, 0 failed" in r.stdout


def test_a_corrupt_remote_object_is_named_and_not_used(hub, onnx_repo, tmp_path, remote, home):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("build", "--push", "--remote", remote, cwd=tmp_path)
    index = json.loads(next((remote_root(remote) / "artifacts").iterdir()).read_bytes())
    graph = next(f for f in index["files"] if f["path"] == "model.onnx")
    blob = remote_root(remote) / "blobs" / "sha256" / graph["sha256"]
    blob.write_bytes(b"\0" + blob.read_bytes()[1:])
    home()
    r = gpux("sync", "--remote", remote, cwd=tmp_path, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"object blobs/sha256/{graph['sha256']} is corrupt" in r.stderr and remote in r.stderr
    assert not (tmp_path / ".gpux" / "models" / "a").exists()
    # The digest gpux.lock records is checked too: a replaced index is refused.
    (remote_root(remote) / "artifacts").joinpath(next((remote_root(remote) / "artifacts").iterdir()).name).chmod(0o644)
    idx = next((remote_root(remote) / "artifacts").iterdir())
    idx.write_bytes(idx.read_bytes().replace(b'"task"', b'"task" ', 1))
    r = gpux("sync", "--remote", remote, cwd=tmp_path, check=False)
    assert r.returncode == 1 and "gpux.lock records" in r.stderr and "is corrupt" in r.stderr


def test_an_unfinished_push_is_not_visible(hub, onnx_repo, tmp_path, remote, home):
    """Blobs without their index (a push stopped before its last step) are never taken for an artifact."""
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("build", "--push", "--remote", remote, cwd=tmp_path)
    for p in (remote_root(remote) / "artifacts").iterdir():
        p.unlink()
    home()
    r = gpux("sync", "--remote", remote, cwd=tmp_path)
    assert "0 reused, 1 built" in r.stdout


def test_remote_down_is_an_error_unless_optional(hub, onnx_repo, tmp_path):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gone = (tmp_path / "no-such-share").as_uri()
    r = gpux("sync", "--remote", gone, cwd=tmp_path, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: model 'a': remote {gone}: no such folder {tmp_path / 'no-such-share'}"]
    assert not (tmp_path / ".gpux").exists()
    r = gpux("sync", "--remote", gone, "--remote-optional", cwd=tmp_path)
    assert "0 reused, 1 built" in r.stdout and "going on without it (optional remote)" in r.stderr


def test_a_bad_remote_url_is_a_usage_error(onnx_repo, tmp_path, hf_env):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    hf_env(GPUX_REMOTE="ftp://user:secret@host/x")
    r = gpux("build", cwd=tmp_path, check=False)
    assert r.returncode == 2 and "GPUX_REMOTE: 'ftp://***@host/x' is not a remote URL" in r.stderr
    assert "secret" not in r.stderr + r.stdout


def test_push_sources_then_sync_with_the_hub_stopped(hub, onnx_repo, tmp_path, remote, home):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("build", cwd=tmp_path)
    r = gpux("push", "--sources", "--remote", remote, cwd=tmp_path)
    assert "pushed a" in r.stdout and "already there" in r.stdout
    # Only the sources, not the artifact: the other machine builds from sources fetched from the remote.
    for p in (remote_root(remote) / "artifacts").iterdir():
        p.unlink()
    home()
    hub.stop()
    r = gpux("sync", "--locked", "--remote", remote, cwd=tmp_path)
    assert "0 reused, 1 built" in r.stdout
