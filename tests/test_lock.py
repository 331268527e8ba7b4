"""`gpux lock`, `--check`, `--upgrade`, add/remove, against the test Hub through the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import jsonschema
import pytest
from helpers import gets, gpux, publish, read_lock, write_manifest

from gpuxbuild.schemas_io import load_schema


def test_lock_pins_commit_and_every_file(hub, repo_id, tmp_path):
    commit = publish(hub, repo_id, "bert")
    hub.tag(repo_id, "v1.0")
    write_manifest(
        tmp_path, {"sentiment": {"source": f"hf:{repo_id}"}, "tagged": {"source": f"hf:{repo_id}", "revision": "v1.0"}}
    )
    r = gpux("lock", cwd=tmp_path)
    assert "Locked 2 models -> gpux.lock" in r.stdout
    lock = read_lock(tmp_path)
    jsonschema.validate(lock, load_schema("gpux.lock.schema.json"))
    m = lock["models"]["sentiment"]
    assert m["commit"] == commit and m["revision"] == "main" and m["task"] == "text-classification"
    assert m["license"] == "apache-2.0" and m["architecture"] == "BertForSequenceClassification"
    served = hub.files(repo_id)
    paths = [f["path"] for f in m["files"]]
    assert paths == sorted(paths) and ".gitattributes" not in paths and "model.safetensors" in paths
    for f in m["files"]:
        blob = served[f["path"]]
        assert f["sha256"] == hashlib.sha256(blob.data).hexdigest() and f["size"] == blob.size
    assert lock["models"]["tagged"]["commit"] == commit

    before = (tmp_path / "gpux.lock").read_bytes()
    mtime = os.stat(tmp_path / "gpux.lock").st_mtime_ns
    gpux("lock", cwd=tmp_path)
    assert (tmp_path / "gpux.lock").read_bytes() == before
    assert os.stat(tmp_path / "gpux.lock").st_mtime_ns == mtime  # nothing rewritten
    assert gpux("lock", "--check", cwd=tmp_path).returncode == 0


def test_lock_downloads_only_the_small_files_it_pins(hub, repo_id, tmp_path):
    """Small files are hashed by downloading them: those the model does not keep are not downloaded."""
    publish(hub, repo_id, "bert")
    hub.commit(
        repo_id, {"README.md": b"# card\n", "coreml/m.mlpackage/Manifest.json": b"{}", "onnx/README.txt": b"notes"}
    )
    write_manifest(tmp_path, {"m": {"source": f"hf:{repo_id}", "exclude": ["README.md", "config.json"]}})
    hub.reset_log()
    gpux("lock", cwd=tmp_path)
    locked = {f["path"] for f in read_lock(tmp_path)["models"]["m"]["files"]}
    assert "README.md" not in locked and "config.json" not in locked and "onnx/README.txt" in locked
    # config.json is still read, for the model's metadata; nothing else outside the lock is fetched,
    # and LFS files are not fetched at all (the Hub lists their sha256).
    small = {p for p in locked if hub.files(repo_id)[p].sha256 is None}
    assert "model.safetensors" in locked and "model.safetensors" not in small
    assert gets(hub, repo_id) == dict.fromkeys(small | {"config.json"}, 1)


def test_unchanged_entry_keeps_pin_until_upgrade(hub, repo_id, tmp_path):
    first = publish(hub, repo_id, "bert")
    write_manifest(tmp_path, {"a": {"source": f"hf:{repo_id}"}, "b": {"source": f"hf:{repo_id}"}})
    gpux("lock", cwd=tmp_path)
    from tinymodels import make_repo

    second = hub.commit(repo_id, make_repo("bert", seed=1), message="retrain")
    assert second != first
    gpux("lock", cwd=tmp_path)
    assert {m["commit"] for m in read_lock(tmp_path)["models"].values()} == {first}

    # Changing an option of `a` keeps its commit (same registry/repo/revision).
    write_manifest(
        tmp_path, {"a": {"source": f"hf:{repo_id}", "convert": {"opset": 17}}, "b": {"source": f"hf:{repo_id}"}}
    )
    gpux("lock", cwd=tmp_path)
    lock = read_lock(tmp_path)
    assert lock["models"]["a"]["commit"] == first and lock["models"]["a"]["options"]["convert"]["opset"] == 17

    r = gpux("lock", "--upgrade", "b", "--json", cwd=tmp_path)
    changes = {c["name"]: c for c in json.loads(r.stdout)["changes"]}
    assert changes["b"]["action"] == "updated" and changes["a"]["action"] == "unchanged"
    lock = read_lock(tmp_path)
    assert lock["models"]["b"]["commit"] == second and lock["models"]["a"]["commit"] == first
    gpux("lock", "--upgrade", cwd=tmp_path)
    assert {m["commit"] for m in read_lock(tmp_path)["models"].values()} == {second}


def test_check_names_what_is_stale_offline(hub, repo_id, tmp_path):
    publish(hub, repo_id, "bert")
    write_manifest(tmp_path, {"a": {"source": f"hf:{repo_id}"}, "b": {"source": f"hf:{repo_id}"}})
    gpux("lock", cwd=tmp_path)
    write_manifest(tmp_path, {"a": {"source": f"hf:{repo_id}", "revision": "other"}, "c": {"source": f"hf:{repo_id}"}})
    hub.reset_log()
    r = gpux("lock", "--check", cwd=tmp_path, check=False)
    assert r.returncode == 1
    assert (
        "not locked yet: c" in r.stderr
        and "changed in the manifest: a" in r.stderr
        and "no longer in the manifest: b" in r.stderr
    )
    assert hub.count() == 0  # no network


def test_add_remove_models(hub, repo_id, tmp_path):
    publish(hub, repo_id, "bert")
    write_manifest(tmp_path, {"keep": {"source": f"hf:{repo_id}"}})
    gpux("lock", cwd=tmp_path)
    keep_before = read_lock(tmp_path)["models"]["keep"]
    write_manifest(
        tmp_path,
        {"keep": {"source": f"hf:{repo_id}"}, "new": {"source": f"hf:{repo_id}", "task": "feature-extraction"}},
    )
    gpux("lock", cwd=tmp_path)
    lock = read_lock(tmp_path)
    assert set(lock["models"]) == {"keep", "new"} and lock["models"]["keep"] == keep_before
    assert lock["models"]["new"]["task"] == "feature-extraction"
    write_manifest(tmp_path, {"new": {"source": f"hf:{repo_id}", "task": "feature-extraction"}})
    gpux("lock", cwd=tmp_path)
    assert set(read_lock(tmp_path)["models"]) == {"new"}


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing-repo", "repository not found"),
        ("missing-revision", "revision 'nope' not found"),
        ("gated", "is gated"),
        ("network-down", "cannot reach"),
    ],
)
def test_resolve_errors_leave_lock_untouched(hub, repo_id, tmp_path, case, expected):
    publish(hub, repo_id, "bert")
    write_manifest(tmp_path, {"ok": {"source": f"hf:{repo_id}"}})
    gpux("lock", cwd=tmp_path)
    before = (tmp_path / "gpux.lock").read_bytes()
    bad = {"source": f"hf:{repo_id}"}
    env = None
    if case == "missing-repo":
        bad = {"source": "hf:test-org/does-not-exist"}
    elif case == "missing-revision":
        bad["revision"] = "nope"
    elif case == "gated":
        gated = repo_id + "-gated"
        publish(hub, gated, "distilbert", gated=True)  # other small files: they must be fetched to be hashed
        bad = {"source": f"hf:{gated}"}
    elif case == "network-down":
        # no retries: their waits are tested in test_network.py
        env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "GPUX_HTTP_RETRIES": "0"}
    write_manifest(tmp_path, {"ok": {"source": f"hf:{repo_id}"}, "bad": bad})
    r = gpux("lock", cwd=tmp_path, check=False, env=env)
    assert r.returncode == 1, r.stderr
    assert expected in r.stderr and "'bad'" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "gpux.lock").read_bytes() == before


def test_parallel_resolution_locks_what_one_at_a_time_does(hub, repo_id, tmp_path):
    """Models resolve in parallel (`-j`); the lock is the same bytes, shared files are fetched once."""
    for kind in ("bert", "distilbert", "gpt2"):
        publish(hub, f"{repo_id}-{kind}", kind)
    models = {f"{k}{n}": {"source": f"hf:{repo_id}-{k}"} for k in ("bert", "distilbert", "gpt2") for n in (1, 2)}
    locks = []
    for jobs, home in (("1", "serial"), ("6", "parallel")):
        project = tmp_path / home
        write_manifest(project, models)
        hub.reset_log()
        gpux("lock", "-j", jobs, cwd=project, env={**os.environ, "GPUX_HOME": str(tmp_path / f"{home}-home")})
        gets = [e.url for e in hub.requests("GET", kind="resolve")]
        assert len(gets) == len(set(gets)), "a small file was downloaded twice"
        locks.append((project / "gpux.lock").read_bytes())
    assert locks[0] == locks[1]


def test_several_failing_models_report_the_first_by_name(hub, repo_id, tmp_path):
    publish(hub, repo_id, "bert")
    write_manifest(
        tmp_path,
        {
            "ok": {"source": f"hf:{repo_id}"},
            "zz-missing": {"source": "hf:test-org/does-not-exist"},
            "b-bad-revision": {"source": f"hf:{repo_id}", "revision": "nope"},
        },
    )
    for _ in range(3):
        r = gpux("lock", cwd=tmp_path, check=False)
        assert r.returncode == 1 and "'b-bad-revision'" in r.stderr and "zz-missing" not in r.stderr, r.stderr
        assert not (tmp_path / "gpux.lock").exists()


def test_gated_repo_with_token_locks_and_token_never_written(hub, repo_id, tmp_path):
    from hubserver import DEFAULT_TOKEN

    publish(hub, repo_id, "bert", private=True)
    write_manifest(tmp_path, {"p": {"source": f"hf:{repo_id}"}})
    r = gpux("lock", cwd=tmp_path, env={**os.environ, "HF_TOKEN": DEFAULT_TOKEN})
    assert DEFAULT_TOKEN not in r.stdout + r.stderr
    for p in tmp_path.rglob("*"):
        if p.is_file():
            assert DEFAULT_TOKEN not in p.read_text(errors="replace")


def test_init_add_remove_keep_comments(hub, repo_id, tmp_path):
    publish(hub, repo_id, "bert")
    gpux("init", cwd=tmp_path)
    text = (tmp_path / "gpux.models.yml").read_text()
    assert "trust_remote_code: false" in text
    gpux("add", f"hf:{repo_id}", "--name", "clf", cwd=tmp_path)
    after = (tmp_path / "gpux.models.yml").read_text()
    assert "# gpux.models.yml: the models this project uses" in after and "clf:" in after
    assert "clf" in read_lock(tmp_path)["models"]
    r = gpux("add", "hf:test-org/nope", "--name", "x", cwd=tmp_path, check=False)
    assert r.returncode == 1 and (tmp_path / "gpux.models.yml").read_text() == after
    gpux("remove", "clf", cwd=tmp_path)
    assert "clf" not in (tmp_path / "gpux.models.yml").read_text()
    assert read_lock(tmp_path)["models"] == {}


def test_moved_branch_and_tag(hub, repo_id, tmp_path):
    first = publish(hub, repo_id, "bert")
    hub.tag(repo_id, "v1")
    from tinymodels import make_repo

    second = hub.commit(repo_id, make_repo("bert", seed=2))
    write_manifest(
        tmp_path,
        {
            "old": {"source": f"hf:{repo_id}", "revision": "v1"},
            "new": {"source": f"hf:{repo_id}"},
            "sha": {"source": f"hf:{repo_id}", "revision": first},
        },
    )
    gpux("lock", cwd=tmp_path)
    lock = read_lock(tmp_path)["models"]
    assert (lock["old"]["commit"], lock["new"]["commit"], lock["sha"]["commit"]) == (first, second, first)


def test_local_registry_and_content_digest(tmp_path):
    from tinymodels import write_repo

    write_repo("bert", tmp_path / "models" / "m")
    write_manifest(
        tmp_path, {"m": {"source": "path:./models/m"}, "n": {"source": "./models/m", "task": "text-classification"}}
    )
    gpux("lock", cwd=tmp_path)
    lock = read_lock(tmp_path)["models"]
    assert lock["m"]["commit"] == lock["n"]["commit"] and len(lock["m"]["commit"]) == 64
    assert lock["m"]["repo"] == "models/m" and str(tmp_path) not in (tmp_path / "gpux.lock").read_text()


def test_lock_check_imports_no_heavy_modules(tmp_path):
    """A 20-model lock is checked without importing torch, transformers, optimum, onnxruntime or huggingface_hub."""
    from gpuxbuild.project.lockfile import Lock, LockedModel, options_of, write_lock
    from gpuxbuild.project.manifest import parse_manifest

    models = {f"m{i}": {"source": f"hf:org/model-{i}"} for i in range(20)}
    path = write_manifest(tmp_path, models)
    manifest = parse_manifest(path.read_text(), path)
    lock = Lock(
        manifest.digest,
        {
            n: LockedModel(
                n, s.source, s.registry, s.ref, s.revision, "0" * 40, "text-classification", s.digest, options_of(s), []
            )
            for n, s in manifest.models.items()
        },
    )
    write_lock(tmp_path / "gpux.lock", lock)
    code = (
        "import sys; from gpuxbuild.cli import main\n"
        "try:\n    main(['--project', sys.argv[1], 'lock', '--check'])\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = ('torch', 'transformers', 'optimum', 'onnxruntime', 'huggingface_hub', 'rfc3987_syntax', 'lark')\n"
        "bad = [m for m in heavy if sys.modules.get(m) is not None]\n"
        "assert not bad, bad\n"
        "import gpuxbuild.registries as r\nassert not r._plugins_loaded, 'installed plugins were scanned'\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
