"""`gpux search` across the test Hub, a real MLflow server and a real OCI registry (docs/registries.md)."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
import requests
from helpers import gpux
from mlflowserver import unique
from tinymodels import repo_dir


def push(host: str, repo: str, tag: str, files: dict[str, bytes]) -> None:
    """An OCI artifact of `files` (layers titled with their paths), pushed with the registry HTTP API as oras does."""
    base = f"http://{host}/v2/{repo}"

    def blob(data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        start = requests.post(f"{base}/blobs/uploads/", timeout=10)
        start.raise_for_status()
        location = start.headers["Location"]
        url = location if location.startswith("http") else f"http://{host}{location}"
        requests.put(url, params={"digest": digest}, data=data, timeout=10).raise_for_status()
        return {"digest": digest, "size": len(data)}

    config = {"mediaType": "application/vnd.oci.empty.v1+json", **blob(b"{}")}
    layers = [
        {"mediaType": "application/octet-stream", **blob(data), "annotations": {"org.opencontainers.image.title": path}}
        for path, data in sorted(files.items())
    ]
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config}
    manifest["layers"] = layers
    requests.put(
        f"{base}/manifests/{tag}",
        data=json.dumps(manifest),
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        timeout=10,
    ).raise_for_status()


@pytest.fixture(scope="module")
def word() -> str:
    """A word only this module's models have in their names."""
    return f"srch{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def everywhere(hub, mlflow_server, ociserver, word):
    """Models named with `word` on the Hub (two, with downloads and likes), in MLflow and on the OCI registry."""
    hub.create_repo(f"test-org/{word}-small", card={"pipeline_tag": "text-classification", "downloads": 7, "likes": 1})
    hub.create_repo(f"test-org/{word}-popular", card={"pipeline_tag": "fill-mask", "downloads": 900, "likes": 12})
    name = unique(word)
    mlflow_server.log_model("onnx", name, source=repo_dir("onnx-shipped"), alias="prod")
    small = {"config.json": b"{}", "model.onnx": b"onnx bytes"}
    push(ociserver.host, f"models/{word}-onnx", "v1", small)
    push(ociserver.host, f"models/{word}-onnx", "latest", small)
    push(ociserver.host, "models/unrelated", "v1", small)
    return name


def test_one_table_across_the_hub_mlflow_and_oci(everywhere, word, hf_env, mlflow_server, ociserver):
    hf_env(MLFLOW_TRACKING_URI=mlflow_server.uri, GPUX_SEARCH_OCI=ociserver.host)
    r = gpux("search", word)
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["SOURCE", "TASK", "DOWNLOADS", "LIKES", "UPDATED", "NOTE"]
    sources = [line.split()[0] for line in lines[1:-1]]
    # The Hub's by downloads, then MLflow's, then the OCI registry's: each the exact source `gpux add` takes.
    assert sources == [
        f"hf:test-org/{word}-popular",
        f"hf:test-org/{word}-small",
        f"mlflow:{everywhere}/1",
        f"oci://{ociserver.host}/models/{word}-onnx:latest",
    ]
    assert lines[1].split()[1:4] == ["fill-mask", "900", "12"]
    assert "aliases: prod -> 1" in lines[3] and "tags: v1" in lines[4]
    assert lines[-1] == "4 models"

    data = json.loads(gpux("search", word, "--json").stdout)
    assert [d["source"] for d in data] == sources
    assert data[0] == {
        "downloads": 900,
        "likes": 12,
        "name": f"test-org/{word}-popular",
        "note": None,
        "registry": "huggingface",
        "source": f"hf:test-org/{word}-popular",
        "task": "fill-mask",
        "updated": data[0]["updated"],
    }
    assert data[2]["registry"] == "mlflow" and data[3]["registry"] == "oci"


def test_registry_task_and_limit_narrow_the_search(everywhere, word, hf_env, mlflow_server, ociserver):
    hf_env(MLFLOW_TRACKING_URI=mlflow_server.uri)
    r = gpux("search", word, "--registry", "mlflow", "--json")
    assert [d["source"] for d in json.loads(r.stdout)] == [f"mlflow:{everywhere}/1"]
    r = gpux("search", word, "--registry", f"oci://{ociserver.host}", "--json")
    assert [d["source"] for d in json.loads(r.stdout)] == [f"oci://{ociserver.host}/models/{word}-onnx:latest"]
    r = gpux("search", word, "--task", "text-classification", "--json")  # only the Hub knows tasks
    assert [d["source"] for d in json.loads(r.stdout)] == [f"hf:test-org/{word}-small"]
    r = gpux("search", word, "--registry", "hf", "--limit", "1", "--json")
    assert [d["source"] for d in json.loads(r.stdout)] == [f"hf:test-org/{word}-popular"]
    r = gpux("search", "no-such-model-anywhere", "--registry", "hf")
    assert r.stdout == "0 models\n"


def test_a_registry_that_fails_is_a_warning_while_the_others_answer(everywhere, word, hf_env, ociauth):
    from processes import free_port

    locked = ociauth  # a registry that wants a login
    hf_env(GPUX_SEARCH_OCI=f"{locked.host} 127.0.0.1:{free_port()}", GPUX_HTTP_RETRIES="0")
    r = gpux("search", word)
    assert [line.split()[0] for line in r.stdout.splitlines()[1:-1]] == [
        f"hf:test-org/{word}-popular",
        f"hf:test-org/{word}-small",
    ]
    assert f"warning: search oci://{locked.host}: _catalog: 401 Unauthorized" in r.stderr
    assert "docker login" in r.stderr
    assert "warning: search oci://127.0.0.1:" in r.stderr and "connection refused or unreachable" in r.stderr
    # Asked alone, the failure is the error.
    r = gpux("search", word, "--registry", f"oci://{locked.host}", check=False)
    assert r.returncode == 1 and r.stderr.startswith(f"error: search oci://{locked.host}: _catalog: 401 Unauthorized")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--registry", "pypi"], "--registry 'pypi': cannot search it"),
        (["--registry", "oci://host/repo"], "'oci://host/repo' is not an OCI registry to search"),
        (["--task", "dancing"], "--task 'dancing': not a task gpuxbuild knows"),
    ],
)
def test_bad_options_are_usage_errors(args, message):
    r = gpux("search", "x", *args, check=False)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_mlflow_search_without_a_server_is_one_line(hf_env):
    hf_env(MLFLOW_TRACKING_URI=None)
    r = gpux("search", "x", "--registry", "mlflow", check=False)
    assert r.returncode == 1 and "MLFLOW_TRACKING_URI is not set" in r.stderr
