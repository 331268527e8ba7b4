"""Where gpuxbuild keeps its state: `$GPUX_HOME` (the store's root, docs/store.md).

Its own module so that the quick paths of the CLI find the store without importing the store's machinery.
"""

from __future__ import annotations

import os
from pathlib import Path


def gpux_home() -> Path:
    """`$GPUX_HOME`, else `$XDG_CACHE_HOME/gpux`, else `~/.cache/gpux`."""
    if os.environ.get("GPUX_HOME"):
        return Path(os.environ["GPUX_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "gpux"
