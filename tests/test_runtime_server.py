"""The HTTP server against a real uvicorn process on 127.0.0.1."""

from __future__ import annotations

import json
import select
import socket
import sys
import time
from pathlib import Path

import pytest

from gpuxbuild.errors import MissingExtraError
from gpuxbuild.runtime import load

pytestmark = pytest.mark.convert  # exports with torch, or runs what it exported

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from serving import serving  # noqa: E402


@pytest.fixture(scope="module")
def server(artifacts):
    built = artifacts("bert")
    with serving(built.artifact) as (base, _):
        yield base, built


def test_health_info_metrics(server):
    base, built = server
    assert httpx.get(f"{base}/health").json() == {"model": built.artifact.name, "status": "healthy"}
    info = httpx.get(f"{base}/info").json()
    assert info["task"] == "text-classification"
    assert {"name", "version", "format", "size_bytes", "size_mb", "inputs", "outputs", "metadata"} <= set(info)
    assert "path" not in info
    assert info["providers"] == ["CPUExecutionProvider"]
    metrics = httpx.get(f"{base}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'gpux_requests_total{path="/info",status="200"}' in metrics.text


def test_predict_matches_library(server):
    base, built = server
    body = {"text": ["hello world", "paris is in france"]}
    response = httpx.post(f"{base}/predict", json=body)
    assert response.status_code == 200
    assert response.json() == load(built.artifact).predict(body)


def test_inference_client_on_the_bare_url(server):
    """InferenceClient(model=URL) POSTs to / (a bare host): a single-model server answers there and at /predict."""
    from huggingface_hub import InferenceClient

    base, built = server
    want = load(built.artifact).predict({"text": "hello world"})["labels"]
    for url in (base, f"{base}/predict"):
        got = InferenceClient(model=url).text_classification("hello world")
        assert [(x.label, round(x.score, 5)) for x in got] == [(x["label"], round(x["score"], 5)) for x in want]


def test_predict_raw_tensors_like_the_gpux_runtime(server):
    base, built = server
    arrays = load(built.artifact).tokenizer.encode(["hello"]).arrays
    response = httpx.post(f"{base}/predict", json={k: v.tolist() for k, v in arrays.items()})
    assert response.status_code == 200 and set(response.json()) == {"logits"}


@pytest.mark.parametrize(
    "content, status, match",
    [
        ('{"txt": "a"}', 400, "unknown input keys"),
        ("not json", 400, "not JSON"),
        ('{"text": 5}', 400, "string or a non-empty list"),
        ('{"input_ids": [1, 2], "attention_mask": [1, 1], "token_type_ids": [0, 0]}', 400, "rejected the inputs"),
        ('{"text": "a", "top_k": "x"}', 400, "option top_k must be an integer >= 1"),
        ('{"text": "a", "top_k": -5}', 400, "option top_k must be an integer >= 1"),
        ('{"text": "a", "top_k": true}', 400, "option top_k must be an integer >= 1"),
        ('{"text": "a", "temperature": "hot"}', 400, "option temperature must be a number > 0"),
        ('{"text": "a", "top_p": 2}', 400, "option top_p must be a number in (0, 1]"),
        ('{"text": "a", "seed": -1}', 400, "option seed must be an integer >= 0"),
        ('{"text": "a", "do_sample": "yes"}', 400, "option do_sample must be true or false"),
        ('{"text": "a", "max_new_tokens": 0}', 400, "option max_new_tokens must be an integer >= 1"),
        ('{"text": "a", "max_answer_len": 1.5}', 400, "option max_answer_len must be an integer >= 1"),
        ('{"text": "a", "aggregation_strategy": ["x"]}', 400, "option aggregation_strategy must be"),
        (
            '{"input_ids": [[' + "9" * 40 + ']], "attention_mask": [[1]], "token_type_ids": [[0]]}',
            400,
            "tensor input 'input_ids' is not a rectangular tensor(int64)",
        ),
        ("[" * 5000 + "]" * 5000, 400, "nested deeper than 32 levels"),
        ('{"text": ' + "[" * 40 + '"a"' + "]" * 40 + "}", 400, "nested deeper than 32 levels"),
        (b'{"text": "\xff\xfe"}', 400, "not JSON"),
    ],
)
def test_bad_requests_are_4xx_json(server, content, status, match):
    base, _ = server
    response = httpx.post(f"{base}/predict", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert match in response.json()["detail"] and response.json()["error"] == response.json()["detail"]
    assert "Traceback" not in response.text


def test_head_and_unknown_paths_answer_json(server):
    base, _ = server
    assert httpx.head(f"{base}/health").status_code == 200
    missing = httpx.get(f"{base}/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "Not Found"
    wrong = httpx.get(f"{base}/predict")
    assert wrong.status_code == 405 and wrong.json()["error"] == "Method Not Allowed"


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


# The server's peak resident memory after the flood below: about 175 MB here (Python, onnxruntime,
# FastAPI and the tiny model); without limits a 6 MB body once took a server with a real model past 20 GB.
RSS_BOUND_MB = 600


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak RSS from /proc")
def test_hostile_bodies_are_refused_and_memory_stays_bounded(artifacts):
    built = artifacts("bert")
    with serving(built.artifact) as (base, proc):
        many = {"text": ["the quick brown fox " * 150] * 2000}  # a 6 MB body of texts
        r = httpx.post(f"{base}/predict", json=many, timeout=60)
        assert r.status_code == 413 and "over the limit of 1048576 bytes" in r.json()["error"]

        huge = b'{"text": "' + b"a b c d " * 6_500_000 + b'"}'  # a 50 MB text, sent chunked (no Content-Length)
        r = httpx.post(
            f"{base}/predict",
            content=iter([huge[i : i + (1 << 20)] for i in range(0, len(huge), 1 << 20)]),
            timeout=120,
        )
        assert r.status_code == 413 and "bytes" in r.json()["error"]

        batch = {"text": ["hello world " * 250] * 100}  # 300 KB, 100 texts
        r = httpx.post(f"{base}/predict", json=batch, timeout=60)
        assert r.status_code == 413 and "100 inputs, over the batch limit of 32" in r.json()["error"]

        long_text = "paris is in france and berlin is in germany " * 20_000  # 900 KB: allowed, cut before tokenizing
        r = httpx.post(f"{base}/predict", json={"text": long_text}, timeout=60)
        assert r.status_code == 200
        assert r.json() == load(built.artifact).predict({"text": long_text[:2000]})

        full = {"text": ["paris is in france and berlin is in germany " * 300] * 32}  # the largest batch allowed
        for _ in range(3):
            assert httpx.post(f"{base}/predict", json=full, timeout=120).status_code == 200

        assert httpx.get(f"{base}/health").json()["status"] == "healthy"
        assert _peak_rss_mb(proc.pid) < RSS_BOUND_MB


def test_a_full_queue_answers_503_with_retry_after_while_health_answers(artifacts):
    built = artifacts("bert")
    with serving(built.artifact, GPUX_SERVE_MAX_QUEUE="1", GPUX_SERVE_RETRY_AFTER_S="3") as (base, _):
        port = int(base.rsplit(":", 1)[1])
        body = b'{"text": "hello world"}'
        with socket.create_connection(("127.0.0.1", port)) as slow:
            # A client that sends half its body holds the only queue place until it sends the rest.
            slow.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body[:5]
            )
            deadline = time.monotonic() + 30
            while True:
                r = httpx.post(f"{base}/predict", json={"text": "hi"})
                if r.status_code == 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)  # the slow request may not have reached the app yet
            assert r.status_code == 503 and r.headers["retry-after"] == "3"
            assert "busy" in r.json()["error"]
            assert httpx.get(f"{base}/health").status_code == 200
            slow.sendall(body[5:])
            answer = slow.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        assert httpx.post(f"{base}/predict", json={"text": "hi"}).status_code == 200


def test_missing_serve_extra_is_a_user_error(artifacts, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # makes `import fastapi` raise ImportError
    from gpuxbuild.runtime import create_app

    with pytest.raises(MissingExtraError, match=r"gpuxbuild\[serve\]"):
        create_app(artifacts("bert").artifact)


def test_health_answers_while_a_prediction_runs(artifacts):
    built = artifacts("gpt2")
    with serving(built.artifact) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        body = json.dumps({"text": ["hello world"] * 32, "max_new_tokens": 120}).encode()  # seconds of decoding
        with socket.create_connection(("127.0.0.1", port)) as busy:
            busy.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
            time.sleep(0.5)  # let the prediction start
            assert httpx.get(f"{base}/health").status_code == 200
            running, _, _ = select.select([busy], [], [], 0)
            assert not running, "/health was answered only after the prediction"
            busy.settimeout(120)
            assert busy.recv(65536).startswith(b"HTTP/1.1 200")


def _failing_copy(artifact: Path, dest: Path) -> Path:
    """A copy of `artifact` whose model.onnx takes the same inputs but fails inside onnxruntime on every text
    longer than two tokens (a Reshape to [1, 2]): a real runtime failure, not a refused input."""
    import shutil

    import onnx
    from onnx import TensorProto, helper

    shutil.copytree(artifact, dest)
    graph = dest / json.loads((dest / "artifact.json").read_text())["graphs"]["model"]
    original = onnx.load(str(graph), load_external_data=False).graph
    first = original.input[0].name
    nodes = [
        helper.make_node("Cast", [first], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Constant", [], ["shape"], value=helper.make_tensor("s", TensorProto.INT64, [2], [1, 2])),
        *(helper.make_node("Reshape", ["as_float", "shape"], [o.name]) for o in original.output),
    ]
    outputs = [helper.make_tensor_value_info(o.name, TensorProto.FLOAT, None) for o in original.output]
    model = helper.make_model(
        helper.make_graph(nodes, "fails", list(original.input), outputs), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    for p in graph.parent.glob(graph.name + "*"):
        p.chmod(0o644)
        p.unlink()
    onnx.save(model, str(graph))
    return dest


def test_a_failure_inside_inference_is_a_500_in_the_protocols_shape_and_counted(artifacts, tmp_path):
    """onnxruntime failing on inputs it took answers 500 (not 400: the request was fine) in each protocol's
    error shape, with no traceback; /metrics counts it under errors by code; the server keeps serving."""
    from huggingface_hub import InferenceClient
    from huggingface_hub.errors import HfHubHTTPError

    openai = pytest.importorskip("openai")
    folders = {
        "cls": _failing_copy(artifacts("bert").artifact, tmp_path / "cls"),
        "emb": _failing_copy(artifacts("sentence-transformers").artifact, tmp_path / "emb"),
    }
    with serving(folders) as (base, _):
        gpux_api = httpx.post(f"{base}/models/cls/predict", json={"text": "paris is in france"})
        assert gpux_api.status_code == 500, gpux_api.text
        body = gpux_api.json()
        assert (
            set(body) == {"detail", "error", "hint"} and "onnxruntime failed while running model.onnx" in body["error"]
        )
        assert "Reshape" in body["error"] and "Traceback" not in gpux_api.text
        batched = httpx.post(f"{base}/models/cls", json={"inputs": ["paris is in france", "a b c"]})
        assert batched.status_code == 500 and "onnxruntime failed" in batched.json()["error"]
        with pytest.raises(HfHubHTTPError) as hf:
            InferenceClient(model=f"{base}/models/cls").text_classification("paris is in france")
        assert hf.value.response.status_code == 500
        emb = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.InternalServerError) as oa:
            emb.embeddings.create(model="emb", input="paris is in france")
        error = oa.value.response.json()["error"]
        assert error["type"] == "server_error" and "onnxruntime failed" in error["message"]
        assert "Traceback" not in oa.value.response.text
        # The caller's own tensors failing the same way remain the caller's error (400).
        raw = httpx.post(
            f"{base}/models/cls/predict",
            json={"input_ids": [[1, 2, 3]], "attention_mask": [[1, 1, 1]], "token_type_ids": [[0, 0, 0]]},
        )
        assert raw.status_code == 400 and "rejected the inputs" in raw.json()["error"]
        assert httpx.get(f"{base}/health").status_code == 200
        metrics = httpx.get(f"{base}/metrics").text
        assert 'gpux_errors_total{status="500"} 4.0' in metrics
        assert 'gpux_requests_total{path="/models/{name}/predict",status="500"} 1.0' in metrics
        assert 'gpux_requests_total{path="/v1/embeddings",status="500"} 1.0' in metrics
