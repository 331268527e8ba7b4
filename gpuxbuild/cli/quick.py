"""The start-up fast path of `gpux sync`: a sync with nothing to do, answered in a few milliseconds.

A no-op sync is what CI and editors run most, and its work (hash two small files, stat the placed
ones) costs less than importing click and rich. So `main` hands the command line here first: when it
is a plain `gpux [--project P] [-q] sync [--locked | --frozen] [--offline] [--target T] [--link-mode M]`
and gpuxbuild.sync.record finds nothing to do and nothing to report beyond the summary, the two lines
the full command would print are printed here. Anything else (another command, other options, a
change to make, a file to report, an error) returns False and the click application runs as usual.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from gpuxbuild.store.home import gpux_home
from gpuxbuild.sync.record import DEFAULT_TARGET, cache_line, noop_state, summary_line

FLAGS = {"--locked", "--frozen", "--offline"}
LINK_MODES = (
    "auto",
    "reflink",
    "hardlink",
    "copy",
)  # = gpuxbuild.store.linker.LINK_MODES, without importing the store


def parse_sync(argv: list[str]) -> dict | None:
    """The options of a `gpux ... sync ...` command line within the subset above, else None."""
    opts: dict = {"project": None, "quiet": False, "target": None, "link_mode": "auto", "flags": set()}
    args = iter(argv)
    command = None
    for arg in args:
        name, eq, value = arg.partition("=")
        if command is None and arg in ("-q", "--quiet"):
            opts["quiet"] = True
        elif command is None and arg == "sync":
            command = arg
        elif (command is None and name == "--project") or (command and name in ("--target", "--link-mode")):
            value = value if eq else next(args, "")
            if not value:
                return None  # a missing value: click says what is wrong
            opts[name[2:].replace("-", "_")] = value
        elif command and arg in FLAGS:
            opts["flags"].add(arg)
        else:
            return None
    if command is None or {"--locked", "--frozen"} <= opts["flags"] or opts["link_mode"] not in LINK_MODES:
        return None
    return opts


def quick_sync(argv: list[str]) -> bool:
    """Print the result of a no-op `gpux sync` and return True; False when the full command must run."""
    opts = parse_sync(argv)
    if opts is None:
        return False
    project = Path(opts["project"] or os.environ.get("GPUX_PROJECT", ".")).resolve()
    target = Path(opts["target"]).resolve() if opts["target"] else (project / DEFAULT_TARGET).resolve()
    if not project.is_dir():
        return False
    state = noop_state(project, target, gpux_home().resolve(), frozen="--frozen" in opts["flags"])
    if state is None or state["user_files"] or any(m["user_files"] for m in state["models"]):
        return False  # work to do, or files to report: the full command does it
    lines = [summary_line({"unchanged": len(state["models"])})]
    if not opts["quiet"]:
        lines.append(cache_line(0, 0))
    sys.stdout.write("\n".join(lines) + "\n")
    return True
