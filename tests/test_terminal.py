"""Every command as a user meets it: on a real pseudo-terminal, piped, and with --json.

The project is the offline example (examples/quickstart): locked, synced and pulled once per module, then
copied for each test, so a command that changes things (rm, prune, remove) leaves the others alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from helpers import gpux, gpux_tty
from processes import free_port

pytestmark = pytest.mark.convert  # exports with torch, or runs what it exported

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart"
HIDE, SHOW = "\x1b[?25l", "\x1b[?25h"
ESC = re.compile(r"\x1b\[")


def _env(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR", "COLUMNS")}
    return {**env, "GPUX_HOME": str(home), "HF_HUB_OFFLINE": "1", **extra}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A folder with `project/` (the example, locked and synced) and `home/` (its store, with the model pulled)."""
    root = tmp_path_factory.mktemp("prepared")
    project = root / "project"
    project.mkdir()
    shutil.copy(EXAMPLE / "gpux.models.yml", project)
    shutil.copytree(EXAMPLE / "models", project / "models")
    env = _env(root / "home")
    gpux("sync", cwd=project, env=env)
    gpux("pull", "path:./models/sentiment", cwd=project, env=env)
    return root


@pytest.fixture
def workspace(prepared, tmp_path) -> tuple[Path, Path]:
    """This test's copy of the prepared project and store: (project, home)."""
    shutil.copytree(prepared / "project", tmp_path / "project", symlinks=True)
    shutil.copytree(prepared / "home", tmp_path / "home", symlinks=True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "remote").mkdir()  # a file:// remote cache, `{remote}` in the command lines below
    return tmp_path / "project", tmp_path / "home"


# (command line, where it runs, exit status, takes --json)
COMMANDS = [
    (["--help"], "project", 0, False),
    (["--version"], "project", 0, False),
    (["help"], "project", 0, False),
    (["help", "manifest"], "project", 0, False),
    (["init"], "empty", 0, False),
    (["add", "path:./models/sentiment", "--name", "again"], "project", 0, True),
    (["remove", "sentiment"], "project", 0, True),
    (["lock"], "project", 0, True),
    (["lock", "--check"], "project", 0, True),
    (["build"], "project", 0, True),
    (["build", "--locked"], "project", 0, True),
    (["sync"], "project", 0, True),
    (["sync", "--dry-run"], "project", 0, True),
    (["pull", "path:./models/sentiment"], "project", 0, True),
    (["ls"], "project", 0, True),
    (["images"], "project", 0, True),
    (["rm", "path:models/sentiment"], "project", 0, True),
    (["inspect", "sentiment"], "project", 0, True),
    (["inspect", "nope"], "empty", 1, True),
    (["cache", "verify"], "project", 0, True),
    (["cache", "prune", "--dry-run"], "project", 0, True),
    (["cache", "prune"], "project", 0, True),
    (["cache", "info"], "project", 0, True),
    (["run", "sentiment", "I love this"], "project", 0, True),
    (["doctor"], "project", 0, True),
    (["registries"], "project", 0, True),
    (["verify", "sentiment"], "project", 0, True),
    (["sbom"], "project", 0, False),
    (["push", "--remote", "{remote}"], "project", 0, True),
    (["build", "--push", "--remote", "{remote}"], "project", 0, True),
    (["sync", "--remote", "{remote}"], "project", 0, True),
    (["cache", "remote", "ls", "--remote", "{remote}"], "project", 0, True),
    (["cache", "remote", "verify", "--remote", "{remote}"], "project", 0, True),
    (["search", "sentiment"], "project", 1, True),  # HF_HUB_OFFLINE=1 here: the Hub cannot be searched
]
IDS = [" ".join(c[0]) for c in COMMANDS]


def _args(args: list[str], project: Path) -> list[str]:
    """The command line with `{remote}` standing for this test's file:// remote cache."""
    return [a.replace("{remote}", (project.parent / "remote").as_uri()) for a in args]


def _check_terminal_output(out: str) -> None:
    assert "Traceback" not in out and "lost sys.stderr" not in out, out
    assert out.count(HIDE) == out.count(SHOW), f"the cursor was left hidden:\n{out!r}"


@pytest.mark.slow
@pytest.mark.parametrize("args, where, status, _json", COMMANDS, ids=IDS)
def test_every_command_works_on_a_terminal(workspace, args, where, status, _json):
    project, home = workspace
    r = gpux_tty(
        *_args(args, project), cwd=project.parent / where if where == "empty" else project, env=_env(home), timeout=300
    )
    _check_terminal_output(r.output)
    assert r.returncode == status, r.output


@pytest.mark.slow
@pytest.mark.parametrize("args, where, status, _json", COMMANDS, ids=IDS)
def test_every_command_works_piped(workspace, args, where, status, _json):
    project, home = workspace
    r = gpux(
        *_args(args, project), cwd=project.parent / where if where == "empty" else project, env=_env(home), check=False
    )
    assert "Traceback" not in r.stderr, r.stderr
    assert not ESC.search(r.stdout + r.stderr), "terminal control codes in piped output"
    assert r.returncode == status, r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, where, status",
    [c[:3] for c in COMMANDS if c[3]],
    ids=[i for i, c in zip(IDS, COMMANDS, strict=True) if c[3]],
)
def test_every_command_prints_json_with_json(workspace, args, where, status):
    project, home = workspace
    r = gpux(
        *_args(args, project),
        "--json",
        cwd=project.parent / where if where == "empty" else project,
        env=_env(home),
        check=False,
    )
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == status, r.stdout + r.stderr
    if status == 0:
        json.loads(r.stdout)
    else:
        assert r.stdout == "" and len(r.stderr.strip().splitlines()) <= 2  # the error and its hint


@pytest.mark.slow
@pytest.mark.parametrize("variable", ["FORCE_COLOR", "TTY_COMPATIBLE"])
def test_build_in_ci_with_colours_forced(workspace, variable):
    """The README's CI line, `gpux build --locked`, where CI sets FORCE_COLOR: rich then draws the live table."""
    project, home = workspace
    shutil.rmtree(home / "artifacts")  # built again: the live table is drawn
    r = gpux("build", "--locked", cwd=project, env=_env(home, **{variable: "1"}), check=False)
    _check_terminal_output(r.stdout + r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 built, 0 cached, 0 failed" in r.stdout


@pytest.mark.slow
def test_ctrl_c_during_a_build_on_a_terminal_restores_the_cursor(workspace):
    project, home = workspace
    shutil.rmtree(home / "artifacts")
    r = gpux_tty("build", cwd=project, env=_env(home), interrupt_when="sentiment", timeout=300)
    _check_terminal_output(r.output)
    assert r.returncode == 130, r.output
    lines = [line for line in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", r.output).splitlines() if line.strip()]
    assert lines[-1].strip() == "interrupted", r.output


@pytest.mark.slow
def test_ctrl_c_stops_serve_on_a_terminal(workspace):
    project, home = workspace
    port = free_port()
    r = gpux_tty(
        "serve",
        "sentiment",
        "--port",
        str(port),
        cwd=project,
        env=_env(home),
        interrupt_when="Uvicorn running",
        timeout=300,
    )
    _check_terminal_output(r.output)
    assert r.returncode in (0, 130), r.output


PLAIN = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LONG = "sentiment-classifier-with-a-rather-long-folder-name-for-its-weights"


@pytest.fixture
def long_named(workspace) -> tuple[Path, Path]:
    """The workspace, with the example's model also pulled from a folder whose name is long."""
    project, home = workspace
    shutil.copytree(project / "models" / "sentiment", project / "models" / LONG)
    gpux("pull", "--no-build", f"path:./models/{LONG}", cwd=project, env=_env(home))
    return project, home


@pytest.mark.slow
@pytest.mark.parametrize("columns", [60, 80])
def test_ls_never_cuts_names_or_commits_on_a_narrow_terminal(long_named, columns):
    project, home = long_named
    commit = json.loads(gpux("inspect", f"path:models/{LONG}", "--json", cwd=project, env=_env(home)).stdout)["commit"]
    out = PLAIN.sub("", gpux_tty("ls", cwd=project, env=_env(home), columns=columns).output)
    row = next(line for line in out.splitlines() if LONG in line)
    assert commit[:12] in row and "…" not in out


@pytest.mark.slow
def test_ls_piped_is_never_cut(long_named):
    project, home = long_named
    out = gpux("ls", cwd=project, env=_env(home, COLUMNS="60")).stdout
    row = next(line for line in out.splitlines() if LONG in line)
    assert "text-classification" in row and "pulled" in row and "…" not in out


@pytest.mark.slow
def test_inspect_shows_sizes_as_ls_does_and_exact_ones_in_json(workspace):
    project, home = workspace
    text = gpux("inspect", "sentiment", cwd=project, env=_env(home)).stdout
    data = json.loads(gpux("inspect", "sentiment", "--json", cwd=project, env=_env(home)).stdout)
    ls_row = next(line for line in gpux("ls", cwd=project, env=_env(home)).stdout.splitlines() if " synced" in line)
    assert "size: 124.4 KB" in text and "124.4 KB" in ls_row and data["size"] == 124361
    weights = next(f for f in data["files"] if f["path"] == "model.safetensors")
    assert weights["size"] == 113640
    assert re.search(r"\b113\.6 KB  model\.safetensors$", text, re.M), text
