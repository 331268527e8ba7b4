"""The shared remote cache (docs/remote-cache.md) through the real CLI: homes sharing artifacts and sources
through a remote, verification on download, conditional publishing, remotes that fail."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import gets, gpux, publish, read_lock, write_manifest
from processes import free_port, missing_server

REPO = Path(__file__).resolve().parent.parent


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
    assert f"a: downloading {len(index['files'])} files (" in r.stderr and f"MB) from {remote}" in r.stderr
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
    r = gpux("cache", "remote", "ls", "--remote", remote, cwd=tmp_path)
    assert r.stdout.startswith(f"a  text-classification  {digest_of(tmp_path, 'a')[:19]}  ")
    assert r.stdout.splitlines()[-1] == "1 artifact"
    assert gpux("cache", "remote", "verify", "--remote", remote, cwd=tmp_path).stdout.endswith(": 0 problems\n")
    blob.write_bytes(b"\0" + blob.read_bytes()[1:])
    r = gpux("cache", "remote", "verify", "--remote", remote, cwd=tmp_path, check=False)
    assert (
        r.returncode == 1 and f"corrupt remote {remote}: blobs/sha256/{graph['sha256']}: content hashes to" in r.stdout
    )
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
    # Found while planning, before any work: one line naming the remote.
    assert errors == [f"error: remote {gone}: no such folder {tmp_path / 'no-such-share'}"]
    assert not (tmp_path / ".gpux").exists()
    r = gpux("sync", "--remote", gone, "--remote-optional", cwd=tmp_path)
    assert "0 reused, 1 built" in r.stdout and "going on without it (optional remote)" in r.stderr
    r = gpux("build", "--push", "--remote", gone, "--remote-optional", cwd=tmp_path)
    assert "skipped a (the remote failed; see the warning)" in r.stdout


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
    # A store whose artifact came ready-made has no sources to mirror: said, nothing pushed.
    home()
    hub.start()
    gpux("build", "--push", "--remote", remote, cwd=tmp_path)
    home()
    assert "1 from the remote cache" in gpux("sync", "--remote", remote, "--target", "other", cwd=tmp_path).stdout
    r = gpux("push", "--sources", "--remote", remote, cwd=tmp_path, check=False)
    assert r.returncode == 1 and "--sources: source files of a are not in this store" in r.stderr


# ------------------------------------------------------------------------------------------- S3 (SeaweedFS)


@pytest.fixture
def s3remote(s3server, hf_env, request) -> str:
    """An empty s3:// remote (its own prefix in the session's bucket), with the AWS_* variables set."""
    from s3server import BUCKET

    hf_env(**s3server.env())
    return f"s3://{BUCKET}/{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"


def s3_objects(s3server, url: str) -> dict[str, bytes]:
    import obstore
    from s3server import BUCKET

    store = s3server.client()
    prefix = url.removeprefix(f"s3://{BUCKET}/")
    out = {}
    for batch in obstore.list(store, prefix=prefix + "/"):
        for meta in batch:
            out[meta["path"][len(prefix) + 1 :]] = bytes(obstore.get(store, meta["path"]).bytes())
    return out, store, prefix


def test_two_homes_share_through_s3(hub, onnx_repo, tmp_path, s3server, s3remote, home):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    r = gpux("build", "--push", "--remote", s3remote, cwd=tmp_path)
    assert "pushed a" in r.stdout
    objects, _, _ = s3_objects(s3server, s3remote)
    index = next(v for k, v in objects.items() if k.startswith("artifacts/"))
    assert "sha256:" + hashlib.sha256(index).hexdigest() == digest_of(tmp_path, "a")
    assert {f"blobs/sha256/{f['sha256']}" for f in json.loads(index)["files"]} <= set(objects)

    home()
    hub.reset_log()
    r = gpux("sync", "--locked", "--remote", s3remote, cwd=tmp_path)
    assert "0 reused, 0 built, 1 from the remote cache" in r.stdout
    assert gets(hub, onnx_repo) == {}
    # Two publishers of one artifact: the second changes nothing.
    r = gpux("push", "--remote", s3remote, cwd=tmp_path)
    assert "present a (already on the remote)" in r.stdout
    assert s3_objects(s3server, s3remote)[0] == objects


def test_a_read_only_consumer_syncs_but_cannot_push(hub, onnx_repo, tmp_path, s3server, s3remote, home, hf_env):
    from s3server import READER_KEY, READER_SECRET

    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("build", "--push", "--remote", s3remote, cwd=tmp_path)
    home()
    hf_env(AWS_ACCESS_KEY_ID=READER_KEY, AWS_SECRET_ACCESS_KEY=READER_SECRET, GPUX_HTTP_RETRIES="0")
    r = gpux("sync", "--locked", "--remote", s3remote, cwd=tmp_path)
    assert "0 reused, 0 built, 1 from the remote cache" in r.stdout
    manifest = tmp_path / "gpux.models.yml"
    manifest.write_text(manifest.read_text().replace("a:", "b:"))  # another model: nothing of it on the remote
    r = gpux("sync", "--push", "--remote", s3remote, cwd=tmp_path, check=False)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 1 and len(errors) == 1 and "403 Forbidden" in errors[0] and s3remote in errors[0]
    assert READER_SECRET not in r.stdout + r.stderr


def test_s3_credentials_from_a_profile_file(hub, onnx_repo, tmp_path, s3server, s3remote, hf_env):
    from s3server import ACCESS_KEY, SECRET_KEY

    creds = tmp_path / "aws-credentials"
    creds.write_text(f"[ci]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    hf_env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None, AWS_SHARED_CREDENTIALS_FILE=str(creds), AWS_PROFILE="ci")
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    assert "pushed a" in gpux("build", "--push", "--remote", s3remote, cwd=tmp_path).stdout


def test_s3_corrupt_object_and_wrong_credentials(hub, onnx_repo, tmp_path, s3server, s3remote, home, hf_env):
    import obstore

    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("build", "--push", "--remote", s3remote, cwd=tmp_path)
    objects, store, prefix = s3_objects(s3server, s3remote)
    index = json.loads(next(v for k, v in objects.items() if k.startswith("artifacts/")))
    blob = f"blobs/sha256/{next(f['sha256'] for f in index['files'] if f['path'] == 'model.onnx')}"
    obstore.put(store, f"{prefix}/{blob}", b"\0" + objects[blob][1:])
    r = gpux("cache", "remote", "verify", "--remote", s3remote, cwd=tmp_path, check=False)
    assert r.returncode == 1 and f"corrupt remote {s3remote}: {blob}: content hashes to" in r.stdout
    assert gpux("cache", "remote", "ls", "--remote", s3remote, cwd=tmp_path).stdout.startswith("a  ")
    home()
    r = gpux("sync", "--remote", s3remote, cwd=tmp_path, check=False)
    assert r.returncode == 1 and f"remote {s3remote}: object {blob} is corrupt" in r.stderr
    assert not (tmp_path / ".gpux" / "models" / "a").exists()

    secret = "wrong-secret-value-7c1f"
    hf_env(AWS_SECRET_ACCESS_KEY=secret, GPUX_HTTP_RETRIES="0")
    r = gpux("sync", "--remote", s3remote, cwd=tmp_path, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and s3remote in errors[0] and "403" in errors[0], r.stderr
    assert "AWS_SECRET_ACCESS_KEY" in r.stderr  # the hint says where credentials come from
    assert secret not in r.stdout + r.stderr
    r = gpux("sync", "--remote", s3remote, "--remote-optional", cwd=tmp_path)
    assert "0 reused, 1 built" in r.stdout and "optional remote" in r.stderr and secret not in r.stderr


def test_two_shards_fill_the_remote_and_a_third_home_builds_nothing(hub, repo_id, tmp_path, remote, home):
    for i, kind in enumerate(("onnx-shipped", "onnx-shipped", "onnx-shipped")):
        publish(hub, f"{repo_id}-{i}", kind, seed=i)
    write_manifest(tmp_path, {f"m{i}": {"source": f"hf:{repo_id}-{i}"} for i in range(3)})
    gpux("lock", cwd=tmp_path)
    lock = (tmp_path / "gpux.lock").read_bytes()
    shares = []
    for i in (1, 2):
        home()
        (tmp_path / "gpux.lock").write_bytes(lock)  # each runner starts from the committed lock
        r = gpux("build", "--shard", f"{i}/2", "--push", "--remote", remote, "--json", cwd=tmp_path)
        shares.append(sorted(json.loads(r.stdout)["pushed"]))
    assert sorted(shares[0] + shares[1]) == ["m0", "m1", "m2"] and shares[0] and shares[1]
    home()
    (tmp_path / "gpux.lock").write_bytes(lock)
    r = gpux("sync", "--remote", remote, cwd=tmp_path)
    assert "0 reused, 0 built, 3 from the remote cache" in r.stdout


def test_a_bad_shard_is_a_usage_error(onnx_repo, tmp_path):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    r = gpux("build", "--shard", "3/2", cwd=tmp_path, check=False)
    assert r.returncode == 2 and "--shard '3/2': expected I/N with 1 <= I <= N" in r.stderr


# ------------------------------------------------------------------------------- OCI (distribution registry)


def test_two_homes_share_through_an_oci_registry(hub, onnx_repo, tmp_path, ociserver, home, hf_env):
    import requests

    repo = f"gpux/{uuid.uuid4().hex[:12]}"
    remote = f"oci://{ociserver.host}/{repo}"
    hf_env(DOCKER_CONFIG=str(tmp_path / "no-docker-config"))
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    r = gpux("build", "--push", "--remote", remote, cwd=tmp_path)
    assert "pushed a" in r.stdout
    digest = digest_of(tmp_path, "a")
    key = read_lock(tmp_path)["models"]["a"]["artifact"]["build_key"].removeprefix("sha256:")

    # An ordinary OCI artifact: tagged by build key, artifactType, one layer per file titled with its path.
    base = f"http://{ociserver.host}/v2/{repo}"
    assert requests.get(f"{base}/tags/list", timeout=5).json()["tags"] == [key]
    manifest = requests.get(
        f"{base}/manifests/{key}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=5
    ).json()
    assert manifest["artifactType"] == "application/vnd.gpuxbuild.artifact.v1"
    titles = {layer["annotations"]["org.opencontainers.image.title"]: layer["digest"] for layer in manifest["layers"]}
    index = requests.get(f"{base}/blobs/{titles['artifact.json']}", timeout=5).content
    assert "sha256:" + hashlib.sha256(index).hexdigest() == digest
    assert {f["path"] for f in json.loads(index)["files"]} | {"artifact.json", "provenance.json"} == set(titles)

    home()
    hub.reset_log()
    r = gpux("sync", "--locked", "--remote", remote, cwd=tmp_path)
    assert "0 reused, 0 built, 1 from the remote cache" in r.stdout
    assert gets(hub, onnx_repo) == {}
    r = gpux("push", "--remote", remote, cwd=tmp_path)
    assert "present a (already on the remote)" in r.stdout
    assert gpux("cache", "remote", "ls", "--remote", remote, cwd=tmp_path).stdout.startswith("a  ")
    assert gpux("cache", "remote", "verify", "--remote", remote, cwd=tmp_path).stdout.endswith(": 0 problems\n")


def test_oci_registry_down(onnx_repo, tmp_path, ociserver, hf_env):
    hf_env(GPUX_HTTP_RETRIES="0")  # a refused connection is retried otherwise (1 s, 2 s, 4 s)
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    remote = f"oci://127.0.0.1:{free_port()}/gpux/x"
    r = gpux("sync", "--remote", remote, cwd=tmp_path, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"remote {remote}: " in r.stderr and "connection refused or unreachable" in r.stderr
    r = gpux("sync", "--remote", remote, "--remote-optional", cwd=tmp_path)
    assert "0 reused, 1 built" in r.stdout


# ------------------------------------------------------------------------ a consumer without the convert extra


@pytest.fixture(scope="session")
def consumer(tmp_path_factory) -> Path:
    from consumer_env import consumer_python

    return consumer_python(tmp_path_factory.getbasetemp() / "consumer-venv")


@pytest.mark.slow
def test_a_consumer_without_the_convert_extra_syncs_and_passes_build_locked(hub, repo_id, tmp_path, remote, consumer):
    publish(hub, repo_id, "bert")  # PyTorch weights: only an export makes its ONNX
    write_manifest(tmp_path, {"a": {"source": f"hf:{repo_id}"}})
    gpux("build", "--push", "--remote", remote, cwd=tmp_path)
    locked = read_lock(tmp_path)["models"]["a"]["artifact"]
    assert locked["toolchain"]["torch"] != "absent"

    env = {**os.environ, "GPUX_HOME": str(tmp_path / "consumer-home"), "PYTHONPATH": str(REPO)}
    no_torch = subprocess.run([consumer, "-c", "import torch"], env=env, capture_output=True)
    assert no_torch.returncode == 1 and b"No module named 'torch'" in no_torch.stderr
    hub.reset_log()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [consumer, "-m", "gpuxbuild", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    r = run("sync", "--locked", "--remote", remote)
    assert r.returncode == 0, r.stderr
    assert "0 reused, 0 built, 1 from the remote cache" in r.stdout
    assert gets(hub, repo_id) == {}
    placed = tmp_path / ".gpux" / "models" / "a" / "artifact.json"
    assert "sha256:" + hashlib.sha256(placed.read_bytes()).hexdigest() == locked["digest"]
    r = run("build", "--locked", "--remote", remote)
    assert r.returncode == 0 and "0 built, 1 cached, 0 failed" in r.stdout, r.stdout + r.stderr
    # Without the remote, the same consumer with an empty store cannot build it: it names the extra it lacks.
    env["GPUX_HOME"] = str(tmp_path / "another-home")
    r = run("sync", "--locked", "--target", str(tmp_path / "elsewhere"))
    assert r.returncode == 1 and "'convert' extra" in r.stderr, r.stderr


@pytest.mark.parametrize("kind", ["file", "s3"])
def test_two_concurrent_pushes_of_one_artifact(hub, onnx_repo, tmp_path, kind, request, tmp_path_factory):
    """Two processes publish the same artifact at once: one creates the index, the other finds it; one copy."""
    url = request.getfixturevalue("s3remote") if kind == "s3" else tmp_path_factory.mktemp("remote").as_uri()
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("build", cwd=tmp_path)
    cmd = [sys.executable, "-m", "gpuxbuild", "push", "--remote", url, "--json"]
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in (1, 2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    statuses = sorted(json.loads(out)["artifacts"]["a"] for out, _ in outs)
    assert statuses == ["present", "pushed"]
    assert not any("already holds artifact" in err for _, err in outs)  # the same bytes: no conflict


def test_manifest_optional_remote_warns_and_builds(hub, onnx_repo, tmp_path):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    manifest = tmp_path / "gpux.models.yml"
    gone = (tmp_path / "gone").as_uri()
    manifest.write_text(manifest.read_text() + f"cache:\n  remote: {gone}\n  optional: true\n")
    r = gpux("build", cwd=tmp_path)
    assert "1 built" in r.stdout and f"warning: remote {gone}: no such folder" in r.stderr


def _padded_onnx_repo(mb: int) -> dict[str, bytes]:
    """The tiny ONNX-shipping repo with an `mb` MB initializer in external data (as benchmarks/bench_sync.py)."""
    import tempfile

    import numpy as np
    import onnx
    from onnx import numpy_helper
    from tinymodels import make_repo

    files = make_repo("onnx-shipped")
    model = onnx.load_from_string(files["onnx/model.onnx"])
    model.graph.initializer.append(numpy_helper.from_array(np.ones(mb << 18, dtype=np.float32), "padding"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save_model(model, str(path), save_as_external_data=True, location="model.onnx_data", size_threshold=1024)
        files["onnx/model.onnx"] = path.read_bytes()
        files["onnx/model.onnx_data"] = (Path(tmp) / "model.onnx_data").read_bytes()
    return files


@pytest.mark.slow
def test_a_push_killed_midway_leaves_no_visible_artifact(hub, repo_id, tmp_path, remote, home):
    hub.create_repo(repo_id)
    hub.commit(repo_id, _padded_onnx_repo(256), message="big")
    write_manifest(tmp_path, {"a": {"source": f"hf:{repo_id}"}})
    gpux("build", cwd=tmp_path)
    root = remote_root(remote)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpuxbuild", "push", "--remote", remote],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill it while a blob is being written. The push runs in short slices and is looked at while stopped
    # between them, so it is caught mid-blob however busy the machine is (polling alone could miss the window).
    while proc.poll() is None and not any(p.stat().st_size > 1 << 20 for p in root.glob(".tmp/*")):
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.005)
        proc.send_signal(signal.SIGSTOP)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the push finished before it could be killed"
    assert not (root / "artifacts").exists() or not any((root / "artifacts").iterdir())

    home()  # another machine finds nothing to take, and builds
    r = gpux("sync", "--remote", remote, cwd=tmp_path)
    assert "0 reused, 1 built" in r.stdout
    # A push again completes; a third machine takes it, intact.
    assert "pushed a" in gpux("push", "--remote", remote, cwd=tmp_path).stdout
    home()
    r = gpux("sync", "--remote", remote, "--target", str(tmp_path / "third"), cwd=tmp_path)
    assert "1 from the remote cache" in r.stdout
    assert gpux("cache", "remote", "verify", "--remote", remote, cwd=tmp_path).stdout.endswith(": 0 problems\n")


def test_run_takes_a_locked_model_from_the_remote(hub, onnx_repo, tmp_path, remote, home, hf_env):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("build", "--push", "--remote", remote, cwd=tmp_path)
    home()
    hf_env(GPUX_REMOTE=remote)
    hub.reset_log()
    r = gpux("run", "a", "a fine day", cwd=tmp_path)
    assert "building" not in r.stderr
    assert gets(hub, onnx_repo) == {}  # no source file downloaded: the artifact came from the remote


def test_oci_credentials_from_the_docker_config_never_shown(hub, onnx_repo, tmp_path, ociauth, hf_env, home):
    import base64

    remote = f"oci://{ociauth.host}/gpux/{uuid.uuid4().hex[:12]}"
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})

    def docker_config(user: str, password: str) -> None:
        folder = tmp_path / f"docker-{user}-{len(password)}"
        folder.mkdir(exist_ok=True)
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        (folder / "config.json").write_text(json.dumps({"auths": {ociauth.host: {"auth": auth}}}))
        hf_env(DOCKER_CONFIG=str(folder))

    docker_config("ci", "registry-pass-31f9")
    assert "pushed a" in gpux("build", "--push", "--remote", remote, cwd=tmp_path).stdout
    home()
    docker_config("ci", "wrong-pass-8d2e")
    r = gpux("sync", "--remote", remote, cwd=tmp_path, check=False)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 1 and len(errors) == 1 and remote in errors[0] and "401 Unauthorized" in errors[0]
    assert "docker login" in r.stderr
    assert "wrong-pass-8d2e" not in r.stdout + r.stderr
    docker_config("ci", "registry-pass-31f9")
    r = gpux("sync", "--remote", remote, cwd=tmp_path)
    assert "0 reused, 0 built, 1 from the remote cache" in r.stdout


# ---------------------------------------------------------------------------- provenance travels with the artifact


@pytest.fixture
def any_remote(request, tmp_path_factory, hf_env):
    """An empty remote of the kind the test is parametrized with (`kind`: file, s3 or oci)."""

    def make(kind: str) -> str:
        if kind == "s3":
            return request.getfixturevalue("s3remote")
        if kind == "oci":
            server = request.getfixturevalue("ociserver")
            hf_env(DOCKER_CONFIG=str(tmp_path_factory.mktemp("no-docker-config")))
            return f"oci://{server.host}/gpux/{uuid.uuid4().hex[:12]}"
        return tmp_path_factory.mktemp("remote").as_uri()

    return make


def _signing_key(folder: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / "build.pem", folder / "build.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def _remote_provenance(kind: str, url: str, digest: str, request) -> dict[str, bytes]:
    """The provenance files the remote holds for the artifact `digest`, read with the backend's own client."""
    hexd = digest.removeprefix("sha256:")
    names = ("provenance.json", "provenance.dsse.json")
    if kind == "file":
        folder = remote_root(url) / "attestations" / hexd
        return {n: (folder / n).read_bytes() for n in names if (folder / n).is_file()}
    if kind == "s3":
        objects, _, _ = s3_objects(request.getfixturevalue("s3server"), url)
        return {n: objects[f"attestations/{hexd}/{n}"] for n in names if f"attestations/{hexd}/{n}" in objects}
    import requests

    host, repo = url.removeprefix("oci://").split("/", 1)
    base = f"http://{host}/v2/{repo}"
    tag = requests.get(f"{base}/tags/list", timeout=5).json()["tags"][0]
    manifest = requests.get(
        f"{base}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=5
    ).json()
    layers = {x["annotations"]["org.opencontainers.image.title"]: x for x in manifest["layers"]}
    assert layers["provenance.json"]["mediaType"] == "application/vnd.in-toto+json"  # an ordinary OCI layer
    return {n: requests.get(f"{base}/blobs/{layers[n]['digest']}", timeout=5).content for n in names if n in layers}


@pytest.mark.parametrize("kind", ["file", "s3", "oci"])
def test_provenance_travels_with_the_artifact(hub, onnx_repo, tmp_path, home, kind, any_remote, request):
    """A signed build pushed to the remote; a fresh home syncs it and `gpux verify` passes there, signature too."""
    url = any_remote(kind)
    private, public = _signing_key(tmp_path)
    project = tmp_path / "p"
    write_manifest(project, {"a": {"source": f"hf:{onnx_repo}"}})
    assert "pushed a" in gpux("build", "--sign-key", str(private), "--push", "--remote", url, cwd=project).stdout
    digest = digest_of(project, "a")
    stored = (
        Path(os.environ["GPUX_HOME"]) / "artifacts" / read_lock(project)["models"]["a"]["artifact"]["build_key"][7:]
    )
    held = _remote_provenance(kind, url, digest, request)
    assert held == {n: (stored / n).read_bytes() for n in ("provenance.json", "provenance.dsse.json")}

    home()
    r = gpux("sync", "--locked", "--remote", url, cwd=project)
    assert "0 reused, 0 built, 1 from the remote cache" in r.stdout  # --locked: the artifact digest is unchanged
    r = gpux("verify", "a", "--key", str(public), cwd=project)
    assert r.stdout.startswith(f"ok a {digest}\n") and "provenance signature verified" in r.stdout
    assert gpux("verify", str(project / ".gpux" / "models" / "a"), cwd=project).stdout.startswith(f"ok a {digest}\n")
    assert gpux("cache", "verify", cwd=project).returncode == 0
    # Pushing it again from this home changes nothing on the remote.
    assert "present a (already on the remote)" in gpux("push", "--remote", url, cwd=project).stdout
    assert _remote_provenance(kind, url, digest, request) == held


def test_a_corrupt_remote_provenance_is_refused(hub, onnx_repo, tmp_path, remote, home):
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("build", "--push", "--remote", remote, cwd=tmp_path)
    digest = digest_of(tmp_path, "a")
    prov = remote_root(remote) / "attestations" / digest.removeprefix("sha256:") / "provenance.json"
    good = prov.read_bytes()
    doc = json.loads(good)
    doc["subject"][0]["digest"]["sha256"] = "0" * 64
    prov.chmod(0o644)
    prov.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    r = gpux("cache", "remote", "verify", "--remote", remote, cwd=tmp_path, check=False)
    index = "artifacts/" + read_lock(tmp_path)["models"]["a"]["artifact"]["build_key"].removeprefix("sha256:") + ".json"
    assert r.returncode == 1 and (
        f"corrupt remote {remote}: {index}: provenance.json: subject[0].digest.sha256 does not match artifact.json"
        in r.stdout
    )
    home()
    r = gpux("sync", "--remote", remote, cwd=tmp_path, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"remote {remote}: the provenance of artifact {digest} (a) is corrupt" in errors[0]
    assert "provenance.json: subject[0].digest.sha256 does not match artifact.json; not used" in errors[0]
    assert not (tmp_path / ".gpux" / "models" / "a").exists()

    # A signature that signs another statement is refused too.
    prov.write_bytes(good)
    (prov.parent / "provenance.dsse.json").write_text(
        json.dumps({"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": []})
    )
    r = gpux("sync", "--remote", remote, cwd=tmp_path, check=False)
    assert r.returncode == 1 and "provenance.dsse.json: signs another statement than provenance.json" in r.stderr


def test_an_artifact_pushed_without_provenance_still_syncs(hub, onnx_repo, tmp_path, remote, home):
    """A remote filled by a gpuxbuild before provenance travelled: the artifact is used; `gpux verify` says what
    is missing, and `gpux build` writes the provenance locally."""
    import shutil

    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("build", "--push", "--remote", remote, cwd=tmp_path)
    attestations = remote_root(remote) / "attestations"
    shutil.rmtree(attestations)
    home()
    assert "1 from the remote cache" in gpux("sync", "--remote", remote, cwd=tmp_path).stdout
    r = gpux("verify", "a", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "no provenance.json" in r.stderr
    gpux("build", cwd=tmp_path)
    assert gpux("verify", "a", cwd=tmp_path).stdout.startswith("ok a ")
    # A push of the artifact the remote already holds adds the provenance it lacks.
    assert "present a (already on the remote)" in gpux("push", "--remote", remote, cwd=tmp_path).stdout
    digest = digest_of(tmp_path, "a").removeprefix("sha256:")
    assert (attestations / digest / "provenance.json").is_file()


# ------------------------------------------------------------------------------- the plan consults the remote


@pytest.mark.parametrize("kind", ["file", "oci"])
def test_sync_dry_run_says_which_models_come_from_the_remote(hub, repo_id, tmp_path, home, kind, request):
    """The plan, as data, names per model the remote it would be fetched from, or says it would be built."""
    if kind == "oci":
        url = f"oci://{request.getfixturevalue('ociserver').host}/gpux/{uuid.uuid4().hex[:12]}"
    else:
        url = request.getfixturevalue("remote")
    for i in range(2):
        publish(hub, f"{repo_id}-{i}", "onnx-shipped", seed=i)
    write_manifest(tmp_path, {"on-remote": {"source": f"hf:{repo_id}-0"}})
    gpux("build", "--push", "--remote", url, cwd=tmp_path)
    write_manifest(tmp_path, {"on-remote": {"source": f"hf:{repo_id}-0"}, "new": {"source": f"hf:{repo_id}-1"}})
    gpux("lock", cwd=tmp_path)
    home()
    lock = (tmp_path / "gpux.lock").read_bytes()
    plan = json.loads(gpux("sync", "--dry-run", "--json", "--remote", url, cwd=tmp_path).stdout)
    acts = {m["name"]: m for m in plan["models"]}
    assert (acts["on-remote"]["artifact"], acts["on-remote"]["remote"]) == ("remote", url)
    assert acts["new"]["artifact"] == "build" and "remote" not in acts["new"]
    r = gpux("sync", "--dry-run", "--remote", url, cwd=tmp_path)
    assert f" + on-remote {acts['on-remote']['digest'][7:19]} (new in lock) (from {url})" in r.stdout
    assert " + new (new in lock) (to build)" in r.stdout
    # Nothing changed, nothing downloaded; without a remote the plan is as it always was.
    assert (tmp_path / "gpux.lock").read_bytes() == lock and not (tmp_path / ".gpux" / "models").exists()
    plain = json.loads(gpux("sync", "--dry-run", "--json", cwd=tmp_path).stdout)
    assert [m["artifact"] for m in plain["models"]] == ["build", "build"]
    assert all("remote" not in m for m in plain["models"])
    # The real sync does what the plan said.
    r = gpux("sync", "--remote", url, cwd=tmp_path)
    assert "0 reused, 1 built, 1 from the remote cache" in r.stdout


# ------------------------------------------------------------------------- large files: in parts, resumed


@pytest.mark.parametrize("kind", ["s3", "oci"])
def test_large_files_go_up_in_parts_and_a_cut_off_download_resumes(hub, repo_id, tmp_path, home, hf_env, kind, request):
    """A file larger than GPUX_REMOTE_PART_SIZE goes up in several parts (an S3 multipart upload, an OCI chunked
    upload); a download that a killed process left half-done resumes from its partial with a ranged read."""
    part = 5 << 20  # the least part S3 (and SeaweedFS) takes
    hf_env(GPUX_REMOTE_PART_SIZE=str(part))
    if kind == "s3":
        url = request.getfixturevalue("s3remote")
    else:
        server = request.getfixturevalue("ociserver")
        repo = f"gpux/{uuid.uuid4().hex[:12]}"
        url = f"oci://{server.host}/{repo}"
    hub.create_repo(repo_id)
    hub.commit(repo_id, _padded_onnx_repo(11), message="11 MB of weights")
    write_manifest(tmp_path, {"a": {"source": f"hf:{repo_id}"}})
    assert "pushed a" in gpux("build", "--push", "--remote", url, cwd=tmp_path).stdout
    digest = digest_of(tmp_path, "a")
    gpux("sync", cwd=tmp_path)
    placed = tmp_path / ".gpux" / "models" / "a" / "model.onnx_data"
    data = placed.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert len(data) > 2 * part

    if kind == "s3":  # a multipart upload's ETag counts its parts
        import obstore
        from s3server import BUCKET

        store, key = (
            request.getfixturevalue("s3server").client(),
            f"{url.removeprefix(f's3://{BUCKET}/')}/blobs/sha256/{sha}",
        )
        assert obstore.head(store, key)["e_tag"].strip('"').endswith("-3")
    else:  # POST, a PATCH per part, then PUT ?digest=
        log = (server.root / "registry.log").read_text().splitlines()
        patches = [line for line in log if f'"PATCH /v2/{repo}/blobs/uploads/' in line]
        assert len(patches) == 3, patches
        assert any(f'"PUT /v2/{repo}/blobs/uploads/' in line and f"digest=sha256:{sha}" in line for line in log)

    # Another machine, where a killed sync left the first half of the file; the remote's copy of that half is
    # then damaged, so only a download that resumes after the half it holds can give the right bytes.
    new_home = home()
    (new_home / "tmp").mkdir(parents=True)
    (new_home / "tmp" / f"{sha}.partial").write_bytes(data[: len(data) // 2])
    damaged = bytes([data[0] ^ 0xFF]) + data[1:]
    if kind == "s3":
        obstore.put(store, key, damaged)
    else:
        (server.root / "data/docker/registry/v2/blobs/sha256" / sha[:2] / sha / "data").write_bytes(damaged)
    r = gpux("sync", "--remote", url, "--target", str(tmp_path / "second"), cwd=tmp_path)
    assert "1 from the remote cache" in r.stdout
    second = tmp_path / "second" / "a"
    assert "sha256:" + hashlib.sha256((second / "artifact.json").read_bytes()).hexdigest() == digest
    assert hashlib.sha256((second / "model.onnx_data").read_bytes()).hexdigest() == sha
    assert not list((new_home / "tmp").glob("*.partial"))  # the partial became the file: nothing left behind
    if kind == "oci":
        gets_ = [
            line
            for line in (server.root / "registry.log").read_text().splitlines()
            if f"GET /v2/{repo}/blobs/sha256:{sha}" in line
        ]
        assert '" 206 ' in gets_[-1]  # a ranged read
    # Without a partial, the damaged copy is found out and not used.
    home()
    r = gpux("sync", "--remote", url, "--target", str(tmp_path / "elsewhere"), cwd=tmp_path, check=False)
    assert r.returncode == 1 and f"object blobs/sha256/{sha} is corrupt" in r.stderr


def test_transfers_show_byte_progress_on_a_terminal_only(hub, repo_id, tmp_path, remote, home, hf_env):
    from helpers import gpux_tty

    hub.create_repo(repo_id)
    hub.commit(repo_id, _padded_onnx_repo(4), message="4 MB of weights")
    write_manifest(tmp_path, {"a": {"source": f"hf:{repo_id}"}})
    gpux("build", cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR", "COLUMNS")}
    r = gpux_tty("push", "--remote", remote, cwd=tmp_path, env=env)
    assert r.returncode == 0 and "pushed a" in r.output
    assert "a/model.onnx_data" in r.output and "total" in r.output  # a bar per file and one for all, in bytes
    home()
    env["GPUX_HOME"] = os.environ["GPUX_HOME"]
    r = gpux_tty("sync", "--remote", remote, cwd=tmp_path, env=env)
    assert r.returncode == 0 and "a/model.onnx_data" in r.output and " MB" in r.output
    # Piped, or with --json: no progress at all.
    home()
    r = gpux("sync", "--remote", remote, "--target", str(tmp_path / "piped"), cwd=tmp_path)
    assert "a/model.onnx_data" not in r.stdout + r.stderr and "total" not in r.stderr


# ------------------------------------------------------------------------------------------- pulled models


def test_push_a_pulled_model_and_pull_it_elsewhere_without_converting(hub, onnx_repo, tmp_path, remote, home, hf_env):
    hf_env(GPUX_REMOTE=None)
    first = json.loads(gpux("pull", onnx_repo, "--json", cwd=tmp_path).stdout)["build"]
    assert first["status"] == "built"
    r = gpux("push", onnx_repo, "--remote", remote, cwd=tmp_path)
    assert f"pushed {onnx_repo}" in r.stdout
    assert "present" in gpux("push", f"hf:{onnx_repo}", "--remote", remote, cwd=tmp_path).stdout  # any pull id

    # Another machine with the same remote: pull takes the artifact from it, builds nothing, same bytes.
    home()
    hf_env(GPUX_REMOTE=remote)
    second = json.loads(gpux("pull", onnx_repo, "--json", cwd=tmp_path).stdout)["build"]
    assert second["status"] == "downloaded" and second["digest"] == first["digest"]

    # Not pulled, or pulled without a build: one line naming it.
    r = gpux("push", "org/never-pulled", "--remote", remote, cwd=tmp_path, check=False)
    assert r.returncode == 1 and "no model 'org/never-pulled' in gpux.lock, and no pulled model" in r.stderr
    home()
    gpux("pull", onnx_repo, "--no-build", cwd=tmp_path)
    r = gpux("push", onnx_repo, "--remote", remote, cwd=tmp_path, check=False)
    assert r.returncode == 1 and f"not built here: {onnx_repo}" in r.stderr


def test_an_oci_artifact_is_listed_and_pulled_by_the_oras_client(hub, onnx_repo, tmp_path, ociserver, hf_env):
    """A standard OCI client (the oras Python SDK) lists the pushed tags and pulls the artifact's files intact."""
    import oras.client as oras_client  # the test extra

    repo = f"gpux/{uuid.uuid4().hex[:12]}"
    hf_env(DOCKER_CONFIG=str(tmp_path / "no-docker-config"))
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("build", "--push", "--remote", f"oci://{ociserver.host}/{repo}", cwd=tmp_path)
    key = read_lock(tmp_path)["models"]["a"]["artifact"]["build_key"].removeprefix("sha256:")

    client = oras_client.OrasClient(hostname=ociserver.host, insecure=True)
    assert client.get_tags(f"{ociserver.host}/{repo}") == [key]
    out = tmp_path / "pulled"
    got = client.pull(target=f"{ociserver.host}/{repo}:{key}", outdir=str(out))
    index = (out / "artifact.json").read_bytes()
    assert "sha256:" + hashlib.sha256(index).hexdigest() == digest_of(tmp_path, "a")
    files = json.loads(index)["files"]
    assert sorted(Path(p).relative_to(out).as_posix() for p in got) == sorted(
        [f["path"] for f in files] + ["artifact.json", "provenance.json"]
    )
    assert json.loads((out / "provenance.json").read_bytes())["subject"]
    for f in files:
        assert hashlib.sha256((out / f["path"]).read_bytes()).hexdigest() == f["sha256"], f["path"]


def test_an_oci_artifact_is_listed_and_copied_by_skopeo(hub, onnx_repo, tmp_path, ociserver, hf_env):
    """skopeo (Debian's package) lists the tags and copies the artifact: each layer is a file, by its digest."""
    import shutil

    if shutil.which("skopeo") is None:
        missing_server("skopeo (Debian package) is not installed: run scripts/setup.sh")
    repo = f"gpux/{uuid.uuid4().hex[:12]}"
    hf_env(DOCKER_CONFIG=str(tmp_path / "no-docker-config"))
    write_manifest(tmp_path, {"a": {"source": f"hf:{onnx_repo}"}})
    gpux("build", "--push", "--remote", f"oci://{ociserver.host}/{repo}", cwd=tmp_path)
    key = read_lock(tmp_path)["models"]["a"]["artifact"]["build_key"].removeprefix("sha256:")
    ref = f"docker://{ociserver.host}/{repo}"

    def skopeo(*args: str) -> str:
        return subprocess.run(["skopeo", *args], check=True, capture_output=True, text=True, timeout=120).stdout

    assert json.loads(skopeo("list-tags", "--tls-verify=false", ref))["Tags"] == [key]
    skopeo("copy", "--src-tls-verify=false", f"{ref}:{key}", f"dir:{tmp_path / 'copied'}")
    manifest = json.loads((tmp_path / "copied" / "manifest.json").read_text())
    assert manifest["artifactType"] == "application/vnd.gpuxbuild.artifact.v1"
    titled = {}
    for layer in manifest["layers"]:
        data = (tmp_path / "copied" / layer["digest"].removeprefix("sha256:")).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == layer["digest"]
        titled[layer["annotations"]["org.opencontainers.image.title"]] = data
    index = titled.pop("artifact.json")
    assert json.loads(titled.pop("provenance.json"))["subject"]
    assert "sha256:" + hashlib.sha256(index).hexdigest() == digest_of(tmp_path, "a")
    assert {f["path"]: f["sha256"] for f in json.loads(index)["files"]} == {
        path: hashlib.sha256(data).hexdigest() for path, data in titled.items()
    }
