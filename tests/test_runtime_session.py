"""Loading artifacts, input parsing, tokenization, gpux.yml, raw tensors, benchmark, and the no-torch rule."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpuxbuild.errors import GpuxError
from gpuxbuild.runtime import benchmark, load
from gpuxbuild.runtime.inputs import check_inputs, parse_inputs
from gpuxbuild.runtime.session import read_runtime_config
from gpuxbuild.runtime.tokenize import CHARS_PER_TOKEN

pytestmark = pytest.mark.convert  # exports with torch, or runs what it exported

BERT_TYPES = {"input_ids": "tensor(int64)", "attention_mask": "tensor(int64)", "token_type_ids": "tensor(int64)"}


def _copy(built, tmp_path: Path) -> Path:
    dest = tmp_path / "artifact"
    shutil.copytree(built.artifact, dest)
    return dest


@pytest.mark.parametrize(
    "data, texts, pairs, batched",
    [
        ("hi", ["hi"], None, False),
        (["a", "b"], ["a", "b"], None, True),
        ({"text": "a"}, ["a"], None, False),
        ({"text": ["a", "b"]}, ["a", "b"], None, True),
        ({"text": "a", "text_pair": "b"}, ["a"], ["b"], False),
        ({"text": "a", "context": "b"}, ["a"], ["b"], False),
    ],
)
def test_parse_text_inputs(data, texts, pairs, batched):
    parsed = parse_inputs(data, BERT_TYPES, "text-classification")
    assert (parsed.texts, parsed.pairs, parsed.batched, parsed.is_tensors) == (texts, pairs, batched, False)


def test_parse_question_answering_forms():
    for data in ({"question": "q", "context": "c"}, {"text": "q", "context": "c"}, {"question": "q", "text": "c"}):
        parsed = parse_inputs(data, BERT_TYPES, "question-answering")
        assert (parsed.texts, parsed.pairs) == (["q"], ["c"])
    with pytest.raises(GpuxError, match="question and a context"):
        parse_inputs({"question": "q"}, BERT_TYPES, "question-answering")


def test_parse_options_and_tensors():
    parsed = parse_inputs({"text": "a", "top_k": 2}, BERT_TYPES, "fill-mask")
    assert parsed.options == {"top_k": 2}
    tensors = parse_inputs({"input_ids": [[1, 2]], "attention_mask": [[1, 1]], "token_type_ids": [[0, 0]]}, BERT_TYPES)
    assert tensors.is_tensors and tensors.tensors["input_ids"].dtype == np.int64


@pytest.mark.parametrize(
    "options, match",
    [
        ({"top_k": "x"}, r"option top_k must be an integer >= 1, got 'x'"),
        ({"top_k": 0}, "option top_k must be an integer >= 1"),
        ({"top_k": True}, "option top_k must be an integer >= 1"),
        ({"seed": 1.5}, "option seed must be an integer >= 0"),
        ({"temperature": float("nan")}, "option temperature must be a number > 0"),
        ({"top_p": 0}, r"option top_p must be a number in \(0, 1\]"),
        ({"aggregation_strategy": "first"}, "option aggregation_strategy must be"),
        ({"max_new_tokens": "9" * 1000}, r"got '9{39}\.\.\. \("),
        ({"beams": 2}, r"unknown (option|input keys).*beams"),
    ],
)
def test_options_of_the_wrong_type_or_range_are_usage_errors(options, match):
    for call in (
        lambda: parse_inputs("a", BERT_TYPES, "fill-mask", options),
        lambda: parse_inputs({"text": "a", **options}, BERT_TYPES, "fill-mask"),
        lambda: check_inputs("a", options),
    ):
        with pytest.raises(GpuxError, match=match) as caught:
            call()
        assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    "data, match",
    [
        ({"txt": "a"}, r"unknown input keys \['txt'\]"),
        ({"text": "a", "tensor": [[1]]}, r"unknown input keys \['tensor'\]"),
        ({"text": 3}, "string or a non-empty list"),
        ([], "string or a non-empty list"),
        (5, "JSON object"),
    ],
)
def test_inputs_are_checked_without_a_model(data, match):
    with pytest.raises(GpuxError, match=match):
        check_inputs(data)


def test_inputs_that_may_be_tensors_wait_for_the_model():
    check_inputs({"input_ids": [[1, 2]], "attention_mask": [[1, 1]]})  # the graph's input names are not known yet


@pytest.mark.parametrize(
    "data, match",
    [
        ({"txt": "a"}, r"unknown input keys \['txt'\]"),
        ({"text": 3}, "string or a non-empty list"),
        ({"text": []}, "string or a non-empty list"),
        ({}, "JSON object"),
        (42, "JSON object"),
        ({"input_ids": [[1, 2]]}, "missing"),
        ({"input_ids": [[1, 2], [3]], "attention_mask": [[1]], "token_type_ids": [[0]]}, "rectangular"),
        ({"text": ["a", "b"], "text_pair": ["c"]}, "one text_pair per text"),
    ],
)
def test_bad_inputs_name_the_expected_keys(data, match):
    with pytest.raises(GpuxError, match=match) as err:
        parse_inputs(data, BERT_TYPES, "text-classification")
    assert err.value.exit_code == 2
    assert (
        "text" in err.value.hint
        or "model takes" in err.value.hint
        or "per text" in err.value.hint
        or "equal lengths" in err.value.hint
    )


def test_batch_is_padded_with_the_pad_id_and_truncated(artifacts):
    model = load(artifacts("bert").artifact)
    tok = model.tokenizer
    batch = tok.encode(["hello", "the quick brown fox jumps over the lazy dog " * 20])
    ids, mask = batch.arrays["input_ids"], batch.arrays["attention_mask"]
    assert ids.shape[0] == 2 and ids.shape[1] == tok.max_length
    assert (ids[0][mask[0] == 0] == tok.pad_token_id).all()
    # a batch answers the same as one-by-one (padding does not leak into results)
    together = model.predict({"text": ["hello", "paris is in france"]})["results"]
    alone = [model.predict({"text": t}) for t in ("hello", "paris is in france")]
    for a, b in zip(together, alone, strict=True):
        assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_token_type_ids_only_when_the_graph_takes_them(artifacts):
    bert, distil = load(artifacts("bert").artifact), load(artifacts("distilbert").artifact)
    assert "token_type_ids" in bert.input_types and "token_type_ids" not in distil.input_types
    batch = distil.tokenizer.encode(["hi"])
    assert set(distil.feed(batch.arrays)) == {"input_ids", "attention_mask"}


def test_raw_tensors_bypass_the_tokenizer(artifacts):
    model = load(artifacts("bert").artifact)
    arrays = model.tokenizer.encode(["hello world"]).arrays
    out = model.predict({k: v.tolist() for k, v in arrays.items()})
    assert set(out) == {"logits"}
    json.dumps(out)
    probs = np.exp(out["logits"][0]) / np.exp(out["logits"][0]).sum()
    assert model.predict({"text": "hello world"})["score"] == pytest.approx(float(probs.max()), abs=1e-5)


def test_gpux_yml_max_length_and_backend(artifacts, tmp_path):
    folder = _copy(artifacts("bert"), tmp_path)
    (folder / "gpux.yml").write_text(
        "name: tiny\nruntime:\n  gpu:\n    backend: auto\n    memory: 1GB\npreprocessing:\n  max_length: 8\n"
    )
    assert read_runtime_config(folder).max_length == 8
    model = load(folder)
    assert model.tokenizer.encode(["a b c d e f g h i j k l m n"]).arrays["input_ids"].shape[1] == 8
    (folder / "gpux.yml").write_text("name: tiny\nruntime:\n  gpu:\n    backend: cuda\n")
    with pytest.raises(GpuxError, match="CUDAExecutionProvider"):
        load(folder)
    assert load(folder, provider="cpu").providers == ["CPUExecutionProvider"]
    (folder / "gpux.yml").write_text("name: [unclosed\n")
    with pytest.raises(GpuxError, match=r"gpux\.yml is not valid YAML"):
        load(folder)


def test_broken_artifacts_are_user_errors(artifacts, tmp_path):
    with pytest.raises(GpuxError, match="not a folder"):
        load(tmp_path / "nope")
    folder = _copy(artifacts("bert"), tmp_path)
    manifest = json.loads((folder / "artifact.json").read_text())
    (folder / "artifact.json").write_text(json.dumps({**manifest, "task": "depth-estimation"}))
    with pytest.raises(GpuxError, match="depth-estimation"):
        load(folder)
    (folder / "artifact.json").write_text(json.dumps({**manifest, "graphs": {"model": "missing.onnx"}}))
    with pytest.raises(GpuxError, match=r"missing\.onnx"):
        load(folder)
    (folder / "artifact.json").unlink()
    with pytest.raises(GpuxError, match=r"artifact\.json"):
        load(folder)


def test_info_and_benchmark(artifacts):
    model = load(artifacts("bert").artifact)
    info = model.info()
    assert info["task"] == "text-classification" and info["providers"][-1] == "CPUExecutionProvider"
    assert [i["name"] for i in info["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    result = benchmark(model, {"text": ["a", "b", "c"]}, runs=5, warmup=1)
    assert result["batch_size"] == 3 and result["runs"] == 5
    lat = result["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert result["throughput_per_s"] > 0


def test_running_never_imports_torch_or_transformers(artifacts):
    folder = artifacts("bert").artifact
    gen = artifacts("gpt2").artifact
    code = (
        "import sys, json\n"
        "from gpuxbuild.runtime import load, doctor\n"
        f"print(json.dumps(load({str(folder)!r}).predict({{'text': 'hi'}})))\n"
        f"load({str(gen)!r}).predict({{'text': 'hi', 'max_new_tokens': 2}})\n"
        f"doctor([{str(folder)!r}])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'optimum'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)


def test_a_megabyte_text_is_cut_before_it_is_tokenized(artifacts):
    tokenizer = load(artifacts("bert").artifact).tokenizer
    text = "paris is in france and berlin is in germany " * 25_000  # 1.1 MB
    batch = tokenizer.encode([text])
    assert batch.arrays["input_ids"].tolist() == tokenizer.encode([text[:2000]]).arrays["input_ids"].tolist()
    # What truncation dropped is kept as `overflowing`: tokens of the whole text, unless it was cut first.
    dropped = sum(len(e.ids) for e in batch.encodings[0].overflowing)
    assert dropped < tokenizer.max_length * CHARS_PER_TOKEN
