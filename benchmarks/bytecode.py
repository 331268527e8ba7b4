"""gpuxbuild's bytecode, written before a benchmark times `gpux` against an anchor.

pip compiles an installed package's modules at install time, and Python writes an editable install's on first
import, but not under PYTHONDONTWRITEBYTECODE (set on the development machines): there every `gpux` process
compiled its ~60 modules from source again (0.03-0.05 s of a `gpux --version`, more for a command that imports
more), while the anchors' packages in site-packages run from bytecode. Compiling once here times gpux as
installed.
"""

from __future__ import annotations

import compileall
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gpuxbuild"


def compile_gpuxbuild() -> None:
    """Write the bytecode of every gpuxbuild module (into its __pycache__, as an import would)."""
    compileall.compile_dir(str(PACKAGE), quiet=1)
