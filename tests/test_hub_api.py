"""The Hub client (gpuxbuild/registries/hub_api.py) against the test Hub: the token it sends, the answers it
refuses, and what a pull imports."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading

import pytest
from helpers import gpux, publish
from hubserver import DEFAULT_TOKEN


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), stderr
    return lines[0]


def test_the_stored_login_is_sent_unless_implicit_tokens_are_off(hub, repo_id, hf_home, hf_env):
    publish(hub, repo_id, "bert", private=True)
    publish(hub, f"{repo_id}-b", "bert", private=True)
    (hf_home / "token").write_text(f"{DEFAULT_TOKEN}\n")  # what `huggingface-cli login` stores
    hf_env(HF_HOME=str(hf_home))

    gpux("pull", repo_id, "--no-build")
    assert {q.token for q in hub.requests(repo=repo_id, kind="api")} == {DEFAULT_TOKEN}

    hf_env(HF_HUB_DISABLE_IMPLICIT_TOKEN="1")
    r = gpux("pull", f"{repo_id}-b", "--no-build", check=False)
    assert r.returncode == 1
    assert "repository not found" in one_error_line(r.stderr) and "(or it is private)" in r.stderr
    assert {q.token for q in hub.requests(repo=f"{repo_id}-b", kind="api")} == {None}


@pytest.fixture
def not_a_hub():
    """A server that answers every request with 200 and an HTML page, as a captive portal or a wrong URL does."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><body>Sign in to continue</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_answer_that_is_no_listing_is_one_line(not_a_hub, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": not_a_hub}
    r = gpux("pull", "test-org/anything", "--no-build", check=False, env=env)
    assert r.returncode == 1
    line = one_error_line(r.stderr)
    assert "hf:test-org/anything@main" in line and "not a Hub repo listing" in line, line
    assert "HF_ENDPOINT" in r.stderr and "Traceback" not in r.stderr


def test_a_pull_imports_neither_huggingface_hubs_api_nor_its_utilities(hub, repo_id, tmp_path):
    """Their import costs 0.1-0.15 s more than `requests` alone: as long as a 100 MB download on loopback."""
    publish(hub, repo_id, "bert")
    code = (
        "import sys; from gpuxbuild.cli import main\n"
        "try:\n    main(['pull', sys.argv[1], '--no-build'])\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = ('huggingface_hub.hf_api', 'huggingface_hub.utils', 'huggingface_hub.file_download', 'tqdm')\n"
        "bad = [m for m in heavy if sys.modules.get(m) is not None]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code, repo_id], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert hub.count(repo=repo_id, kind="api") == 1
