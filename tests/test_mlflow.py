"""The MLflow Model Registry as a source (docs/registries.md), against a real `mlflow server` with models logged by
MLflow's own client: add -> lock -> sync -> run, aliases that move, the ONNX flavor, offline, and errors."""

from __future__ import annotations

import pytest
from helpers import gpux, read_lock, write_manifest
from mlflowserver import unique
from processes import free_port
from tinymodels import repo_dir


@pytest.fixture
def mlflow_env(mlflow_server, hf_env):
    hf_env(MLFLOW_TRACKING_URI=mlflow_server.uri, MLFLOW_TRACKING_TOKEN=None, MLFLOW_TRACKING_USERNAME=None)
    return mlflow_server


@pytest.mark.convert
@pytest.mark.slow
def test_a_transformers_model_adds_locks_syncs_and_runs(mlflow_env, mlflow_bert, tmp_path):
    name, v1, _ = mlflow_bert
    gpux("init", cwd=tmp_path)
    r = gpux("add", f"mlflow:{name}/1", cwd=tmp_path)
    assert f"Added {name} (mlflow:{name}/1)" in r.stdout
    entry = read_lock(tmp_path)["models"][name]
    assert entry["origin"] == {"version": "1", "run_id": v1["run_id"]}
    assert (entry["registry"], entry["repo"], entry["revision"], entry["task"]) == (
        "mlflow",
        f"{name}/1",
        None,
        "text-classification",
    )
    # The transformers flavor's model/ and components/tokenizer/ as one model folder; none of MLflow's own files.
    assert [f["path"] for f in entry["files"]] == [
        "config.json",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    files = {p.relative_to(repo_dir("bert")).as_posix(): p for p in repo_dir("bert").rglob("*") if p.is_file()}
    import hashlib

    sha = {f["path"]: f["sha256"] for f in entry["files"]}
    assert sha["model.safetensors"] == hashlib.sha256(files["model.safetensors"].read_bytes()).hexdigest()
    # Locked again from scratch: the same bytes.
    before = (tmp_path / "gpux.lock").read_bytes()
    gpux("lock", "--upgrade", cwd=tmp_path)
    assert (tmp_path / "gpux.lock").read_bytes() == before

    r = gpux("sync", cwd=tmp_path)
    assert "1 added" in r.stdout
    r = gpux("run", name, "I love this", "--json", cwd=tmp_path)
    assert '"label"' in r.stdout
    # Everything is in the store now: offline works, and makes no request.
    (tmp_path / ".gpux").rename(tmp_path / "gone")
    assert "1 added" in gpux("sync", "--offline", cwd=tmp_path).stdout


def test_an_alias_is_pinned_at_lock_time_and_moves_only_on_upgrade(mlflow_env, mlflow_bert, tmp_path):
    name, v1, v2 = mlflow_bert
    write_manifest(tmp_path, {"m": {"source": f"mlflow:{name}@champion", "include": ["*.json", "*.safetensors"]}})
    gpux("lock", cwd=tmp_path)
    first = read_lock(tmp_path)["models"]["m"]
    assert first["origin"] == {"version": "1", "run_id": v1["run_id"]}
    assert first["revision"] is None and first["repo"] == f"{name}@champion"

    mlflow_env.set_alias(name, "champion", "2")
    assert "(no changes)" in gpux("lock", cwd=tmp_path).stdout  # a lock keeps its pin, as with a branch
    r = gpux("lock", "--upgrade", cwd=tmp_path)
    second = read_lock(tmp_path)["models"]["m"]
    assert second["origin"] == {"version": "2", "run_id": v2["run_id"]}
    assert (
        second["commit"] != first["commit"] and f"commit {first['commit'][:12]} -> {second['commit'][:12]}" in r.stdout
    )
    weights = {f["path"]: f["sha256"] for f in second["files"]}["model.safetensors"]
    assert weights != {f["path"]: f["sha256"] for f in first["files"]}["model.safetensors"]

    # The alias moves back; an edit of the entry (not of its source) keeps version 2, found by its pin.
    mlflow_env.set_alias(name, "champion", "1")
    write_manifest(
        tmp_path, {"m": {"source": f"mlflow:{name}@champion", "include": ["*.json", "*.safetensors", "*.txt"]}}
    )
    gpux("lock", cwd=tmp_path)
    third = read_lock(tmp_path)["models"]["m"]
    assert third["origin"]["version"] == "2" and third["commit"] == second["commit"]
    assert "vocab.txt" in {f["path"] for f in third["files"]}


def test_an_onnx_model_uses_the_onnx_path(mlflow_env, mlflow_onnx, tmp_path):
    name, _ = mlflow_onnx
    write_manifest(tmp_path, {"m": {"source": f"mlflow:{name}/1"}})
    gpux("lock", cwd=tmp_path)
    entry = read_lock(tmp_path)["models"]["m"]
    paths = [f["path"] for f in entry["files"]]
    assert "model.onnx" in paths and "tokenizer.json" in paths and "config.json" in paths
    assert not {"MLmodel", "conda.yaml", "requirements.txt", "python_env.yaml"} & set(paths)
    r = gpux("sync", cwd=tmp_path)
    assert "1 added" in r.stdout
    assert (tmp_path / ".gpux/models/m/model.onnx").is_file()
    r = gpux("run", "m", "I love this", "--json", cwd=tmp_path)
    assert '"label"' in r.stdout


def test_offline_makes_no_request_and_names_what_is_missing(mlflow_env, mlflow_bert, tmp_path):
    name, _, _ = mlflow_bert
    write_manifest(tmp_path, {"m": {"source": f"mlflow:{name}/1"}})
    r = gpux("lock", "--offline", cwd=tmp_path, check=False)
    assert r.returncode == 1
    assert f"resolving mlflow:{name}/1: needs the MLflow server, but offline mode is on" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "gpux.lock").exists()


@pytest.mark.parametrize(
    "source, message",
    [
        ("mlflow:{name}/9", "mlflow:{name}/9: no registered model '{name}' with version 9 on 127.0.0.1:"),
        ("mlflow:{name}@nope", "mlflow:{name}@nope: no registered model '{name}' with alias 'nope' on 127.0.0.1:"),
        ("mlflow:absent-model/1", "mlflow:absent-model/1: no registered model 'absent-model' with version 1"),
    ],
)
def test_what_is_not_in_the_registry_is_one_line(mlflow_env, mlflow_bert, tmp_path, source, message):
    name, _, _ = mlflow_bert
    gpux("init", cwd=tmp_path)
    r = gpux("add", source.format(name=name), cwd=tmp_path, check=False)
    assert r.returncode == 1 and message.format(name=name) in r.stderr
    assert "hint:" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "gpux.lock").exists()


def test_an_unreachable_or_unset_server_is_one_line(mlflow_env, hf_env, tmp_path):
    gpux("init", cwd=tmp_path)
    hf_env(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}", GPUX_HTTP_RETRIES="0")
    r = gpux("add", "mlflow:m/1", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "mlflow:m/1: cannot reach the MLflow server 127.0.0.1:" in r.stderr
    assert "MLFLOW_TRACKING_URI" in r.stderr
    hf_env(MLFLOW_TRACKING_URI=None)
    r = gpux("add", "mlflow:m/1", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "MLFLOW_TRACKING_URI is not set" in r.stderr


@pytest.mark.parametrize("source", ["mlflow:m", "mlflow:m/0", "mlflow:m/v1", "mlflow:m@", "mlflow:../m/1"])
def test_a_malformed_source_is_refused_before_any_request(source, tmp_path):
    gpux("init", cwd=tmp_path)
    r = gpux("add", source, cwd=tmp_path, check=False)
    assert r.returncode == 2 and "expected an MLflow registered model as NAME/VERSION or NAME@ALIAS" in r.stderr
    assert "mlflow:NAME/3 or mlflow:NAME@champion" in r.stderr


def test_a_revision_is_refused_for_an_mlflow_source(tmp_path):
    # The registry table says MLflow has no revisions: the manifest refuses one, before any request.
    write_manifest(tmp_path, {"m": {"source": "mlflow:m/1", "revision": "main"}})
    r = gpux("lock", cwd=tmp_path, check=False)
    assert r.returncode == 2 and "models.m.revision: registry 'mlflow' has no revisions" in r.stderr
    r = gpux("pull", "mlflow:m/1", "--revision", "main", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "an MLflow source takes no `revision:`" in r.stderr


def test_a_hostile_artifact_name_is_refused(mlflow_env, tmp_path):
    name = unique("hostile")
    folder = tmp_path / "model"
    folder.mkdir()
    for p in repo_dir("onnx-shipped").iterdir():
        if p.is_file():
            (folder / p.name).write_bytes(p.read_bytes())
    (folder / "onnx").mkdir()
    (folder / "onnx" / "model.onnx").write_bytes((repo_dir("onnx-shipped") / "onnx" / "model.onnx").read_bytes())
    (folder / "evil\\..\\name.json").write_text("{}")
    mlflow_env.log_model("onnx", name, source=folder)
    write_manifest(tmp_path, {"m": {"source": f"mlflow:{name}/1"}})
    r = gpux("lock", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "refusing unsafe file name" in r.stderr and "name.json" in r.stderr


@pytest.mark.slow
def test_credentials_come_from_mlflow_variables(hf_env, mlflow_server, mlflow_onnx, tmp_path_factory, tmp_path):
    from mlflowserver import MlflowServer

    # MLflow's basic-auth app, serving the session server's store (its password check makes logging slow)
    server = MlflowServer(
        tmp_path_factory.mktemp("mlflow-auth"), admin_password="gpux-admin-pass-7c1", data=mlflow_server.root
    )
    server.start()
    try:
        name, _ = mlflow_onnx
        write_manifest(tmp_path, {"m": {"source": f"mlflow:{name}/1"}})
        hf_env(MLFLOW_TRACKING_URI=server.uri, MLFLOW_TRACKING_USERNAME=None, MLFLOW_TRACKING_PASSWORD=None)
        r = gpux("lock", cwd=tmp_path, check=False)
        assert r.returncode == 1 and f"mlflow:{name}/1: not authorized by 127.0.0.1:" in r.stderr
        assert "(HTTP 401)" in r.stderr and "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in r.stderr
        hf_env(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD="wrong")
        assert "not authorized" in gpux("lock", cwd=tmp_path, check=False).stderr
        hf_env(MLFLOW_TRACKING_PASSWORD="gpux-admin-pass-7c1")
        gpux("lock", cwd=tmp_path)
        assert read_lock(tmp_path)["models"]["m"]["origin"]["version"] == "1"
        hf_env(GPUX_HOME=str(tmp_path_factory.mktemp("home")))  # an empty store: sync downloads, with the credentials
        assert "1 added" in gpux("sync", cwd=tmp_path).stdout
        assert "gpux-admin-pass-7c1" not in (tmp_path / "gpux.lock").read_text()
    finally:
        server.stop()


def test_pull_takes_an_mlflow_source_alias_included(mlflow_env, mlflow_onnx, tmp_path):
    name, _ = mlflow_onnx
    r = gpux("pull", f"mlflow:{name}/1", "--no-build", cwd=tmp_path)
    assert f"mlflow:{name}/1: commit " in r.stdout
    mlflow_env.set_alias(name, "latest-good", "1")
    r = gpux("pull", f"mlflow:{name}@latest-good", "--no-build", cwd=tmp_path)
    assert f"mlflow:{name}@latest-good: commit " in r.stdout


def test_bytes_changed_on_the_server_after_the_lock_are_refused(mlflow_env, hf_env, tmp_path, tmp_path_factory):
    name = unique("tampered")
    logged = mlflow_env.log_model("onnx", name, source=repo_dir("onnx-shipped"))
    write_manifest(tmp_path, {"m": {"source": f"mlflow:{name}/1"}})
    gpux("lock", cwd=tmp_path)
    stored = next(mlflow_env.root.glob(f"artifacts/*/models/{logged['model_id']}/artifacts/config.json"))
    stored.write_bytes(stored.read_bytes().replace(b"POSITIVE", b"NEGATIVE", 1))  # same size, other bytes
    hf_env(GPUX_HOME=str(tmp_path_factory.mktemp("home")))  # another machine: nothing in its store
    r = gpux("sync", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "error: model 'm': config.json: sha256 mismatch" in r.stderr
    assert not (tmp_path / ".gpux" / "models" / "m").exists()


def test_pickled_weights_are_refused_as_for_hub_models(mlflow_env, tmp_path):
    name = unique("pickled")
    logged = mlflow_env.log_model("transformers", name, source=repo_dir("bert"))
    # The registry holds the weights as a pickle only (as a model saved with safe_serialization=False).
    folder = next(mlflow_env.root.glob(f"artifacts/*/models/{logged['model_id']}/artifacts/model"))
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes((repo_dir("pickle-only") / "pytorch_model.bin").read_bytes())
    write_manifest(tmp_path, {"m": {"source": f"mlflow:{name}/1"}})
    gpux("lock", cwd=tmp_path)
    assert "pytorch_model.bin" in {f["path"] for f in read_lock(tmp_path)["models"]["m"]["files"]}
    r = gpux("sync", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "ships its weights only as pickle files (pytorch_model.bin)" in r.stderr
    assert "allow_pickle: true" in r.stderr
