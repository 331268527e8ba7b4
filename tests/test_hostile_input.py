"""Hostile input to the manifest and the lock: alias bombs, deep nesting, undecodable bytes, huge values, odd repo
ids, FIFOs. Each is refused with one line naming the file and where, exit 2, without a traceback or a long wait."""

from __future__ import annotations

import os
import time

import pytest
import yaml
from helpers import gpux, write_manifest

# 9 levels of 9 aliases: 387 million strings once expanded, from ~500 bytes.
BOMB = "".join(
    ["  x0: &a0 [" + ",".join(['"lol"'] * 9) + "]\n"]
    + [f"  x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 10)]
)
MANIFESTS = {
    # the bomb where the manifest takes a list: a model's `include:` patterns
    "alias-bomb": ("version: 1\nmodels:\n  a:\n    source: hf:o/n\n    include: &b [*a9]\n", "aliases expand to over"),
    "deep": (
        "version: 1\nmodels: " + "[" * 5000 + "]" * 5000 + "\n",
        "gpux.models.yml:2: nested deeper than 64 levels",
    ),
    "not-utf8": (
        b"version: 1\nmodels:\n  a:\n    source: hf:o/\xffn\n",
        "gpux.models.yml: not UTF-8 text: byte b'\\xff' at offset 41",
    ),
    "huge": (
        b"version: 1\nmodels:\n  a:\n    source: hf:o/n\n    task: '" + b"x" * 1_000_000 + b"'\n",
        "(1000002 characters) is not one of",
    ),
    "oversize": (b"version: 1\nmodels: {}\n" + b"#" * (1 << 20), "over the limit of 1,048,576"),
    "long-repo-id": (
        "version: 1\nmodels:\n  a:\n    source: hf:org/" + "a" * 97 + "\n",
        "parts of at most 96 characters",
    ),
    "repo-id-.git": ("version: 1\nmodels:\n  a:\n    source: hf:org/name.git\n", "bad source 'hf:org/name.git'"),
    "registry-typo": (
        "version: 1\nmodels:\n  a:\n    source: hf:o/n\n    registry: hugginface\n",
        "gpux.models.yml:5: models.a.registry: unknown registry 'hugginface'",
    ),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_hostile_manifest_is_one_line(tmp_path, case):
    text, wanted = MANIFESTS[case]
    if case == "alias-bomb":
        text = "version: 1\n_: &top\n" + BOMB + text.removeprefix("version: 1\n")
    data = text if isinstance(text, bytes) else text.encode()
    (tmp_path / "gpux.models.yml").write_bytes(data)
    t = time.monotonic()
    r = gpux("lock", "--check", cwd=tmp_path, check=False, timeout=60)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and wanted in r.stderr and "Traceback" not in r.stderr, r.stderr[:2000]
    assert len(err) == 2 and len(err[0]) < 400, err  # the error line and its hint, both short
    assert time.monotonic() - t < 60


@pytest.mark.parametrize(
    "case, wanted",
    [
        ("alias-bomb", "gpux.lock:10: its aliases expand to over 1,000,000 nodes"),
        ("deep", "gpux.lock:2: nested deeper than 64 levels"),
        ("not-utf8", "gpux.lock: not UTF-8 text: byte b'\\xff' at offset 20"),
        ("duplicate", "gpux.lock:4: duplicate key 'version'"),
        ("huge", "gpux.lock: manifest_digest: 'xxxxxxxx"),
        ("repo-id", "gpux.lock is not consistent for m: source 'hf:a/b/c/d' is not a valid source"),
        ("repo-id-parent", "gpux.lock is not consistent for m: source 'hf:../../x' is not a valid source"),
    ],
)
def test_hostile_lock_is_one_line(tmp_path, case, wanted):
    write_manifest(tmp_path, {})
    text = {
        "alias-bomb": "version: 1\nmanifest_digest: sha256:" + "0" * 64 + "\n_:\n" + BOMB + "models: {}\n",
        "deep": "version: 1\nmodels: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
        "not-utf8": "version: 1\nmodels: {\xff}\n",
        "duplicate": "version: 1\nmanifest_digest: x\nmodels: {}\nversion: 1\n",
        "repo-id": "",
        "repo-id-parent": "",
        "huge": "version: 1\nmodels: {}\nmanifest_digest: " + "x" * 10_000_000 + "\n",
    }[case]
    if case.startswith("repo-id"):
        repo = "a/b/c/d" if case == "repo-id" else "../../x"
        entry = {
            "source": f"hf:{repo}",
            "registry": "huggingface",
            "repo": repo,
            "revision": "main",
            "commit": "0" * 40,
            "task": "text-classification",
            "spec_digest": "sha256:" + "0" * 64,
            "files": [],
            "options": {
                "allow_pickle": False,
                "convert": {
                    "from": "auto",
                    "variant": "default",
                    "opset": None,
                    "dtype": "fp32",
                    "optimize": None,
                    "quantize": None,
                    "validate": True,
                    "atol": None,
                },
                "exclude": [],
                "include": [],
                "runtime": {},
                "trust_remote_code": False,
            },
        }
        text = yaml.safe_dump({"version": 1, "manifest_digest": "sha256:" + "0" * 64, "models": {"m": entry}})
    (tmp_path / "gpux.lock").write_bytes(text.encode("latin-1") if case == "not-utf8" else text.encode())
    for args in (
        (("lock", "--check"), ("sync", "--frozen"), ("run", "m", "x"))
        if case.startswith("repo-id")
        else (("lock", "--check"), ("sync", "--frozen"))
    ):
        r = gpux(*args, cwd=tmp_path, check=False, timeout=60)
        assert r.returncode in (1, 2) and wanted in r.stderr and "Traceback" not in r.stderr, (args, r.stderr[:2000])
        assert len(r.stderr) < 1000


@pytest.mark.parametrize("ref", ["org/" + "a" * 97, "a/b/c/d", "hf:../../x", "org/name.git"])
def test_pull_refuses_ids_the_hub_would_refuse(tmp_path, ref):
    r = gpux("pull", ref, cwd=tmp_path, check=False)
    assert r.returncode == 2 and "bad source" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_huge_ref_is_not_echoed_whole(tmp_path):
    r = gpux("pull", "org/" + "x" * 100_000 + "@bad rev", cwd=tmp_path, check=False)
    assert r.returncode == 2 and "not a valid branch" in r.stderr and len(r.stderr) < 1000, r.stderr[:300]


def test_fifo_in_a_local_model_folder_is_refused_not_read(tmp_path):
    from tinymodels import write_repo

    write_repo("onnx-shipped", tmp_path / "models" / "m")
    os.mkfifo(tmp_path / "models" / "m" / "pipe")
    write_manifest(tmp_path, {"m": {"source": "path:./models/m", "task": "text-classification"}})
    r = gpux("lock", cwd=tmp_path, check=False, timeout=60)
    assert r.returncode == 1 and "pipe is not a regular file" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "gpux.lock").exists()


def test_alias_bomb_in_a_local_model_card_is_ignored(tmp_path):
    from tinymodels import write_repo

    write_repo("onnx-shipped", tmp_path / "models" / "m")
    (tmp_path / "models" / "m" / "README.md").write_text("---\n_:\n" + BOMB + "pipeline_tag: fill-mask\n---\n# card\n")
    write_manifest(tmp_path, {"m": {"source": "path:./models/m", "task": "text-classification"}})
    gpux("lock", cwd=tmp_path, timeout=60)
