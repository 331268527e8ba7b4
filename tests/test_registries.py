"""The registry strategy: a third registry is one class and one registration line, and works with lock and fetch."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest
import yaml
from helpers import gpux_process

from gpuxbuild.errors import ManifestError
from gpuxbuild.models.pull import parse_ref, pull
from gpuxbuild.project.manifest import parse_manifest
from gpuxbuild.project.resolver import plan_lock
from gpuxbuild.registries import _TABLE, known_registries, parse_source, register
from gpuxbuild.registries.base import ModelInfo, ModelManager, PinnedModel
from gpuxbuild.store.files import FileEntry
from gpuxbuild.store.objects import Store

CONFIG = b'{"architectures": ["BertForSequenceClassification"], "model_type": "bert"}'
FILES = {"config.json": CONFIG, "model.safetensors": b"weights" * 100}


class MemoryManager(ModelManager):
    """A registry holding one model in memory: what a third registry looks like."""

    name = "memory"

    def resolve(self, repo, revision, *, pin=None):
        files = [FileEntry(p, hashlib.sha256(d).hexdigest(), len(d)) for p, d in sorted(FILES.items())]
        return PinnedModel(
            self.name,
            repo,
            revision,
            "ab" * 20,
            files,
            ModelInfo(config={"architectures": ["BertForSequenceClassification"]}),
        )

    def download(self, repo, commit, file, dest, *, resume_from=0, progress=None):
        dest.write(FILES[file.path][resume_from:])


class StreamingMemoryManager(MemoryManager):
    """Lists its weights before it finishes resolving; with `expect_prefetch` (a pull), waits until the
    caller has fetched them."""

    name = "memory"
    fetched = threading.Event()
    expect_prefetch = False

    def resolve_streaming(self, repo, revision, on_listed, *, pin=None):
        pinned = self.resolve(repo, revision, pin=pin)
        on_listed(
            pinned.commit, [f.path for f in pinned.files], [f for f in pinned.files if f.path == "model.safetensors"]
        )
        if self.expect_prefetch:
            assert self.fetched.wait(10), "the listed file was not fetched while the model was still resolving"
        return pinned

    def download(self, repo, commit, file, dest, *, resume_from=0, progress=None):
        super().download(repo, commit, file, dest, resume_from=resume_from, progress=progress)
        if file.path == "model.safetensors":
            self.fetched.set()


@pytest.fixture(params=["MemoryManager", "StreamingMemoryManager"])
def memory_registry(request):
    register("memory", ("mem",), f"{__name__}:{request.param}")
    StreamingMemoryManager.fetched.clear()
    yield request.param
    del _TABLE["memory"]
    StreamingMemoryManager.expect_prefetch = False


def test_a_third_registry_is_one_class_and_one_line(memory_registry, tmp_path):
    assert "memory" in known_registries()
    assert parse_source("mem:org/model") == ("memory", "org/model")
    path = tmp_path / "gpux.models.yml"
    manifest = parse_manifest("version: 1\nmodels:\n  m:\n    source: mem:org/model\n", path)
    plan = plan_lock(manifest, None, store=Store(tmp_path / "store"))
    entry = plan.lock.models["m"]
    assert (entry.registry, entry.commit, entry.task) == ("memory", "ab" * 20, "text-classification")
    manager = MemoryManager(project=tmp_path, store=Store(tmp_path / "store"))
    result = manager.fetch("org/model", entry.commit, entry.files)
    assert result.downloaded == ["config.json", "model.safetensors"]
    assert manager.store.object_path(entry.files[0].sha256).read_bytes() == CONFIG


def test_unknown_registry_lists_the_known_ones():
    with pytest.raises(ManifestError) as exc:
        parse_source("nosuch:bucket/x")
    assert (
        "unknown registry 'nosuch'" in exc.value.message
        and "huggingface" in exc.value.hint
        and "local" in exc.value.hint
    )
    with pytest.raises(ManifestError):
        parse_source("org/x", "nope")


def test_a_third_registry_pulls(memory_registry, tmp_path):
    """`gpux pull` works with a registry that only implements resolve() and download(), and with one that
    lists files early (its resolve_streaming waits until pull has fetched them)."""
    StreamingMemoryManager.expect_prefetch = True
    store = Store(tmp_path / "store")
    res = pull(parse_ref("mem:org/model"), store=store, project=tmp_path)
    assert res.record.registry == "memory" and res.record.commit == "ab" * 20
    assert res.downloaded == ["config.json", "model.safetensors"] and res.cached == [] and res.objects_downloaded == 2
    for f in res.record.files:
        assert store.object_path(f["sha256"]).read_bytes() == FILES[f["path"]]


# ----------------------------------------------------------------------------------- plugins (entry points)

PLUGIN = '''
"""A registry plugin: models are folders under $TINYREG_ROOT, pinned by their content digest."""
import hashlib, json, os
from pathlib import Path

from gpuxbuild.errors import RegistryError
from gpuxbuild.registries.base import ModelInfo, ModelManager, PinnedModel
from gpuxbuild.store.files import FileEntry


class TinyManager(ModelManager):
    name = "tinyreg"
    source_prefixes = ("tiny",)
    ref_help = "a folder name under $TINYREG_ROOT"
    commit_length = 64
    revisions = False

    def _root(self, repo):
        root = Path(os.environ["TINYREG_ROOT"]) / repo
        if not root.is_dir():
            raise RegistryError(f"tinyreg:{repo}: no such model", "check TINYREG_ROOT")
        return root

    def resolve(self, repo, revision, *, pin=None):
        root = self._root(repo)
        files = sorted(
            FileEntry(p.relative_to(root).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size)
            for p in root.rglob("*") if p.is_file()
        )
        commit = hashlib.sha256(json.dumps([f.as_dict() for f in files]).encode()).hexdigest()
        config = json.loads((root / "config.json").read_text())
        return PinnedModel(self.name, repo, revision, commit, files, ModelInfo(config=config))

    def download(self, repo, commit, file, dest, *, resume_from=0, progress=None):
        dest.write((self._root(repo) / file.path).read_bytes()[resume_from:])
'''


def _install_plugin(site: Path, name: str = "tinyreg", target: str = "tinyreg_plugin:TinyManager") -> None:
    """A distribution as pip installs one: the module and a dist-info whose entry_points.txt names the registry."""
    (site / "tinyreg_plugin.py").write_text(PLUGIN)
    info = site / "gpux_tinyreg-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gpux-tinyreg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[gpuxbuild.registries]\n{name} = {target}\n")


def _plugin_env(site: Path, **extra: str) -> dict[str, str]:
    repo_root = Path(__file__).resolve().parent.parent
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo_root), str(site)]), **extra}


@pytest.mark.slow
def test_an_installed_plugin_registry_locks_syncs_and_runs(tmp_path):
    """A package that declares a `gpuxbuild.registries` entry point adds a registry, with no change to gpuxbuild:
    `gpux registries` lists it, and a model from it goes through add, lock, sync and run."""
    from tinymodels import write_repo

    site, root, project = tmp_path / "site", tmp_path / "models", tmp_path / "project"
    site.mkdir()
    project.mkdir()
    _install_plugin(site)
    write_repo("onnx-shipped", root / "sentiment")
    env = _plugin_env(site, TINYREG_ROOT=str(root))

    r = gpux_process("registries", "--json", env=env)
    rows = {x["name"]: x for x in json.loads(r.stdout)["registries"]}
    assert rows["tinyreg"] == {
        "name": "tinyreg",
        "prefixes": ["tinyreg:", "tiny:"],
        "origin": "gpux-tinyreg 0.1",
        "reference": "a folder name under $TINYREG_ROOT",
    }
    table = gpux_process("registries", env=env).stdout.splitlines()
    assert table[0].split() == ["NAME", "PREFIXES", "FROM", "REFERENCE"]
    assert any(line.startswith("tinyreg ") and "gpux-tinyreg 0.1" in line for line in table)

    gpux_process("init", cwd=project, env=env)
    gpux_process("add", "tiny:sentiment", "--task", "text-classification", cwd=project, env=env)
    lock = (project / "gpux.lock").read_bytes()
    entry = yaml.safe_load(lock)["models"]["sentiment"]
    assert (entry["registry"], entry["repo"], entry["revision"], len(entry["commit"])) == (
        "tinyreg",
        "sentiment",
        None,
        64,
    )
    (project / "gpux.lock").unlink()
    gpux_process("lock", cwd=project, env=env)
    assert (project / "gpux.lock").read_bytes() == lock  # deterministic
    gpux_process("lock", "--check", cwd=project, env=env)
    gpux_process("sync", cwd=project, env=env)
    r = gpux_process("run", "sentiment", "I love this", "--json", cwd=project, env=env)
    assert "POSITIVE" in r.stdout or "NEGATIVE" in r.stdout

    # Without the plugin, the same lock is an error that says how registries are added.
    r = gpux_process(
        "lock", cwd=project, env={**env, "PYTHONPATH": env["PYTHONPATH"].split(os.pathsep)[0]}, check=False
    )
    assert r.returncode == 2 and "unknown registry 'tiny'" in r.stderr and "gpux registries" in r.stderr


def test_a_broken_plugin_is_reported_not_raised(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install_plugin(site, target="tinyreg_plugin:Missing")
    r = gpux_process("registries", env=_plugin_env(site), check=False)
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert "warning: plugin 'tinyreg' (gpux-tinyreg 0.1): cannot load tinyreg_plugin:Missing" in r.stderr
    _install_plugin(site, name="hf")
    r = gpux_process("registries", "--json", env=_plugin_env(site))
    assert json.loads(r.stdout)["problems"] == [
        "plugin 'hf' (gpux-tinyreg 0.1): 'hf' is a source prefix of registry 'huggingface' already"
    ]


# ------------------------------------------------------------------------------ S3 and HTTPS sources


@pytest.fixture
def home(hf_env, tmp_path_factory):
    """Switch to a fresh, empty GPUX_HOME (another machine)."""

    def switch() -> Path:
        path = tmp_path_factory.mktemp("home")
        hf_env(GPUX_HOME=str(path))
        return path

    return switch


def _model_files() -> dict[str, bytes]:
    """The tiny text classifier that ships its ONNX graph (no export needed to build it)."""
    from tinymodels import make_repo

    return make_repo("onnx-shipped")


@pytest.fixture
def s3folder(s3server, hf_env, request):
    """A fresh prefix of the test bucket holding the tiny model; returns (its s3:// URL, the prefix, the client)."""
    import uuid

    import obstore
    from s3server import BUCKET

    hf_env(**s3server.env(), GPUX_HTTP_RETRIES="0")
    prefix = f"models-{uuid.uuid4().hex[:10]}/sentiment"
    client = s3server.client()
    for path, data in _model_files().items():
        obstore.put(client, f"{prefix}/{path}", data)
    return f"s3://{BUCKET}/{prefix}/", prefix, client


def _errors(r) -> list[str]:
    assert "Traceback" not in r.stderr, r.stderr
    return [line for line in r.stderr.splitlines() if line.startswith("error:")]


def _model_components(sbom: str) -> list[dict]:
    """The model components of a CycloneDX BOM (not the built artifacts, which name the model in a pedigree)."""
    return [c for c in json.loads(sbom)["components"] if c["type"] == "machine-learning-model" and "pedigree" not in c]


def _labels(out: str) -> bool:
    return "POSITIVE" in out or "NEGATIVE" in out


def test_an_s3_folder_locks_syncs_and_runs(s3folder, tmp_path, home):
    from helpers import gpux, read_lock, write_manifest

    url, _, _ = s3folder
    project = tmp_path / "p"
    project.mkdir()
    gpux("init", cwd=project)
    gpux("add", url, "--task", "text-classification", cwd=project)
    entry = read_lock(project)["models"]["sentiment"]
    files = {f["path"]: f for f in entry["files"]}
    expected = _model_files()
    assert (entry["registry"], entry["repo"], entry["revision"]) == ("s3", url, None)
    assert len(entry["commit"]) == 64 and "onnx/model.onnx" in files
    for path, f in files.items():
        assert f["sha256"] == hashlib.sha256(expected[path]).hexdigest()
    # The bucket's ETags are recorded, for the record, per file.
    origin = entry["origin"]["files"]
    assert set(entry["origin"]) == {"files"} and set(origin) == set(files) and all(o["etag"] for o in origin.values())
    lock = (project / "gpux.lock").read_bytes()
    home()  # relocking elsewhere pins the same bytes
    (project / "gpux.lock").unlink()
    gpux("lock", cwd=project)
    assert (project / "gpux.lock").read_bytes() == lock
    gpux("lock", "--check", cwd=project)

    home()  # another machine: sync downloads from the bucket, verified against the lock
    r = gpux("sync", "--offline", cwd=project, check=False)
    (error,) = _errors(r)
    assert r.returncode == 1 and "not in the store and offline mode is on" in error and "onnx/model.onnx" in error
    gpux("sync", cwd=project)
    assert _labels(gpux("run", "sentiment", "I love this", "--json", cwd=project).stdout)
    (component,) = _model_components(gpux("sbom", cwd=project).stdout)
    assert component["purl"].startswith("pkg:generic/sentiment@") and f"download_url={url}" in component["purl"]
    write_manifest(project, {"sentiment": {"source": url, "task": "text-classification"}})
    r = gpux("lock", "--offline", cwd=project, check=False)  # nothing to resolve: the entry did not change
    assert r.returncode == 0, r.stderr


def test_s3_source_errors_are_one_line(s3folder, tmp_path, hf_env):
    from helpers import gpux, write_manifest
    from processes import free_port
    from s3server import BUCKET

    url, _, _ = s3folder

    def lock(source: str, **manifest) -> list[str]:
        write_manifest(tmp_path, {"m": {"source": source, "task": "text-classification", **manifest}})
        r = gpux("lock", cwd=tmp_path, check=False)
        assert r.returncode != 0 and not (tmp_path / "gpux.lock").exists()
        return _errors(r)

    assert lock(f"s3://{BUCKET}/no-such-prefix/") == [
        f"error: model 'm': s3://{BUCKET}/no-such-prefix/: no objects under this prefix"
    ]
    (error,) = lock(url, revision="v1")
    assert "registry 's3' has no revisions" in error
    (error,) = lock("s3://gpux-no-such-bucket/x/")
    assert "s3://gpux-no-such-bucket/x/" in error and "bucket" in error.lower()
    hf_env(AWS_SECRET_ACCESS_KEY="wrong-secret-0a9b")
    (error,) = lock(url)
    assert f"{url}: not authorized" in error and "wrong-secret-0a9b" not in error
    hf_env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    (error,) = lock(url)
    assert error.startswith(f"error: model 'm': {url}: ") and "127.0.0.1" in error
    write_manifest(tmp_path, {"m": {"source": url, "task": "text-classification"}})
    r = gpux("lock", "--offline", cwd=tmp_path, check=False)
    assert (
        _errors(r) == [f"error: model 'm': {url}: listing the folder needs the network, but offline mode is on"]
        and r.returncode == 1
    )


def test_s3_hostile_names_and_pickles_are_refused(s3server, hf_env, tmp_path):
    import uuid

    import obstore
    from helpers import gpux, write_manifest
    from s3server import BUCKET

    hf_env(**s3server.env(), GPUX_HTTP_RETRIES="0")
    client = s3server.client()
    prefix = f"hostile-{uuid.uuid4().hex[:10]}"
    obstore.put(client, f"{prefix}/config.json", b"{}")
    obstore.put(client, f"{prefix}/C:evil.json", b"{}")  # a drive-relative path on Windows
    write_manifest(tmp_path, {"m": {"source": f"s3://{BUCKET}/{prefix}/", "task": "text-classification"}})
    r = gpux("lock", cwd=tmp_path, check=False)
    (error,) = _errors(r)
    assert r.returncode == 1 and "refusing unsafe file name" in error

    prefix = f"pickle-{uuid.uuid4().hex[:10]}"
    obstore.put(client, f"{prefix}/config.json", b'{"architectures": ["BertModel"]}')
    obstore.put(client, f"{prefix}/pytorch_model.bin", b"pickle")
    write_manifest(tmp_path, {"m": {"source": f"s3://{BUCKET}/{prefix}/", "task": "feature-extraction"}})
    r = gpux("sync", cwd=tmp_path, check=False)  # pinned, but never loaded: pickles can run code
    (error,) = _errors(r)
    assert r.returncode != 0 and "pickle" in error and "pytorch_model.bin" in error, error


@pytest.fixture
def files_server(tmp_path_factory):
    """A plain HTTP file server on 127.0.0.1 (Python's own), serving the tiny model under /models/sentiment/;
    /private/ answers 401."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tmp_path_factory.mktemp("www")
    for path, data in _model_files().items():
        dest = root / "models" / "sentiment" / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/private/"):
                self.send_error(401)
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_files_at_urls_lock_sync_and_run(files_server, tmp_path, home):
    from helpers import gpux, read_lock, write_manifest

    base, root = files_server
    url = f"{base}/models/sentiment/"
    listed = sorted(_model_files())
    write_manifest(tmp_path, {"sentiment": {"source": url, "files": listed, "task": "text-classification"}})
    gpux("lock", cwd=tmp_path)
    entry = read_lock(tmp_path)["models"]["sentiment"]
    assert (entry["registry"], entry["repo"], entry["revision"], len(entry["commit"])) == ("https", url, None, 64)
    assert {f["path"]: f["sha256"] for f in entry["files"]}["onnx/model.onnx"] == hashlib.sha256(
        _model_files()["onnx/model.onnx"]
    ).hexdigest()
    lock = (tmp_path / "gpux.lock").read_bytes()
    home()
    (tmp_path / "gpux.lock").unlink()
    gpux("lock", cwd=tmp_path)
    assert (tmp_path / "gpux.lock").read_bytes() == lock
    home()
    r = gpux("sync", "--offline", cwd=tmp_path, check=False)
    (error,) = _errors(r)
    assert "not in the store and offline mode is on" in error and "config.json" in error
    gpux("sync", cwd=tmp_path)
    assert _labels(gpux("run", "sentiment", "I love this", "--json", cwd=tmp_path).stdout)

    # A file that changes on the server after the lock is refused on arrival.
    home()
    (root / "models" / "sentiment" / "onnx" / "model.onnx").write_bytes(b"not the locked graph")
    r = gpux("sync", "--target", "elsewhere", cwd=tmp_path, check=False)
    (error,) = _errors(r)
    assert r.returncode == 1 and "sha256 mismatch" in error and "onnx/model.onnx" in error

    # One file is a model too (here a config, to see it pinned).
    write_manifest(tmp_path, {"cfg": {"source": f"{url}config.json", "task": "text-classification"}})
    gpux("lock", cwd=tmp_path)
    assert [f["path"] for f in read_lock(tmp_path)["models"]["cfg"]["files"]] == ["config.json"]


def test_url_source_errors_are_one_line(files_server, tmp_path, hf_env):
    from helpers import gpux, write_manifest
    from processes import free_port

    base, _ = files_server
    hf_env(GPUX_HTTP_RETRIES="0")

    def lock(model: dict, status: int = 1) -> list[str]:
        write_manifest(tmp_path, {"m": {"task": "text-classification", **model}})
        r = gpux("lock", cwd=tmp_path, check=False)
        assert r.returncode == status and not (tmp_path / "gpux.lock").exists(), r.stderr
        return _errors(r)

    host = base.removeprefix("http://")
    assert lock({"source": f"{base}/nope/model.onnx"}) == [
        f"error: model 'm': {base}/nope/model.onnx: not found on {host} (HTTP 404)"
    ]
    (error,) = lock({"source": f"{base}/private/model.onnx"})
    assert error == f"error: model 'm': {base}/private/model.onnx: not authorized (HTTP 401)"
    port = free_port()
    (error,) = lock({"source": f"http://127.0.0.1:{port}/model.onnx"})
    assert error.startswith(f"error: model 'm': http://127.0.0.1:{port}/model.onnx: cannot reach 127.0.0.1:{port}")
    (error,) = lock({"source": "http://example.com/model.onnx"}, status=2)
    assert "plain http:// is accepted only on this machine" in error
    (error,) = lock({"source": f"{base}/models/sentiment/"}, status=2)
    assert "an https:// folder source needs `files:`" in error
    (error,) = lock({"source": f"{base}/models/sentiment/config.json", "files": ["x"]}, status=2)
    assert "`files:` is only for an https:// folder source" in error
    (error,) = lock({"source": f"{base}/models/sentiment/", "files": ["../../secret"]})
    assert "refusing unsafe file name '../../secret'" in error
    write_manifest(tmp_path, {"m": {"source": f"{base}/models/sentiment/config.json", "task": "text-classification"}})
    r = gpux("lock", "--offline", cwd=tmp_path, check=False)
    assert _errors(r) == [
        f"error: model 'm': {base}/models/sentiment/config.json: hashing its files needs the network, "
        "but offline mode is on"
    ]


# ------------------------------------------------------------------------------------------ OCI artifacts


def _oras_push(host: str, target: str, files: dict[str, bytes], tmp: Path) -> str:
    """Push `files` as an OCI artifact with the oras SDK, one layer per file titled with its path, as
    `oras push registry/repo:tag onnx/model.onnx ...` does; returns the manifest digest."""
    import uuid

    import oras.client
    import requests

    root = tmp / f"push-{uuid.uuid4().hex[:8]}"
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    blobs = [str(root / p) for p in sorted(files)]
    annotations = root.parent / f"{root.name}.annotations.json"
    annotations.write_text(
        json.dumps({b: {"org.opencontainers.image.title": p} for b, p in zip(blobs, sorted(files), strict=True)})
    )
    client = oras.client.OrasClient(hostname=host, insecure=True)
    client.push(target=f"{host}/{target}", files=blobs, annotation_file=str(annotations), disable_path_validation=True)
    repo, _, tag = target.partition(":")
    resp = requests.head(
        f"http://{host}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    )
    return resp.headers["Docker-Content-Digest"]


def test_an_oci_artifact_locks_syncs_and_runs(ociserver, tmp_path, home, hf_env):
    import uuid

    from helpers import gpux, read_lock, write_manifest

    hf_env(DOCKER_CONFIG=str(tmp_path / "no-docker-config"), GPUX_HTTP_RETRIES="0")
    repo = f"models/sentiment-{uuid.uuid4().hex[:8]}"
    digest = _oras_push(ociserver.host, f"{repo}:v1", _model_files(), tmp_path)
    source = f"oci://{ociserver.host}/{repo}:v1"
    project = tmp_path / "p"
    project.mkdir()
    gpux("init", cwd=project)
    gpux("add", source, "--name", "sentiment", "--task", "text-classification", cwd=project)
    entry = read_lock(project)["models"]["sentiment"]
    assert (entry["registry"], entry["repo"], entry["revision"]) == ("oci", source, None)
    assert "sha256:" + entry["commit"] == digest  # the pin is the manifest's digest
    expected = _model_files()
    assert {f["path"]: f["sha256"] for f in entry["files"]} == {
        p: hashlib.sha256(expected[p]).hexdigest() for p in {f["path"] for f in entry["files"]}
    }
    lock = (project / "gpux.lock").read_bytes()
    home()
    (project / "gpux.lock").unlink()
    gpux("lock", cwd=project)
    assert (project / "gpux.lock").read_bytes() == lock
    r = gpux("sync", "--offline", cwd=project, check=False)
    (error,) = _errors(r)
    assert "not in the store and offline mode is on" in error and "onnx/model.onnx" in error
    gpux("sync", cwd=project)
    assert _labels(gpux("run", "sentiment", "I love this", "--json", cwd=project).stdout)
    (component,) = _model_components(gpux("sbom", cwd=project).stdout)
    assert component["purl"] == (
        f"pkg:oci/{repo.rsplit('/', 1)[1]}@sha256:{entry['commit']}?repository_url={ociserver.host}/{repo}"
    )

    # The tag moves: the lock keeps its digest until --upgrade; a source by digest pins itself.
    _oras_push(ociserver.host, f"{repo}:v1", {**expected, "README.md": b"# moved\n"}, tmp_path)
    assert "no changes" in gpux("lock", cwd=project).stdout  # sync recorded the artifact: the pin is the same
    gpux("lock", "--upgrade", cwd=project)
    assert read_lock(project)["models"]["sentiment"]["commit"] != entry["commit"]
    write_manifest(
        project, {"pinned": {"source": f"oci://{ociserver.host}/{repo}@{digest}", "task": "text-classification"}}
    )
    gpux("lock", cwd=project)
    assert read_lock(project)["models"]["pinned"]["commit"] == entry["commit"]
    # `gpux pull` takes the same sources (a URL source's own `@` is not a revision).
    r = gpux("pull", f"oci://{ociserver.host}/{repo}@{digest}", "--no-build", "--json", cwd=project)
    assert json.loads(r.stdout)["commit"] == entry["commit"]


def test_oci_source_errors_are_one_line(ociserver, tmp_path, hf_env):
    import uuid

    from helpers import gpux, write_manifest
    from processes import free_port

    hf_env(DOCKER_CONFIG=str(tmp_path / "no-docker-config"), GPUX_HTTP_RETRIES="0")
    repo = f"models/bad-{uuid.uuid4().hex[:8]}"

    def lock(source: str, status: int = 1) -> str:
        write_manifest(tmp_path, {"m": {"source": source, "task": "text-classification"}})
        r = gpux("lock", cwd=tmp_path, check=False)
        assert r.returncode == status and not (tmp_path / "gpux.lock").exists(), r.stderr
        (error,) = _errors(r)
        return error

    source = f"oci://{ociserver.host}/{repo}:v1"
    assert lock(source) == f"error: model 'm': {source}: no such repository or tag"
    port = free_port()
    error = lock(f"oci://127.0.0.1:{port}/{repo}:v1")
    assert error.startswith(f"error: model 'm': oci://127.0.0.1:{port}/{repo}:v1: manifest: ")
    assert "oci://registry/repository:tag" in lock(f"oci://{ociserver.host}/UPPER/case", status=2)
    assert "has no revisions" in lock_with_revision(tmp_path, source)
    # Hostile layer titles are refused, as Hub file names are.
    _oras_push(ociserver.host, f"{repo}:evil", {"config.json": b"{}"}, tmp_path)
    _retitle(ociserver.host, repo, "evil", "../../etc/passwd")
    assert "refusing unsafe file name '../../etc/passwd'" in lock(f"oci://{ociserver.host}/{repo}:evil")
    write_manifest(tmp_path, {"m": {"source": source, "task": "text-classification"}})
    r = gpux("lock", "--offline", cwd=tmp_path, check=False)
    assert _errors(r) == [f"error: model 'm': {source}: resolving it needs the network, but offline mode is on"]


def lock_with_revision(project: Path, source: str) -> str:
    from helpers import gpux, write_manifest

    write_manifest(project, {"m": {"source": source, "revision": "v2"}})
    r = gpux("lock", cwd=project, check=False)
    assert r.returncode == 2
    (error,) = _errors(r)
    return error


def _retitle(host: str, repo: str, tag: str, title: str) -> None:
    """Rewrite the artifact `repo:tag` so that its first layer claims the path `title` (what a hostile registry
    or pusher could do)."""
    import requests

    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    manifest = requests.get(f"http://{host}/v2/{repo}/manifests/{tag}", headers=accept, timeout=10).json()
    manifest["layers"][0]["annotations"]["org.opencontainers.image.title"] = title
    resp = requests.put(
        f"http://{host}/v2/{repo}/manifests/{tag}",
        data=json.dumps(manifest),
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    )
    resp.raise_for_status()


def _tar(files: dict[str, bytes], *, gzip: bool = False, link: str | None = None) -> bytes:
    """A tar archive of `files` (reproducible: fixed times and owners), as KitOps packs a ModelKit layer."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gzip else "w", format=tarfile.PAX_FORMAT) as tar:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return buf.getvalue()


def _push_modelkit(host: str, repo: str, tag: str, layers: list[tuple[str, bytes]]) -> None:
    """Push a KitOps ModelKit (Kitfile config, tar layers by kind) with gpuxbuild's own registry client."""
    from gpuxbuild.ociclient import MANIFEST, OciClient

    client = OciClient(host, repo, label="test push")
    config = json.dumps({"manifestVersion": "1.0.0", "package": {"name": "sentiment"}}).encode()
    descriptors = []
    for media_type, data in [("application/vnd.kitops.modelkit.config.v1+json", config), *layers]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        client.upload(digest, data, digest)
        descriptors.append({"mediaType": media_type, "digest": digest, "size": len(data)})
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "config": descriptors[0], "layers": descriptors[1:]}
    client.request(
        "PUT",
        f"{client.base}/manifests/{tag}",
        "manifest",
        ok=(201,),
        data=json.dumps(manifest).encode(),
        headers={"Content-Type": MANIFEST},
    )


def test_a_kitops_modelkit_locks_syncs_and_runs(ociserver, tmp_path, home, hf_env):
    import uuid

    from helpers import gpux, read_lock, write_manifest

    hf_env(DOCKER_CONFIG=str(tmp_path / "no-docker-config"), GPUX_HTTP_RETRIES="0")
    files = _model_files()
    graph = {p: d for p, d in files.items() if p.endswith(".onnx")}
    rest = {p: d for p, d in files.items() if p not in graph}
    repo = f"kits/sentiment-{uuid.uuid4().hex[:8]}"
    kit = "application/vnd.kitops.modelkit.{}.v1.tar"
    _push_modelkit(
        ociserver.host,
        repo,
        "v1",
        [
            (kit.format("model"), _tar(graph)),
            (kit.format("code") + "+gzip", _tar(rest, gzip=True)),
            (kit.format("dataset"), _tar({"data/train.csv": b"text,label\n"})),
        ],
    )
    source = f"oci://{ociserver.host}/{repo}:v1"
    write_manifest(tmp_path, {"sentiment": {"source": source, "task": "text-classification"}})
    gpux("lock", cwd=tmp_path)
    entry = read_lock(tmp_path)["models"]["sentiment"]
    pinned = {f["path"]: f["sha256"] for f in entry["files"]}
    assert "data/train.csv" not in pinned  # dataset layers are not the model's
    assert pinned["onnx/model.onnx"] == hashlib.sha256(files["onnx/model.onnx"]).hexdigest()
    assert pinned["config.json"] == hashlib.sha256(files["config.json"]).hexdigest()
    lock = (tmp_path / "gpux.lock").read_bytes()
    home()
    (tmp_path / "gpux.lock").unlink()
    gpux("lock", cwd=tmp_path)
    assert (tmp_path / "gpux.lock").read_bytes() == lock
    home()  # sync on a machine that has nothing: files come out of the layers, each verified
    gpux("sync", cwd=tmp_path)
    assert _labels(gpux("run", "sentiment", "I love this", "--json", cwd=tmp_path).stdout)

    # A link in a layer is refused, as a hostile path is.
    _push_modelkit(ociserver.host, repo, "link", [(kit.format("model"), _tar(graph, link="config.json"))])
    write_manifest(tmp_path, {"evil": {"source": f"oci://{ociserver.host}/{repo}:link"}})
    r = gpux("lock", cwd=tmp_path, check=False)
    (error,) = _errors(r)
    assert r.returncode == 1 and "'config.json' in layer sha256:" in error and "is a link or a device" in error


# ------------------------------------------------------------------------------------------- ONNX Model Zoo


def test_an_onnx_zoo_model_locks_syncs_and_runs(hub, repo_id, tmp_path, hf_env):
    """`onnx-zoo:NAME` is the Hub repo onnxmodelzoo/NAME, whose one graph is named after the model."""
    from helpers import gets, gpux, read_lock

    name = repo_id.split("/")[1][-40:].strip("-.") + "_Opset17"
    files = {p: d for p, d in _model_files().items() if not p.endswith(".onnx")}
    files[f"{name}.onnx"] = _model_files()["onnx/model.onnx"]
    hub.create_repo(f"onnxmodelzoo/{name}", card={"pipeline_tag": "text-classification", "license": "apache-2.0"})
    commit = hub.commit(f"onnxmodelzoo/{name}", files)

    gpux("init", cwd=tmp_path)
    gpux("add", f"onnx-zoo:{name}", "--name", "zoo", cwd=tmp_path)
    entry = read_lock(tmp_path)["models"]["zoo"]
    assert (entry["registry"], entry["repo"], entry["commit"], entry["task"]) == (
        "onnx-zoo",
        name,
        commit,
        "text-classification",
    )
    assert f"{name}.onnx" in {f["path"] for f in entry["files"]}
    lock = (tmp_path / "gpux.lock").read_bytes()
    (tmp_path / "gpux.lock").unlink()
    gpux("lock", cwd=tmp_path)
    assert (tmp_path / "gpux.lock").read_bytes() == lock
    r = gpux("sync", cwd=tmp_path)
    assert "1 built" in r.stdout
    artifact = tmp_path / ".gpux" / "models" / "zoo"
    assert (artifact / "model.onnx").read_bytes() == files[f"{name}.onnx"]  # shipped, never exported
    assert _labels(gpux("run", "zoo", "I love this", "--json", cwd=tmp_path).stdout)
    assert gets(hub, f"onnxmodelzoo/{name}")  # the files came from the zoo's organisation

    hf_env(GPUX_HTTP_RETRIES="0")
    r = gpux("add", "onnx-zoo:no_such_model_Opset17", cwd=tmp_path, check=False)
    (error,) = _errors(r)
    assert r.returncode == 1 and "hf:onnxmodelzoo/no_such_model_Opset17" in error and "not found" in error
    r = gpux("add", "onnx-zoo:org/name", cwd=tmp_path, check=False)
    assert r.returncode == 2 and "a model name of the ONNX Model Zoo" in r.stderr


def test_url_sources_are_their_own_reference():
    from gpuxbuild.project.edits import default_name

    digest = "ab" * 32
    cases = {
        "s3://models-bkt/team/sentiment/": "s3",
        "https://example.com/m/model.onnx": "https",
        "http://127.0.0.1:8000/m/": "https",
        "http://[::1]:8000/m/model.onnx": "https",
        "oci://ghcr.io/acme/models/sentiment:v1": "oci",
        f"oci://127.0.0.1:5000/acme/sentiment@sha256:{digest}": "oci",
        "onnx-zoo:resnet50_Opset17": "onnx-zoo",
    }
    for source, registry in cases.items():
        ref = source if "://" in source else source.split(":", 1)[1]
        assert parse_source(source) == (registry, ref)
    assert default_name("oci://ghcr.io/acme/models/sentiment:v1") == "sentiment"
    assert default_name(f"oci://ghcr.io/acme/sentiment@sha256:{digest}") == "sentiment"
    assert default_name("s3://models-bkt/team/sentiment/") == "sentiment"
    with pytest.raises(ManifestError) as exc:
        parse_source("https://user:hunter2-secret@example.com/m/model.onnx")
    assert "would be written to gpux.lock" in exc.value.message and "hunter2-secret" not in exc.value.message
    for bad in (
        "http://example.com/model.onnx",  # clear text from elsewhere
        "s3://Bad_Bucket/x/",
        "s3://models-bkt/a/../b/",
        "https://example.com/a/./b",
        "https://example.com/m?token=x",
        "oci://ghcr.io/UPPER/case:v1",
        "onnx-zoo:org/name",
    ):
        with pytest.raises(ManifestError):
            parse_source(bad)


def test_oci_credentials_come_from_the_docker_config(ociauth, tmp_path, hf_env):
    """A registry that wants a login: one line with a `docker login` hint, never the secret; the docker
    config's credentials open it."""
    import base64
    import uuid

    from helpers import gpux, write_manifest

    user, password = ociauth.auth
    repo = f"models/private-{uuid.uuid4().hex[:8]}"
    source = f"oci://{ociauth.host}/{repo}:v1"

    def docker_config(secret: str) -> None:
        folder = tmp_path / f"docker-{len(secret)}"
        folder.mkdir(exist_ok=True)
        auth = base64.b64encode(f"{user}:{secret}".encode()).decode()
        (folder / "config.json").write_text(json.dumps({"auths": {ociauth.host: {"auth": auth}}}))
        hf_env(DOCKER_CONFIG=str(folder), GPUX_HTTP_RETRIES="0")

    write_manifest(tmp_path, {"m": {"source": source, "task": "text-classification"}})
    docker_config("wrong-secret-77ab")
    r = gpux("lock", cwd=tmp_path, check=False)
    (error,) = _errors(r)
    assert r.returncode == 1 and error == f"error: model 'm': {source}: manifest: 401 Unauthorized", error
    assert "docker login" in r.stderr and "wrong-secret-77ab" not in r.stderr
    docker_config(password)
    from gpuxbuild.ociclient import OciClient

    client = OciClient(ociauth.host, repo, label="test push")
    data = _model_files()["config.json"]
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client.upload(digest, data, "config.json")
    client.upload("sha256:" + hashlib.sha256(b"{}").hexdigest(), b"{}", "config")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
            "size": 2,
        },
        "layers": [
            {
                "mediaType": "application/octet-stream",
                "digest": digest,
                "size": len(data),
                "annotations": {"org.opencontainers.image.title": "config.json"},
            }
        ],
    }
    client.request(
        "PUT",
        f"{client.base}/manifests/v1",
        "manifest",
        ok=(201,),
        data=json.dumps(manifest).encode(),
        headers={"Content-Type": manifest["mediaType"]},
    )
    gpux("lock", cwd=tmp_path)
