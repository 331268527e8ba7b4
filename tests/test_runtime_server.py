"""The HTTP server against a real uvicorn process on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from gpuxbuild.errors import MissingExtraError
from gpuxbuild.runtime import load

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(artifacts):
    built = artifacts("bert")
    port = _free_port()
    code = (f"from gpuxbuild.runtime import serve; serve({str(built.artifact)!r}, host='127.0.0.1', port={port})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {proc.stdout.read() if proc.poll() is not None else ''}")
            time.sleep(0.2)
        yield base, built
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_health_info_metrics(server):
    base, built = server
    assert httpx.get(f"{base}/health").json() == {"model": built.artifact.name, "status": "healthy"}
    info = httpx.get(f"{base}/info").json()
    assert info["task"] == "text-classification"
    assert {"name", "version", "format", "size_bytes", "size_mb", "inputs", "outputs", "metadata"} <= set(info)
    assert "path" not in info
    assert httpx.get(f"{base}/metrics").json()["provider"]["name"] == "CPUExecutionProvider"


def test_predict_matches_library(server):
    base, built = server
    body = {"text": ["hello world", "paris is in france"]}
    response = httpx.post(f"{base}/predict", json=body)
    assert response.status_code == 200
    assert response.json() == load(built.artifact).predict(body)


def test_predict_raw_tensors_like_the_gpux_runtime(server):
    base, built = server
    arrays = load(built.artifact).tokenizer.encode(["hello"]).arrays
    response = httpx.post(f"{base}/predict", json={k: v.tolist() for k, v in arrays.items()})
    assert response.status_code == 200 and set(response.json()) == {"logits"}


@pytest.mark.parametrize("content, status, match", [
    ('{"txt": "a"}', 400, "unknown input keys"),
    ("not json", 400, "not JSON"),
    ('{"text": 5}', 400, "string or a non-empty list"),
    ('{"input_ids": [1, 2], "attention_mask": [1, 1], "token_type_ids": [0, 0]}', 400, "rejected the inputs"),
])
def test_bad_requests_are_4xx_json(server, content, status, match):
    base, _ = server
    response = httpx.post(f"{base}/predict", content=content, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert match in response.json()["detail"]
    assert "Traceback" not in response.text


def test_missing_serve_extra_is_a_user_error(artifacts, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # makes `import fastapi` raise ImportError
    from gpuxbuild.runtime import create_app

    with pytest.raises(MissingExtraError, match=r"gpuxbuild\[serve\]"):
        create_app(artifacts("bert").artifact)
