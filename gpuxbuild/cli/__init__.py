"""The `gpux` command line: parses options, calls the library, renders with rich.

The commands are a click application (app.py, one module per command group). `main` first offers the
command line to quick.py, which answers a `gpux sync` that has nothing to do without importing click,
rich or the store: there, start-up is the whole cost of the command.
"""

from __future__ import annotations

import sys


def main(args: list[str] | None = None) -> None:
    """Run `gpux` with `args` (default: the process's arguments); exits with the command's status."""
    from gpuxbuild.cli.quick import quick_sync

    argv = sys.argv[1:] if args is None else list(args)
    try:
        if quick_sync(argv):
            return
        if args is None:  # the process is gpux's own: see `allocator`
            from gpuxbuild.allocator import reuse_freed_memory

            reuse_freed_memory()
        from gpuxbuild.cli.app import cli

        cli.main(args=argv, prog_name="gpux")
    finally:
        if args is None:  # the process ends here
            skip_exit_collection()


def skip_exit_collection() -> None:
    """Spare the interpreter's garbage collection at exit.

    Shutting down runs full collections over every object the imports created (about 40 ms once
    huggingface_hub is loaded, a tenth of a `gpux pull`). Every file gpuxbuild writes is closed (and
    fsynced) by then, and stdout/stderr are flushed regardless, so freezing the heap just ends sooner.
    """
    import gc

    gc.freeze()
