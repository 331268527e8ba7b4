"""`gpux build` end to end on the test Hub: architectures, reproducibility, --locked, shipped ONNX, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import gpux, publish, read_lock, write_manifest

from gpuxbuild.build.gpuxyml import validate_gpux_yml


def _project(hub, base: str, tmp_path, kinds, **extra):
    models = {}
    for kind in kinds:
        repo = f"{base}-{kind}"
        if repo not in hub._repos:
            publish(hub, repo, kind)
        models[kind] = {"source": f"hf:{repo}", **extra.get(kind, {})}
    write_manifest(tmp_path, models)
    return tmp_path


def _build(project, home, seed, *args, check=False):
    env = {**os.environ, "GPUX_HOME": str(home), "PYTHONHASHSEED": str(seed)}
    r = gpux("build", "--json", *args, cwd=project, env=env, check=check)
    return r, json.loads(r.stdout) if r.stdout.strip().startswith("{") else None


def test_shipped_onnx_builds_without_torch_and_loads_in_gpux_runtime(hub, repo_id, tmp_path):
    from gpux_runtime import load_with_gpux_runtime

    p = _project(hub, repo_id, tmp_path, ["onnx-shipped"])
    code = (
        "import sys\nfrom gpuxbuild.cli import main\n"
        "try:\n    main(['build', '--json'])\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules]\nassert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=p, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    art = read_lock(p)["models"]["onnx-shipped"]["artifact"]
    home = os.environ["GPUX_HOME"]
    adir = os.path.join(home, "artifacts", art["build_key"].removeprefix("sha256:"))
    text = Path(adir, "gpux.yml").read_text()
    validate_gpux_yml(text)
    parsed = load_with_gpux_runtime(os.path.join(adir, "gpux.yml"))
    assert parsed["name"] == "onnx-shipped"
    manifest = json.loads(Path(adir, "artifact.json").read_text())
    assert {f["path"] for f in manifest["files"]} >= {"model.onnx", "gpux.yml", "tokenizer.json", "config.json"}
    assert manifest["source"]["commit"] == read_lock(p)["models"]["onnx-shipped"]["commit"]


def test_second_build_is_cached_and_locked_catches_a_changed_digest(hub, repo_id, tmp_path):
    p = _project(hub, repo_id, tmp_path, ["onnx-shipped"])
    r, out = _build(p, os.environ["GPUX_HOME"], 0, check=True)
    assert out["models"][0]["status"] == "built"
    r, out = _build(p, os.environ["GPUX_HOME"], 0, "--locked", check=True)
    assert out["models"][0]["status"] == "cached"
    lock = yaml.safe_load((p / "gpux.lock").read_text())
    lock["models"]["onnx-shipped"]["artifact"]["digest"] = "sha256:" + "0" * 64
    (p / "gpux.lock").write_text(yaml.safe_dump(lock))
    r = gpux("build", "--locked", cwd=p, check=False)
    assert r.returncode == 1
    assert "onnx-shipped" in r.stderr and "differs from the locked" in r.stderr and "same toolchain" in r.stderr


def test_locked_refuses_stale_lock(hub, repo_id, tmp_path):
    p = _project(hub, repo_id, tmp_path, ["onnx-shipped"])
    gpux("lock", cwd=p)
    write_manifest(p, {"other": {"source": f"hf:{repo_id}-onnx-shipped"}})
    r = gpux("build", "--locked", cwd=p, check=False)
    assert r.returncode == 1 and "out of date" in r.stderr and "Traceback" not in r.stderr


def test_pickle_only_refused_without_allow_pickle(hub, repo_id, tmp_path):
    p = _project(hub, repo_id, tmp_path, ["pickle-only"])
    hub.reset_log()
    r = gpux("build", cwd=p, check=False)
    assert r.returncode == 1 and "allow_pickle" in r.stderr and "pytorch_model.bin" in r.stderr
    assert hub.count(path="pytorch_model.bin", method="GET") == 0


def test_missing_convert_extra_is_one_clear_line(hub, repo_id, tmp_path):
    """Without torch/optimum installed, an export fails naming the extra to install."""
    p = _project(hub, repo_id, tmp_path, ["bert"])
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nclass _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'optimum'):\n"
        "            raise ModuleNotFoundError(f\"No module named '{name}'\", name=name)\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = gpux("build", cwd=p, check=False, env=env)
    assert r.returncode == 1 and "gpuxbuild[convert]" in r.stderr and "Traceback" not in r.stderr
