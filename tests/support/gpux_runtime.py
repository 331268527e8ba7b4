"""Load gpux.yml files with the real GPUX runtime 0.1.1, kept out of the project's venv.

The PyPI ``gpux`` package installs a console script named ``gpux`` that clashes with ours,
so it lives in a separate venv (created once, reused) and runs in a subprocess.

Venv location: ``$GPUX_RUNTIME_VENV``, else ``gpux-runtime-0.1.1`` in the suite's folder (tests/support/testhome.py).
Pre-create it (CI): ``python tests/support/gpux_runtime.py``.
When the venv cannot be created (no PyPI), tests that need it are skipped, unless
``GPUX_RUNTIME_REQUIRED=1`` is set, in which case they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from testhome import tests_home

GPUX_VERSION = "0.1.1"
_READY = ".gpuxbuild-ready"

_LOAD = """
import json, sys
from pathlib import Path
from gpux.config.parser import GPUXConfigParser
path = Path(sys.argv[1])
parser = GPUXConfigParser()
config = parser.parse_file(path)
if not parser.validate_model_path(path.parent):
    raise SystemExit(f"model file not found: {parser.get_model_path(path.parent)}")
print(json.dumps(config.model_dump(mode="json")))
"""

_INSPECT = """
import json, sys
from gpux.core.models import ModelInspector
info = ModelInspector().inspect(sys.argv[1]).to_dict()
print(json.dumps({"inputs": info["inputs"], "outputs": info["outputs"]}))
"""


class GpuxRuntimeRejected(AssertionError):
    """The GPUX runtime refused a config or a model; the message has its stderr."""


def runtime_venv() -> Path:
    """Where the GPUX runtime's venv lives."""
    env = os.environ.get("GPUX_RUNTIME_VENV")
    if env:
        return Path(env)
    return tests_home() / f"gpux-runtime-{GPUX_VERSION}"


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_runtime_venv() -> Path:
    """Create the venv with gpux==0.1.1 if it is not there yet; return its python.

    Raises RuntimeError when it cannot be created.
    """
    from filelock import FileLock

    venv = runtime_venv()
    venv.parent.mkdir(parents=True, exist_ok=True)
    # pytest-xdist workers may race to create it.
    with FileLock(str(venv) + ".lock"):
        if (venv / _READY).is_file():
            return _python(venv)
        shutil.rmtree(venv, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", "-q", f"gpux=={GPUX_VERSION}"],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                raise RuntimeError(f"creating the GPUX runtime venv at {venv} failed: {' | '.join(tail)}")
        (venv / _READY).write_text(f"gpux=={GPUX_VERSION}\n")
    return _python(venv)


def _runtime_python() -> Path:
    try:
        return ensure_runtime_venv()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        if os.environ.get("GPUX_RUNTIME_REQUIRED") == "1":
            raise
        import pytest

        pytest.skip(f"GPUX runtime {GPUX_VERSION} unavailable (no PyPI?): {exc}")


def _run(script: str, arg: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(_runtime_python()), "-I", "-c", script, str(arg)], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise GpuxRuntimeRejected(f"GPUX {GPUX_VERSION} rejected {arg}:\n{done.stderr.strip() or done.stdout}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_with_gpux_runtime(path: Path | str) -> dict[str, Any]:
    """Parse a gpux.yml with ``GPUXConfigParser`` of GPUX 0.1.1; return the config as it sees it.

    Also checks, as ``gpux build`` does, that model.source resolves to a file relative to the
    config's folder. Raises GpuxRuntimeRejected when the runtime refuses it.
    """
    return _run(_LOAD, Path(path).resolve())


def inspect_with_gpux_runtime(model_path: Path | str) -> dict[str, Any]:
    """The inputs/outputs GPUX 0.1.1's ModelInspector reads from an ONNX file (via onnxruntime)."""
    return _run(_INSPECT, Path(model_path).resolve())


if __name__ == "__main__":
    print(ensure_runtime_venv())
