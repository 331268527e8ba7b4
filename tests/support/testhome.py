"""Where the test suite keeps what it writes outside the checkout: one folder, removed with one command.

`$GPUX_TEST_HOME`, else `$XDG_CACHE_HOME/gpuxbuild-tests`, else `~/.cache/gpuxbuild-tests`:

    gpux-runtime-0.1.1/   the GPUX runtime's venv (tests/support/gpux_runtime.py): made once, reused by later runs
    tinymodels/           the tiny models the tests publish (tests/support/tinymodels.py), made once per kind
    tmp/                  the temporary folders of test runs (pytest keeps the last three runs')

`python tests/support/testhome.py` prints the folder; `python tests/support/testhome.py --clean` removes it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def tests_home() -> Path:
    """The test suite's folder (see above)."""
    if os.environ.get("GPUX_TEST_HOME"):
        return Path(os.environ["GPUX_TEST_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "gpuxbuild-tests"


if __name__ == "__main__":
    home = tests_home()
    if sys.argv[1:] == ["--clean"]:
        shutil.rmtree(home, ignore_errors=True)
        print(f"removed {home}")
    elif sys.argv[1:]:
        sys.exit("usage: python tests/support/testhome.py [--clean]")
    else:
        print(home)
