"""A Python environment like a CI runner's without the convert extra: the test venv minus torch, transformers,
optimum, accelerate and sentencepiece. Built as a venv whose site-packages links every other package of the test
venv (nothing is downloaded; a second call reuses it), so its install size is measurable and nothing heavy is in it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The convert extra and what only it brings.
CONVERT = (
    "torch",
    "functorch",
    "torchgen",
    "transformers",
    "optimum",
    "accelerate",
    "sentencepiece",
    "nvidia",
    "triton",
)


def _excluded(name: str) -> bool:
    stem = name.split("-")[0].split(".")[0].lower()
    return stem.startswith(CONVERT) or name.startswith(("__editable__", "gpuxbuild"))


def consumer_python(root: Path) -> Path:
    """The interpreter of the consumer environment under `root` (made on first use)."""
    python = root / "bin" / "python"
    if python.exists():
        return python
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(root)], check=True)
    here = Path(next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()))
    dest = next((root / "lib").glob("python3*/site-packages"))
    for entry in sorted(here.iterdir()):
        if not _excluded(entry.name) and not (dest / entry.name).exists():
            os.symlink(entry, dest / entry.name)
    return python


def install_size(python: Path) -> int:
    """Bytes of the consumer environment's packages (what `pip install gpuxbuild` without extras brings)."""
    site = next((python.parent.parent / "lib").glob("python3*/site-packages"))
    total = 0
    for entry in site.iterdir():
        target = entry.resolve()
        for p in [target] if target.is_file() else target.rglob("*"):
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    return total
