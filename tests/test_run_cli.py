"""`gpux run` / `doctor` through the CLI, on models locked and synced from the test Hub."""

from __future__ import annotations

import json

import pytest

from gpuxbuild.runtime import load
from helpers import gpux, publish, write_manifest


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
