"""The command line's plumbing: commands loaded on use, and the start-up parser of `gpux sync`."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

from gpuxbuild.cli.quick import parse_sync


def test_command_table_matches_the_modules():
    """Each command is where the table says, and its summary there is the first paragraph of its help
    (the copy that lets `gpux --help` list the commands without importing them)."""
    import click

    from gpuxbuild.cli.app import COMMANDS, cli

    for entry in set(COMMANDS.values()):
        importlib.import_module(f"gpuxbuild.cli.{entry.module}")
    assert sorted(cli.commands) == sorted(COMMANDS)
    for name, command in cli.commands.items():
        assert command.callback.__module__ == f"gpuxbuild.cli.{COMMANDS[name].module}", name
        assert command.short_help is None, name  # else click would show it instead of the help's first paragraph
        for limit in (20, 45, 80, 200):
            stand_in = click.Command(name, help=COMMANDS[name].summary)
            assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit), name


def test_top_level_help_imports_no_command_module():
    code = (
        "import json, sys\nfrom gpuxbuild.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('gpuxbuild.cli.'))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == ["gpuxbuild.cli.app", "gpuxbuild.cli.quick"]
    assert "  lock        Pin every model of gpux.models.yml to a commit and every..." in r.stdout


def test_a_command_imports_only_its_module(tmp_path):
    code = (
        "import json, sys\nfrom gpuxbuild.cli import main\n"
        "try:\n    main(['ls', '--json'])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('gpuxbuild.cli.'))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == [
        "gpuxbuild.cli.app",
        "gpuxbuild.cli.quick",
        "gpuxbuild.cli.store_cmds",
    ]
    r = subprocess.run([sys.executable, "-m", "gpuxbuild", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and all(
        f"  {c} " in r.stdout for c in ("init", "lock", "build", "sync", "pull", "rmi", "doctor")
    )


def test_quick_parser_knows_the_link_modes():
    from gpuxbuild.cli import quick
    from gpuxbuild.store.linker import LINK_MODES

    assert quick.LINK_MODES == LINK_MODES


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["sync"], {}),
        (["-q", "sync"], {"quiet": True}),
        (["--quiet", "--project", "p", "sync", "--locked"], {"quiet": True, "project": "p", "flags": {"--locked"}}),
        (["--project=p", "sync", "--frozen", "--offline"], {"project": "p", "flags": {"--frozen", "--offline"}}),
        (["sync", "--target", "t", "--link-mode=copy"], {"target": "t", "link_mode": "copy"}),
        (["sync", "--target=a", "--target", "b"], {"target": "b"}),  # the last one wins, as in click
    ],
)
def test_quick_parser_accepts(argv, expected):
    opts = {"project": None, "quiet": False, "target": None, "link_mode": "auto", "flags": set()} | expected
    assert parse_sync(argv) == opts


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["lock"],
        ["sync", "--json"],
        ["sync", "--dry-run"],
        ["sync", "-q"],
        ["sync", "-h"],
        ["--help", "sync"],
        ["sync", "--locked", "--frozen"],
        ["sync", "--link-mode", "symlink"],
        ["sync", "--target"],
        ["--project", "sync"],
        ["sync", "--target="],
        ["sync", "extra"],
        ["--version"],
        ["sync", "--"],
        ["sync", "--target", "t", "--project", "p"],
    ],
)
def test_quick_parser_leaves_the_rest_to_click(argv):
    assert parse_sync(argv) is None


def test_progress_total_counts_a_file_fetched_before_the_bars_are_drawn():
    """A pull starts large files before it knows the total; begin() must not count them twice."""
    from gpuxbuild.cli.store_cmds import RichReporter

    reporter = RichReporter()
    reporter.start("early.safetensors", 100)
    reporter.advance("early.safetensors", 100)
    reporter.finish("early.safetensors", False)
    reporter.start("late.safetensors", 50)
    reporter.advance("late.safetensors", 20)
    reporter.begin(200, {"early.safetensors": 100, "cached.json": 30})
    try:
        total = reporter.progress.tasks[reporter.total]
        assert (total.total, total.completed) == (200, 150)
    finally:
        reporter.close()


def test_a_full_disk_or_a_read_only_folder_is_one_line_not_a_traceback(monkeypatch, tmp_path):
    import errno

    from click.testing import CliRunner

    import gpuxbuild.store.gc
    from gpuxbuild.cli.app import cli, explain_os_error

    def full(*_args, **_kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "objects"))

    monkeypatch.setenv("GPUX_HOME", str(tmp_path / "gpux"))
    monkeypatch.setattr(gpuxbuild.store.gc, "info", full)
    r = CliRunner().invoke(cli, ["cache", "info"])
    assert r.exit_code == 1 and r.exc_info[0] is SystemExit
    assert f"no space left on the device ({tmp_path / 'objects'})" in " ".join(r.output.split())
    assert "gpux cache prune" in r.output

    message, hint = explain_os_error(PermissionError(errno.EACCES, "Permission denied", "/srv/models"))
    assert message == "cannot write (/srv/models): Permission denied" and "GPUX_HOME" in hint
    assert explain_os_error(OSError(errno.EBADF, "Bad file descriptor")) is None  # a bug keeps its traceback


def test_store_counters_never_hide_the_error_that_filled_the_disk(monkeypatch, tmp_path):
    import errno

    import gpuxbuild.store.objects
    from gpuxbuild.store.objects import Store

    store = Store(tmp_path / "gpux")
    store.record_stats(downloaded=1, bytes_downloaded=10)

    def full(*_args, **_kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gpuxbuild.store.objects, "write_atomic", full)
    store.save_counters()  # no exception
    monkeypatch.undo()
    store.save_counters()  # kept for the next try
    assert store.load_counters()["bytes_downloaded"] == 10


def test_only_the_process_entry_point_skips_the_exit_collection(tmp_path, monkeypatch):
    """`gpux` as a program freezes the heap as it ends (sparing shutdown's collections); `main(args)`
    called as a library leaves the caller's garbage collector alone."""
    import gc

    from gpuxbuild.cli import main

    monkeypatch.setenv("GPUX_HOME", str(tmp_path / "gpux"))
    before = gc.get_freeze_count()
    with pytest.raises(SystemExit) as exc:
        main(["cache", "info", "--json"])
    assert exc.value.code == 0 and gc.get_freeze_count() == before
    script = (
        "import gc, sys\nfrom gpuxbuild.cli import main\nsys.argv = ['gpux', 'cache', 'info', '--json']\n"
        "try:\n    main()\nfinally:\n    print('frozen', gc.get_freeze_count() > 0, file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ})
    assert r.returncode == 0 and "frozen True" in r.stderr and json.loads(r.stdout)["objects"] == 0


@pytest.mark.parametrize(
    "env, expected, rich_loaded",
    [
        ({}, False, False),  # piped, nothing overrides: answered without rich
        ({"FORCE_COLOR": "1"}, True, True),  # rich's rules apply when a variable says so
        ({"TTY_COMPATIBLE": "1"}, True, True),
    ],
)
def test_consoles_load_rich_only_when_they_need_it(env, expected, rich_loaded):
    script = (
        "import sys\nfrom gpuxbuild.cli.app import err_console\nprint(err_console.is_terminal, 'rich' in sys.modules)\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**clean, **env})
    assert r.stdout.split() == [str(expected), str(rich_loaded)]


@pytest.mark.parametrize("variable", ["FORCE_COLOR", "TTY_COMPATIBLE"])
def test_the_lazy_consoles_stand_for_a_rich_console(variable):
    """rich's live displays take the console as theirs: they enter it (`with console:`), also from the
    stderr they redirect through it, and set attributes on it."""
    script = (
        "import sys\nfrom rich.live import Live\nfrom rich.progress import Progress\n"
        "from gpuxbuild.cli.app import err_console\n"
        "with Live('table', console=err_console, redirect_stderr=True):\n"
        "    print('said meanwhile', file=sys.stderr)\n"
        "with Progress(console=err_console) as progress:\n"
        "    progress.add_task('total', total=1)\n"
        "err_console.soft_wrap = True\n"
        "print(err_console.get().soft_wrap)\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**clean, variable: "1"})
    assert r.returncode == 0, r.stderr
    assert "said meanwhile" in r.stderr and r.stderr.count("\x1b[?25l") == r.stderr.count("\x1b[?25h") > 0
    assert r.stdout == "True\n"
