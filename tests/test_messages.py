"""What the commands say: counts in words that agree with them, and only things that exist named."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import gpux

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart"


@pytest.fixture
def example(tmp_path, hf_env) -> Path:
    """The offline example, copied (not locked)."""
    hf_env(HF_HUB_OFFLINE="1")
    project = tmp_path / "example"
    project.mkdir()
    shutil.copy(EXAMPLE / "gpux.models.yml", project)
    shutil.copytree(EXAMPLE / "models", project / "models")
    return project


def _said(r) -> str:
    return " ".join((r.stdout + r.stderr).split())


def test_counts_agree_with_their_nouns(example):
    gpux("lock", cwd=example)
    assert gpux("lock", "--check", cwd=example).stdout == "gpux.lock is up to date (1 model)\n"


@pytest.mark.parametrize(
    "n, noun, expected",
    [(0, "model", "0 models"), (1, "model", "1 model"), (2, "file", "2 files"), (1, "source file", "1 source file")],
)
def test_counted(n, noun, expected):
    from gpuxbuild.cli.app import counted

    assert counted(n, noun) == expected


def test_inspect_outside_a_project_names_no_lock(tmp_path):
    r = gpux("inspect", "nope", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "nope: no such pulled model" in _said(r)
    assert "gpux.lock" not in r.stderr


def test_inspect_in_a_project_offers_its_lock(example):
    gpux("lock", cwd=example)
    r = gpux("inspect", "nope", cwd=example, check=False)
    assert r.returncode == 1 and f"a model of {example / 'gpux.lock'}" in _said(r)


def test_run_of_an_unknown_name_without_a_lock_names_no_lock(tmp_path):
    r = gpux("run", "nope", "hi", cwd=tmp_path, check=False)
    assert r.returncode == 1, _said(r)
    assert "this project's gpux.lock" not in r.stderr and "no model 'nope'" in r.stderr
    assert f"{tmp_path} has no gpux.lock" in _said(r)


def test_run_of_an_unknown_name_in_a_locked_project(example):
    gpux("lock", cwd=example)
    r = gpux("run", "nope", "hi", cwd=example, check=False)
    assert r.returncode == 1 and "no model 'nope' in this project's gpux.lock" in _said(r)


@pytest.mark.parametrize("args", [["lock"], ["sync"], ["build"], ["inspect", "x"], ["lock", "--check"]])
def test_a_project_folder_that_does_not_exist_is_named_as_such(tmp_path, args):
    missing = tmp_path / "nonexistent"
    r = gpux("--project", str(missing), *args, check=False)
    assert r.returncode == 2, _said(r)
    assert r.stderr.splitlines()[0] == f"error: project folder {missing} does not exist"
    assert "no manifest" not in r.stderr
    r = gpux(*args, cwd=tmp_path, env={**os.environ, "GPUX_PROJECT": str(missing)}, check=False)
    assert r.stderr.splitlines()[0] == f"error: project folder {missing} does not exist"


def test_init_creates_a_project_folder_that_does_not_exist(tmp_path):
    gpux("--project", str(tmp_path / "new"), "init")
    assert (tmp_path / "new" / "gpux.models.yml").is_file()


DOCS = Path(__file__).resolve().parents[1] / "docs"
# Variables the docs name that no `--help` need name: the test suite's own, and huggingface_hub's download
# and login knobs (the error hints name them where they help; gpuxbuild reads them as huggingface_hub does).
NOT_IN_HELP = {
    "GPUX_RUNTIME_VENV",
    "GPUX_RUNTIME_REQUIRED",
    "GPUX_TEST_HOME",
    "HF_HUB_DISABLE_XET",
    "HF_HUB_ENABLE_HF_TRANSFER",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN",
    "HF_TOKEN_PATH",
}


def test_help_names_every_variable_the_docs_name():
    import re

    named = {v for doc in DOCS.glob("*.md") for v in re.findall(r"\b(?:GPUX|HF)_[A-Z_]+\b", doc.read_text())}
    assert "GPUX_PROJECT" in named
    # The top level's help lists the general ones; a command's own (gpux serve's limits) are in its help.
    help_text = gpux("--help").stdout + gpux("serve", "--help").stdout
    assert sorted(v for v in named - NOT_IN_HELP if v not in help_text) == []


def test_the_project_variable_is_used_and_shown():
    help_text = gpux("--help").stdout
    assert "GPUX_PROJECT" in help_text.split("Environment:")[0]  # at --project too


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_debug_shows_the_traceback_of_a_user_error(tmp_path, how, monkeypatch):
    if how == "variable":
        monkeypatch.setenv("GPUX_DEBUG", "1")
    args = ("--debug",) if how == "flag" else ()
    r = gpux(*args, "inspect", "nope", cwd=tmp_path, check=False)
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr and "GpuxError" in r.stderr
    assert r.stderr.rstrip().splitlines()[-2].startswith("error: nope: no such pulled model")


def test_without_debug_a_user_error_is_one_line_and_a_hint(tmp_path):
    r = gpux("inspect", "nope", cwd=tmp_path, check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 2


@pytest.mark.parametrize(
    ("args", "message", "where"),
    [
        (("serve", "--port", "99999"), "error: Invalid value for '--port': 99999 is not in the range", "gpux serve"),
        (("run",), "error: Missing argument 'NAME'.", "gpux run"),
        (("bogus",), "error: No such command 'bogus'.", "gpux"),
        (("--bogus",), "error: No such option '--bogus'.", "gpux"),
    ],
)
def test_usage_errors_are_one_line_and_a_hint(tmp_path, args, message, where):
    r = gpux(*args, cwd=tmp_path, check=False)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [r.stderr.splitlines()[0], f"  hint: see `{where} --help`"]
    assert r.stderr.startswith(message)
