"""An unreliable network: cut bodies, 5xx/429, servers that hang. The real CLI against the test Hub with faults
injected; transient failures are retried (resuming by Range), the rest end in one line naming the host."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import gpux, publish, write_manifest
from hubserver import DEFAULT_TOKEN

from gpuxbuild.network import redact_text, redact_url

CHUNK = 10 * 1024 * 1024  # the download chunk: what arrived before a cut is kept in whole chunks


@pytest.fixture
def silent_server():
    """A server that accepts connections (the kernel's backlog does) and never answers: its endpoint."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def fast_failing(**extra: str) -> dict:
    """The environment with short timeouts and one retry, as the tests of hanging servers need."""
    return {**os.environ, "GPUX_HTTP_TIMEOUT": "0.5", "GPUX_HTTP_RETRIES": "1", **extra}


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_a_body_cut_mid_transfer_is_resumed_by_range(hub, repo_id, gpux_home):
    publish(hub, repo_id, "bert")
    data = random.Random(3).randbytes(CHUNK + 2 * 1024 * 1024)
    hub.commit(repo_id, {"extra.safetensors": data})
    hub.cut_after(repo_id, "extra.safetensors", CHUNK + 1000)  # once, as a dropped connection
    hub.cut_after(repo_id, "config.json", 10)  # a small file, fetched while resolving
    hub.reset_log()
    r = gpux("pull", repo_id, "--no-build", check=False)
    assert r.returncode == 0, r.stderr
    ranges = [q.range for q in hub.requests("GET", repo=repo_id, path="extra.safetensors", kind="lfs")]
    assert ranges == [None, f"bytes={CHUNK}-"]  # the second attempt asks only for what did not arrive
    assert len(hub.requests("GET", repo=repo_id, path="config.json")) == 2
    digest = hashlib.sha256(data).hexdigest()
    assert (gpux_home / "objects" / "sha256" / digest[:2] / digest).read_bytes() == data
    assert gpux("cache", "verify").returncode == 0


def test_a_download_that_keeps_advancing_is_never_given_up(hub, repo_id, gpux_home):
    publish(hub, repo_id, "bert")
    data = random.Random(4).randbytes(3 * CHUNK + 1024)
    hub.commit(repo_id, {"extra.safetensors": data})
    hub.cut_after(repo_id, "extra.safetensors", CHUNK + 1000, times=3)  # every attempt brings one chunk, then drops
    hub.reset_log()
    r = gpux("pull", repo_id, "--no-build", check=False, env={**os.environ, "GPUX_HTTP_RETRIES": "1"})
    assert r.returncode == 0, r.stderr
    ranges = [q.range for q in hub.requests("GET", repo=repo_id, path="extra.safetensors", kind="lfs")]
    assert ranges == [None] + [f"bytes={n * CHUNK}-" for n in (1, 2, 3)]


def test_a_transfer_cut_each_time_ends_in_one_line_naming_the_cdn(hub, repo_id, gpux_home):
    publish(hub, repo_id, "bert")
    hub.cut_after(repo_id, "model.safetensors", 1000, times=10)
    r = gpux("pull", repo_id, "--no-build", check=False, env={**os.environ, "GPUX_HTTP_RETRIES": "1"})
    assert r.returncode == 1
    line = one_error_line(r.stderr)
    cdn = hub.cdn_endpoint.removeprefix("http://")
    assert f"model.safetensors: transfer from {cdn} failed (ChunkedEncodingError, 2 attempts)" in line
    assert "run the command again" in r.stderr
    assert len(hub.requests("GET", repo=repo_id, path="model.safetensors", kind="lfs")) == 2


@pytest.mark.parametrize("kind, status", [("api", 503), ("resolve", 429), ("lfs", 500)])
def test_5xx_and_429_are_retried_as_retry_after_says(hub, repo_id, kind, status):
    publish(hub, repo_id, "bert")
    hub.reset_log()
    hub.fail(kind, status, times=2, retry_after="0")
    r = gpux("pull", repo_id, "--no-build", check=False)
    assert r.returncode == 0, r.stderr
    answers = [q.status for q in hub.requests(kind=kind)]  # in parallel requests' order of arrival
    assert answers.count(status) == 2 and set(answers) <= {status, 200, 302}  # 302: a large file's CDN location


def test_ctrl_c_ends_a_retry_wait_at_once(hub, repo_id):
    publish(hub, repo_id, "bert")
    hub.fail("lfs", 503, times=10, retry_after="60")  # the longest wait honoured
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpuxbuild", "pull", repo_id, "--no-build"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while hub.count("GET", kind="lfs") == 0:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.5)  # well inside the wait
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)  # half the wait: the wait did not run out
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert hub.count("GET", kind="lfs") == 1


def test_retries_spent_end_in_one_line_naming_the_host(hub, repo_id, tmp_path):
    publish(hub, repo_id, "bert")
    hub.fail("api", 503, times=10, retry_after="0")
    write_manifest(tmp_path, {"m": {"source": f"hf:{repo_id}"}})
    r = gpux("lock", cwd=tmp_path, check=False, env={**os.environ, "GPUX_HTTP_RETRIES": "2"})
    assert r.returncode == 1
    line = one_error_line(r.stderr)
    host = hub.endpoint.removeprefix("http://")
    assert f"{host} answered HTTP 503, 3 attempts" in line and repo_id in line
    assert "GPUX_HTTP_RETRIES" in r.stderr
    assert hub.count(kind="api") == 3 and not (tmp_path / "gpux.lock").exists()


@pytest.mark.parametrize("command", ["pull", "lock"])
def test_a_server_that_never_answers_times_out(silent_server, tmp_path, command):
    write_manifest(tmp_path, {"m": {"source": "hf:test-org/anything"}})
    args = ("pull", "test-org/anything", "--no-build") if command == "pull" else ("lock",)
    r = gpux(*args, cwd=tmp_path, check=False, env=fast_failing(HF_ENDPOINT=silent_server), timeout=60)
    assert r.returncode == 1
    line = one_error_line(r.stderr)
    assert f"cannot reach {silent_server.removeprefix('http://')} (ReadTimeout, 2 attempts)" in line


def test_huggingface_hub_timeout_variables_are_honoured(silent_server, hub, repo_id):
    env = {**os.environ, "HF_ENDPOINT": silent_server, "HF_HUB_ETAG_TIMEOUT": "1", "GPUX_HTTP_RETRIES": "0"}
    r = gpux("pull", "test-org/anything", "--no-build", check=False, env=env, timeout=60)
    assert r.returncode == 1 and "(ReadTimeout, 1 attempt)" in one_error_line(r.stderr)

    publish(hub, repo_id, "bert")
    hub.stall("lfs", 30, after_headers=True, times=5)
    env = {**os.environ, "HF_HUB_DOWNLOAD_TIMEOUT": "1", "GPUX_HTTP_RETRIES": "0"}
    r = gpux("pull", repo_id, "--no-build", check=False, env=env, timeout=60)
    cdn = hub.cdn_endpoint.removeprefix("http://")
    assert r.returncode == 1 and f"cannot reach {cdn} (ReadTimeout, 1 attempt)" in one_error_line(r.stderr)


def test_stalled_requests_time_out_and_are_retried(hub, repo_id):
    publish(hub, repo_id, "bert")
    hub.stall("api", 30)  # the listing never answers once
    r = gpux("pull", repo_id, "--no-build", check=False, env=fast_failing(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert hub.count(kind="api") == 2

    hub.commit(repo_id, {"extra.safetensors": b"x" * 20_000})
    hub.stall("lfs", 30, after_headers=True)  # headers, then nothing: the read times out, the retry succeeds
    hub.reset_log()
    r = gpux("pull", repo_id, "--no-build", "--upgrade", check=False, env=fast_failing(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(hub.requests("GET", kind="lfs")) == 2

    hub.stall("api", 30, after_headers=True, times=5)  # the metadata request, every time
    r = gpux("pull", repo_id, "--no-build", "--upgrade", check=False, env=fast_failing(), timeout=60)
    assert r.returncode == 1 and "(ReadTimeout, 2 attempts)" in one_error_line(r.stderr)


def test_credentials_in_hf_endpoint_are_never_printed(hub, repo_id, tmp_path):
    down = {**os.environ, "HF_ENDPOINT": "http://user:s3cret@127.0.0.1:9", "GPUX_HTTP_RETRIES": "0"}
    r = gpux("pull", "test-org/anything", "--no-build", check=False, env=down)
    assert r.returncode == 1 and "cannot reach 127.0.0.1:9" in one_error_line(r.stderr)
    assert "s3cret" not in r.stderr + r.stdout
    up = {**os.environ, "HF_ENDPOINT": hub.endpoint.replace("http://", "http://user:s3cret@")}
    r = gpux("pull", "test-org/does-not-exist", "--no-build", check=False, env=up)
    line = one_error_line(r.stderr)
    assert r.returncode == 1 and "repository not found on http://***@127.0.0.1" in line
    assert "s3cret" not in r.stderr + r.stdout


def test_redact_url():
    assert redact_url("https://u:p@host:8080/a?x=1") == "https://***@host:8080/a?x=1"
    assert redact_url("https://cdn/x?X-Amz-Signature=abc&X-Amz-Credential=k&part=2&token=t") == (
        "https://cdn/x?X-Amz-Signature=***&X-Amz-Credential=***&part=2&token=***"
    )
    assert redact_url("https://huggingface.co") == "https://huggingface.co"
    assert redact_text("GET 'https://a:b@cas.example/x?sig=1' failed; see https://docs") == (
        "GET 'https://***@cas.example/x?sig=***' failed; see https://docs"
    )


def test_a_bad_setting_is_one_line(hub, repo_id):
    publish(hub, repo_id, "bert")
    r = gpux("pull", repo_id, "--no-build", check=False, env={**os.environ, "GPUX_HTTP_RETRIES": "many"})
    assert r.returncode == 1 and "GPUX_HTTP_RETRIES='many'" in one_error_line(r.stderr)


def test_the_token_goes_to_the_hub_never_to_the_cdn(hub, repo_id):
    publish(hub, repo_id, "bert", private=True)
    r = gpux("pull", repo_id, "--no-build", check=False, env={**os.environ, "HF_TOKEN": DEFAULT_TOKEN})
    assert r.returncode == 0, r.stderr
    assert {q.token for q in hub.requests(repo=repo_id, kind="api")} == {DEFAULT_TOKEN}
    assert [q.token for q in hub.requests("GET", repo=repo_id, path="model.safetensors", kind="lfs")] == [None]
