"""The docs and examples say what is true of this checkout."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "examples" / "quickstart"


def test_the_quickstart_readme_activates_the_repositorys_venv():
    """Its commands are typed in examples/quickstart: the venv scripts/setup.sh makes is two levels up."""
    paths = re.findall(r"source (\S+?/bin/activate)", (QUICKSTART / "README.md").read_text())
    assert paths and all((QUICKSTART / p).resolve() == REPO / ".venv" / "bin" / "activate" for p in paths), paths


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
@pytest.mark.parametrize("written", ["gpux.lock", ".gpux/models/sentiment/model.onnx"])
def test_running_the_quickstart_in_place_leaves_the_checkout_clean(written):
    """What `gpux lock` and `gpux sync` write there is ignored (the lock records this machine's toolchain)."""
    r = subprocess.run(["git", "check-ignore", "-q", str(QUICKSTART / written)], cwd=REPO)
    assert r.returncode == 0, f"examples/quickstart/{written} would show as untracked"
