"""`gpux run` / `doctor` through the CLI, on models locked and synced from the test Hub."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest
from helpers import gpux, publish, write_manifest
from serving import gpux_serving

from gpuxbuild.runtime import load


@pytest.fixture
def project(hub, repo_id, tmp_path):
    publish(hub, repo_id, "onnx-shipped", card={"pipeline_tag": "text-classification"})
    write_manifest(tmp_path, {"clf": {"source": f"hf:{repo_id}"}})
    gpux("sync", cwd=tmp_path)
    return tmp_path


def _run(project, *args, check=True):
    r = gpux("run", *args, cwd=project, check=check)
    return r, (json.loads(r.stdout) if r.returncode == 0 else None)


def test_input_forms_agree_with_the_library(project, tmp_path):
    expected = load(project / ".gpux" / "models" / "clf").predict({"text": "I love this"})
    _, positional = _run(project, "clf", "I love this")  # stdout is a pipe: plain JSON
    _, inline = _run(project, "clf", "--input", '{"text": "I love this"}')
    (tmp_path / "in.json").write_text('{"text": "I love this"}')
    _, at_file = _run(project, "clf", "--input", "@in.json")
    _, file_opt = _run(project, "clf", "--file", "in.json")
    assert positional == inline == at_file == file_opt == expected
    assert expected["label"] in ("NEGATIVE", "POSITIVE")
    scores = [x["score"] for x in expected["labels"]]
    assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-6

    _, batch = _run(project, "clf", "--input", '["I love this", "This is terrible"]')
    assert batch["results"][0] == expected and len(batch["results"]) == 2


def test_raw_tensors_in_the_gpux_runtime_format(project):
    model = load(project / ".gpux" / "models" / "clf")
    enc = model.tokenizer.encode(["I love this"]).arrays
    feed = {k: v.tolist() for k, v in enc.items() if k in model.input_types}
    _, out = _run(project, "clf", "--input", json.dumps(feed))
    logits = out["logits"][0]
    best = max(range(len(logits)), key=logits.__getitem__)
    assert model.config["id2label"][str(best)] == model.predict({"text": "I love this"})["label"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["clf", "--input", "{not json"], "not valid JSON"),
        (["clf", "--input", "@missing.json"], "cannot read input file"),
        (["clf", "--input", '{"txt": "x"}'], "unknown input keys"),
        (["clf"], "give the input once"),
        (["nope", "x"], "no model 'nope'"),
        (["clf", "--provider", "cuda", "x"], "available"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(project, args, message):
    r, _ = _run(project, *args, check=False)
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr


def test_benchmark_reports_percentiles(project):
    _, out = _run(project, "clf", "x", "--benchmark", "--runs", "5", "--warmup", "1")
    assert set(out["latency_ms"]) >= {"p50", "p95", "p99"} and out["runs"] == 5 and out["throughput_per_s"] > 0


def test_run_by_path_and_doctor(project):
    folder = project / ".gpux" / "models" / "clf"
    _, by_path = _run(project, str(folder), "I love this")
    _, by_name = _run(project, "clf", "I love this")
    assert by_path == by_name
    report = json.loads(gpux("doctor", "--json", cwd=project).stdout)
    assert "CPUExecutionProvider" in report["available_providers"]
    assert report["artifacts"][0]["providers"][-1] == "CPUExecutionProvider"


def test_run_repo_id_pulls_and_builds_like_docker_run(hub, repo_id, tmp_path):
    publish(hub, repo_id, "onnx-shipped", card={"pipeline_tag": "text-classification"})
    r = gpux("run", repo_id, "I love this", cwd=tmp_path)
    assert "pulling and building" in r.stderr
    first = json.loads(r.stdout)
    hub.reset_log()
    r2 = gpux("run", repo_id, "I love this", cwd=tmp_path)
    assert json.loads(r2.stdout) == first and hub.count() == 0  # found locally: no network
    assert repo_id in gpux("ls", cwd=tmp_path).stdout


@pytest.mark.convert
@pytest.mark.slow
def test_generation_through_the_cli_matches_the_library(hub, repo_id, tmp_path):
    publish(hub, repo_id, "gpt2", card={"pipeline_tag": "text-generation"})
    write_manifest(tmp_path, {"gen": {"source": f"hf:{repo_id}"}})
    gpux("sync", cwd=tmp_path)
    _, out = _run(tmp_path, "gen", "hello world", "--max-new-tokens", "6")
    ref = load(tmp_path / ".gpux" / "models" / "gen").predict({"text": "hello world", "max_new_tokens": 6})
    assert out == ref and out["finish_reason"] in ("length", "eos")
    _, s1 = _run(tmp_path, "gen", "hello world", "--max-new-tokens", "6", "--temperature", "0.8", "--seed", "3")
    _, s2 = _run(tmp_path, "gen", "hello world", "--max-new-tokens", "6", "--temperature", "0.8", "--seed", "3")
    assert s1 == s2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", '{"text": "x", "top_k": "x"}'], "option top_k must be an integer >= 1"),
        (["--input", '{"text": "x", "top_k": -5}'], "option top_k must be an integer >= 1"),
        (["--input", '{"text": "x", "temperature": [1]}'], "option temperature must be a number > 0"),
        (["--input", '{"text": "x", "do_sample": 1}'], "option do_sample must be true or false"),
        (["x", "--top-k", "-5"], "--top-k"),
        (["x", "--top-p", "2"], "--top-p"),
        (["x", "--temperature", "0"], "--temperature"),
        (["x", "--seed", "-1"], "--seed"),
        (["x", "--max-new-tokens", "0"], "--max-new-tokens"),
        (["x", "--device-id", "-1"], "--device-id"),
        (["x", "--benchmark", "--runs", "0"], "--runs"),
        (["x", "--benchmark", "--warmup", "-1"], "--warmup"),
        (["x", "--top-k", "many"], "--top-k"),
    ],
)
def test_bad_options_exit_2_before_the_model_loads(project, args, message):
    # PYTHONPROFILEIMPORTTIME lists every import on stderr: the model must not even be imported.
    r = gpux("run", "clf", *args, cwd=project, check=False, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    errors = [line for line in r.stderr.splitlines() if not line.startswith("import time:")]
    assert r.returncode == 2 and message in "\n".join(errors) and "Traceback" not in r.stderr
    assert "onnxruntime" not in r.stderr


def test_a_bad_input_key_fails_before_loading_the_model(project):
    r = gpux(
        "run",
        "clf",
        "--input",
        '{"txt": "x"}',
        cwd=project,
        check=False,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )
    errors = [line for line in r.stderr.splitlines() if not line.startswith("import time:")]
    assert r.returncode == 2 and "unknown input keys ['txt']" in errors[0]
    assert "onnxruntime" not in r.stderr and "notice" not in r.stderr


def test_an_image_for_a_text_model_is_one_line(project):
    (project / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    r = gpux("run", "clf", "--file", "picture.png", cwd=project, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (error,) = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert "this model takes text, not images or sound (its task is text-classification)" in error


def _on_a_terminal(project, *args) -> str:
    """stdout+stderr of `gpux ARGS` run under a real pseudo-terminal (util-linux `script`)."""
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "gpuxbuild", *args])
    r = subprocess.run(
        ["script", "-qefc", command, "/dev/null"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert r.returncode == 0, r.stdout
    return r.stdout.replace("\r\n", "\n")


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux script for a pseudo-terminal")
def test_on_a_terminal_the_answer_is_readable(project):
    expected = load(project / ".gpux" / "models" / "clf").predict({"text": ["I love this", "This is terrible"]})
    one, two = (f"{r['label']} ({r['score']:.3f})" for r in expected["results"])
    assert _on_a_terminal(project, "run", "clf", "I love this").strip().splitlines()[-1] == one
    assert _on_a_terminal(project, "run", "clf", "I love this", "This is terrible").strip().splitlines()[-2:] == [
        one,
        two,
    ]
    # JSON stays for --json, on a terminal too, and for pipes (the tests above)
    shown = _on_a_terminal(project, "run", "clf", "I love this", "--json")
    assert json.loads(shown[shown.index("{") :]) == expected["results"][0]  # after stderr's notice line


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--port", "99999"], {}, "--port"),
        (["--port", "http"], {}, "--port"),
        (["--workers", "0"], {}, "--workers"),
        (["--max-queue", "0"], {}, "--max-queue"),
        ([], {"GPUX_SERVE_MAX_BATCH": "lots"}, "--max-batch"),
    ],
)
def test_serve_rejects_bad_options_with_exit_2(project, args, env, message):
    r = gpux("serve", "clf", *args, cwd=project, check=False, env={**os.environ, **env}, timeout=60)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("workers", ["1", "2"])  # 2: uvicorn's worker processes get the limits too
def test_serve_limits_from_the_command_line(project, workers):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    args = ("clf", "--max-batch", "2", "--workers", workers, "--max-body-bytes", "1000")
    with gpux_serving(*args, cwd=project) as (base, _):
        assert httpx.head(f"{base}/health").status_code == 200
        assert httpx.post(f"{base}/predict", json={"text": ["a", "b"]}).status_code == 200
        r = httpx.post(f"{base}/predict", json={"text": ["a", "b", "c"]})
        assert r.status_code == 413 and "batch limit of 2" in r.json()["error"]
        r = httpx.post(f"{base}/predict", json={"text": "a" * 2000})
        assert r.status_code == 413 and "limit of 1000 bytes" in r.json()["error"]


@pytest.mark.parametrize(
    "result, lines",
    [
        ({"label": "POSITIVE", "score": 0.99812, "labels": []}, ["POSITIVE (0.998)"]),
        ({"results": [{"label": "A", "score": 0.5}, {"label": "B", "score": 0.25}]}, ["A (0.500)", "B (0.250)"]),
        (
            {"embedding": [0.5, -0.25, 0.125, 1.0, 2.0]},
            ["embedding of 5 dimensions [0.5000, -0.2500, 0.1250, 1.0000, ...]"],
        ),
        ({"similarity": 0.87654}, ["similarity 0.8765"]),
        ({"generated_text": "hello world", "completion": " world"}, ["hello world"]),
        ({"answer": "paris", "score": 0.75, "start": 0, "end": 5}, ["paris (0.750)"]),
        ([{"answer": "paris", "score": 0.75}, {"answer": "lyon", "score": 0.1}], ["paris (0.750)", "lyon (0.100)"]),
        (
            {
                "masks": [
                    [
                        {"token_str": "paris", "score": 0.5},
                        {"token_str": "lyon", "score": 0.25},
                        {"token_str": "nice", "score": 0.125},
                        {"token_str": "x", "score": 0.1},
                    ]
                ]
            },
            ["paris (0.500), lyon (0.250), nice (0.125)"],
        ),
        (
            {"entities": [{"entity_group": "PER", "word": "john smith", "score": 0.9, "start": 0, "end": 10}]},
            ["john smith: PER (0.900)"],
        ),
        ({"entities": []}, ["no entities"]),
        ({"logits": [[0.1, 0.2]]}, ["logits: shape [1, 2]"]),
    ],
)
def test_readable_answers_for_every_task(result, lines):
    from gpuxbuild.cli.run_cmds import _readable

    assert _readable(result) == lines


def test_inference_api_payloads_and_parameters(project):
    expected = load(project / ".gpux" / "models" / "clf").predict({"text": "I love this"})
    labels = [{"label": x["label"], "score": x["score"]} for x in expected["labels"]]
    _, hf = _run(project, "clf", "--input", '{"inputs": "I love this"}')
    assert hf == [labels]  # the Inference API's answer: [[{label, score}, ...]]
    _, top = _run(project, "clf", "--input", '{"inputs": "I love this", "parameters": {"top_k": 1}}')
    assert top == [labels[:1]]
    _, also = _run(project, "clf", "--input", '{"inputs": "I love this"}', "--parameters", '{"top_k": 1}')
    assert also == top
    _, plain = _run(project, "clf", "I love this", "--parameters", '{"top_k": 1}')
    assert plain["labels"] == labels[:1]
    for args, message in [
        (["I love this", "--parameters", "[1]"], "--parameters must be a JSON object"),
        (["I love this", "--parameters", "{"], "--parameters: not valid JSON"),
        (["--input", '{"inputs": "a", "parameters": {"top_k": 0}}'], "option top_k must be an integer >= 1"),
        (["--input", '{"inputs": "a", "parameters": {"watermark": true}}'], "not used by the model: ['watermark']"),
        (["--input", '{"inputs": "a", "extra": 1}'], "unknown payload keys ['extra']"),
    ]:
        r = gpux("run", "clf", *args, cwd=project, check=False)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_serve_without_a_name_serves_every_synced_model(hub, repo_id, tmp_path):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    r = gpux("serve", cwd=tmp_path, check=False)
    assert r.returncode == 2 and "no synced models" in r.stderr and "gpux sync" in r.stderr
    publish(hub, repo_id, "onnx-shipped", card={"pipeline_tag": "text-classification"})
    write_manifest(tmp_path, {"clf": {"source": f"hf:{repo_id}"}, "other": {"source": f"hf:{repo_id}"}})
    gpux("sync", cwd=tmp_path)
    with gpux_serving(cwd=tmp_path) as (base, _):
        health = httpx.get(f"{base}/health", timeout=1).json()
        assert health == {"models": ["clf", "other"], "status": "healthy"}
        one = httpx.post(f"{base}/models/clf", json={"inputs": "I love this"}).json()
        assert one == httpx.post(f"{base}/", json={"inputs": "I love this", "model": "other"}).json()
        assert httpx.post(f"{base}/predict", json={"text": "I love this", "model": "clf"}).json()["label"]
        r = httpx.post(f"{base}/predict", json={"text": "I love this"})
        assert r.status_code == 400 and "say which" in r.json()["error"]


def test_every_id_pull_takes_works_for_run_inspect_and_rm(hub, tmp_path):
    """Legacy single-segment Hub ids (`gpt2`), hf:/huggingface: prefixes and @rev, as `gpux pull` takes them."""
    publish(hub, "legacy-sentiment", "onnx-shipped", card={"pipeline_tag": "text-classification"})
    r = gpux("run", "legacy-sentiment", "I love this", cwd=tmp_path)  # not pulled yet, no project: pulled now
    first = json.loads(r.stdout)
    for name in ("legacy-sentiment", "hf:legacy-sentiment", "huggingface:legacy-sentiment@main"):
        assert json.loads(gpux("run", name, "I love this", cwd=tmp_path).stdout) == first
        assert json.loads(gpux("inspect", name, "--json", cwd=tmp_path).stdout)["repo"] == "legacy-sentiment"
    assert (
        json.loads(gpux("run", "legacy-sentiment", "I love this", "--revision", "main", cwd=tmp_path).stdout) == first
    )
    r = gpux("run", "legacy-sentiment@main", "x", "--revision", "v2", cwd=tmp_path, check=False)
    assert r.returncode == 2 and "revision given twice" in r.stderr
    write_manifest(tmp_path, {})  # inside a project, a pulled legacy id still runs
    gpux("lock", cwd=tmp_path)
    assert json.loads(gpux("run", "legacy-sentiment", "I love this", cwd=tmp_path).stdout) == first
    r = gpux("run", "legacy-typo", "hi", cwd=tmp_path, check=False)  # never pulled: no download from a project
    assert r.returncode == 1 and "gpux pull legacy-typo" in r.stderr
    gpux("rm", "hf:legacy-sentiment", cwd=tmp_path)
    r = gpux("inspect", "legacy-sentiment", cwd=tmp_path, check=False)
    assert r.returncode != 0 and "no such pulled model" in r.stderr


def test_gpux_run_starts_pulling_before_it_imports_the_runtime():
    """`gpux run org/name` of a model not here yet pulls (and starts the export worker) first: its command module
    imports neither numpy nor the runtime's session, which `gpux serve`'s options need (0.1-0.15 s)."""
    code = (
        "import sys, gpuxbuild.cli.app, gpuxbuild.cli.run_cmds\n"
        "bad = [m for m in ('numpy', 'gpuxbuild.runtime.session', 'gpuxbuild.runtime.server') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "import gpuxbuild.cli.serve_cmds\n"
        "assert 'gpuxbuild.runtime.server' in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
