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
from processes import free_port

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
    assert errors == [f"error: model 'a': remote {gone}: no such folder {tmp_path / 'no-such-share'}"]
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
    assert {f["path"] for f in json.loads(index)["files"]} | {"artifact.json"} == set(titles)

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
