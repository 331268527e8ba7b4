"""Manifest validation: every bad input gives one line naming file, field and line; exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gpuxbuild.errors import ManifestError
from gpuxbuild.project.manifest import parse_manifest

GOOD = """\
version: 1
defaults:
  convert: {opset: 17}
  runtime: {gpu: {memory: 4GB}}
models:
  sentiment:
    source: hf:distilbert/distilbert-base-uncased-finetuned-sst-2-english
    revision: main
  embedder:
    source: hf:sentence-transformers/all-MiniLM-L6-v2
    revision: v1.0
    task: feature-extraction
    convert: {dtype: fp16}
    runtime: {max_length: 128, labels: [a, b]}
  local:
    source: path:./models/x
"""


def parse(text: str):
    return parse_manifest(text, Path("/p/gpux.models.yml"))


def test_good_manifest_applies_defaults():
    m = parse(GOOD)
    s = m.models["sentiment"]
    assert (s.registry, s.ref, s.revision, s.task) == (
        "huggingface",
        "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
        "main",
        None,
    )
    e = m.models["embedder"]
    assert e.convert["opset"] == 17 and e.convert["dtype"] == "fp16" and e.convert["from"] == "auto"
    assert e.runtime["gpu"] == {"memory": "4GB", "backend": "auto"} and e.runtime["max_length"] == 128
    assert e.trust_remote_code is False
    loc = m.models["local"]
    assert (loc.registry, loc.ref, loc.revision) == ("local", "models/x", None)


def test_digest_ignores_order_comments_and_formatting():
    reordered = GOOD.replace("models:\n", "# a comment\nmodels:\n")
    assert parse(GOOD).digest == parse(reordered).digest
    assert parse(GOOD).digest != parse(GOOD.replace("v1.0", "v1.1")).digest


@pytest.mark.parametrize(
    "text, expected",
    [
        ("version: 1\nmodels:\n  a:\n    source: [x\n", ["gpux.models.yml:", "invalid YAML"]),
        (
            "version: 1\nmodels:\n  a:\n    source: hf:o/n\n    revison: main\n",
            ["gpux.models.yml:5", "models.a", "unknown key 'revison'"],
        ),
        (
            "version: 1\nmodels:\n  a:\n    source: hf:o/n\n    revision: 12\n",
            ["gpux.models.yml:5", "models.a.revision", "expected string"],
        ),
        (
            "version: 1\nmodels:\n  a:\n    source: hf:o/n\n  a:\n    source: hf:o/m\n",
            ["gpux.models.yml:5", "duplicate key 'a'"],
        ),
        ("version: 1\nmodels:\n  a:\n    source: hf:o/../n\n", ["gpux.models.yml:4", "models.a.source", "bad source"]),
        (
            "version: 1\nmodels:\n  a:\n    source: zz:o/n\n",
            ["models.a.source", "unknown registry 'zz'", "huggingface"],
        ),
        (
            "version: 1\nmodels:\n  a:\n    source: hf:o/n\n    revision: 'bad rev'\n",
            ["gpux.models.yml:5", "models.a.revision", "not a valid branch"],
        ),
        ("version: 1\nmodels:\n  a:\n    source: hf:o/n\n    revision: 'a..b'\n", ["models.a.revision"]),
        ("version: 2\nmodels: {}\n", ["gpux.models.yml:1", "version"]),
        ("models: {}\n", ["'version' is required"]),
        ("version: 1\nmodels:\n  'bad name!':\n    source: hf:o/n\n", ["invalid name 'bad name!'"]),
        ("version: 1\nmodels:\n  a:\n    revision: main\n", ["models.a", "'source' is required"]),
        (
            "version: 1\nmodels:\n  a:\n    source: hf:o/n\n    task: dance\n",
            ["models.a.task", "'dance' is not one of the 18 accepted values (listed in `gpux help manifest`)"],
        ),
        (
            "version: 1\nmodels:\n  a:\n    source: hf:o/n\n    task: image-segmentaton\n",
            ["models.a.task", "did you mean 'image-segmentation'?"],
        ),
        (
            "version: 1\nmodels:\n  a:\n    source: hf:o/n\n    convert: {from: pip}\n",
            ["models.a.convert.from", "'pip' is not one of: auto, onnx, export"],
        ),
        ("version: 1\nmodels:\n  a:\n    source: hf:o/n\n    convert: {dtype: fp8}\n", ["models.a.convert.dtype"]),
        ("version: 1\nmodels:\n  a:\n    source: path:/abs/x\n", ["models.a.source", "absolute path"]),
        (
            "version: 1\nmodels:\n  a:\n    source: hf:o/n\n    trust_remote_code: yes-please\n",
            ["models.a.trust_remote_code", "boolean"],
        ),
        ("- just\n- a list\n", ["expected a mapping"]),
    ],
)
def test_bad_manifests(text, expected):
    with pytest.raises(ManifestError) as exc:
        parse(text)
    msg = str(exc.value)
    assert "\n" not in exc.value.message
    for part in expected:
        assert part in msg, (part, msg)
    assert exc.value.exit_code == 2


def test_cli_bad_manifest_exit_2_no_traceback(tmp_path):
    (tmp_path / "gpux.models.yml").write_text("version: 1\nmodels:\n  a:\n    source: hf:o/n\n    revision: 12\n")
    lock_before = "# keep me\n"
    (tmp_path / "gpux.lock").write_text(lock_before)
    r = subprocess.run(
        [sys.executable, "-m", "gpuxbuild", "--project", str(tmp_path), "lock"], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "gpux.models.yml:5" in r.stderr and "models.a.revision" in r.stderr
    assert (tmp_path / "gpux.lock").read_text() == lock_before


def test_missing_manifest(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "gpuxbuild", "--project", str(tmp_path), "lock", "--check"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "gpux init" in r.stderr and "Traceback" not in r.stderr
