"""Without the `supply` extra, the commands that need it stop with one line naming it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import write_manifest


def _without(modules: tuple[str, ...], project, *args: str) -> subprocess.CompletedProcess:
    """`gpux ARGS` in a process where importing any of `modules` fails, as when they are not installed."""
    code = (
        "import sys\n"
        f"for m in {modules!r}:\n    sys.modules[m] = None\n"
        "from gpuxbuild.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "--project", str(project), *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("missing", "args", "what"),
    [
        (("model_signing",), ("lock",), "verifying model signatures"),
        (("cyclonedx",), ("sbom",), "gpux sbom"),
        (("cryptography",), ("build", "--sign-key", "KEY"), "signing provenance"),
    ],
)
def test_missing_supply_extra_is_named(tmp_path, missing, args, what):
    from tinymodels import write_repo

    write_repo("onnx-shipped", tmp_path / "models" / "m")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "k.pub").write_text("unused")
    (tmp_path / "key.pem").write_text("unused")
    verify = {"verify": {"key": "keys/k.pub"}} if args == ("lock",) else {}
    write_manifest(tmp_path, {"m": {"source": "path:./models/m", **verify}})
    if args == ("lock",):
        (tmp_path / "models" / "m" / "model.sig").write_text("{}")
    else:
        assert _without((), tmp_path, "lock").returncode == 0
    r = _without(missing, tmp_path, *(str(tmp_path / "key.pem") if a == "KEY" else a for a in args))
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert f"{what} needs the 'supply' extra, which is not installed" in r.stderr
    assert "pip install 'gpuxbuild[supply]'" in r.stderr
