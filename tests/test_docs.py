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


def test_what_the_suite_writes_outside_the_checkout_is_in_one_folder(tmp_path):
    import os
    import sys
    import tempfile

    from gpux_runtime import runtime_venv
    from testhome import tests_home
    from tinymodels import cache_root

    home = tests_home()
    assert Path(tempfile.gettempdir()).is_relative_to(home) and tmp_path.is_relative_to(home)
    if not os.environ.get("GPUX_RUNTIME_VENV"):
        assert runtime_venv().is_relative_to(home)
    if not os.environ.get("GPUX_TEST_CACHE"):
        assert cache_root().is_relative_to(home)
    # the documented clean command
    doomed = tmp_path / "suite"
    (doomed / "tmp").mkdir(parents=True)
    env = {**os.environ, "GPUX_TEST_HOME": str(doomed)}
    r = subprocess.run(
        [sys.executable, str(REPO / "tests" / "support" / "testhome.py"), "--clean"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and not doomed.exists()
    assert "python tests/support/testhome.py --clean" in (REPO / "README.md").read_text()


def _fake_checkout(tmp_path: Path) -> Path:
    """A copy of scripts/setup.sh, pyproject.toml and requirements/ whose venvs' programs only record what they are asked."""
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "setup.sh", root / "scripts")
    shutil.copy(REPO / "pyproject.toml", root)
    shutil.copytree(REPO / "requirements", root / "requirements")
    for venv, names in ((".venv", ("python", "gpux")), (".venv-mlflow", ("python", "mlflow"))):
        bin_ = root / venv / "bin"
        bin_.mkdir(parents=True)
        for name in names:
            (bin_ / name).write_text('#!/bin/sh\necho "$@" >> "$(dirname "$0")/calls"\n')
            (bin_ / name).chmod(0o755)
    return root


def test_setup_says_each_step_it_takes_and_nothing_when_there_is_nothing_to_do(tmp_path):
    root = _fake_checkout(tmp_path)
    first = subprocess.run(["bash", "scripts/setup.sh"], cwd=root, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    steps = first.stdout.splitlines() + first.stderr.splitlines()
    assert any("requirements/dev.txt" in line for line in steps) and any(
        "installing gpuxbuild" in line for line in steps
    )
    assert any("requirements/mlflow.txt" in line for line in steps)
    assert "--require-hashes -r requirements/mlflow.txt" in (root / ".venv-mlflow/bin/calls").read_text()
    assert all(line.startswith("setup: ") for line in steps), steps
    again = subprocess.run(["bash", "scripts/setup.sh"], cwd=root, capture_output=True, text=True)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


TOPICS = sorted(p.stem for p in (REPO / "docs").glob("*.md"))


def test_help_lists_a_topic_per_doc():
    from helpers import gpux

    out = gpux("help").stdout
    for topic in TOPICS:
        title = (REPO / "docs" / f"{topic}.md").read_text().splitlines()[0].lstrip("# ")
        assert re.search(rf"^  {re.escape(topic)} +{re.escape(title)}$", out, re.M), (topic, out)


@pytest.mark.parametrize("topic", ["manifest", "lockfile", "sync", "store"])
def test_help_topic_prints_the_doc_shipped_with_the_package(topic):
    from helpers import gpux

    assert gpux("help", topic).stdout == (REPO / "docs" / f"{topic}.md").read_text()


def test_the_docs_are_package_data():
    """So a pip-installed gpux has them (the wheel takes gpuxbuild/docs/*.md, as it takes the schemas)."""
    import importlib.resources
    import tomllib

    shipped = importlib.resources.files("gpuxbuild") / "docs"
    assert sorted(p.name[:-3] for p in shipped.iterdir() if p.name.endswith(".md")) == TOPICS
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["gpuxbuild"]
    assert "docs/*.md" in data


def test_an_unknown_help_topic_is_a_usage_error_that_lists_them():
    from helpers import gpux

    r = gpux("help", "manfiest", check=False)
    assert r.returncode == 2 and r.stderr.startswith("error: no help topic 'manfiest'")
    assert "manifest" in r.stderr.split("hint:")[1]


def test_hints_point_at_help_topics_not_at_files_of_the_checkout():
    sources = {p: p.read_text() for p in (REPO / "gpuxbuild").rglob("*.py")}
    # what the user is told (docstrings and comments, for developers, may cite the checkout's docs/)
    told = [
        (p.name, line.strip())
        for p, text in sources.items()
        for line in text.splitlines()
        if "see docs/" in line and not line.lstrip().startswith(('"""', "#"))
    ]
    assert told == []
    named = {m for text in sources.values() for m in re.findall(r"`gpux help ([a-z][\w-]*)`", text)}
    assert named and named <= set(TOPICS)


def _docs_examples():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_examples", REPO / "scripts" / "docs_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_examples_only_vary_where_runs_do():
    d = _docs_examples()
    a = ["$ gpux build", " built sentiment sha256:" + "0" * 64 + " in 11.3s", "at ~/.cache/gpux/artifacts/" + "a" * 64]
    b = ["$ gpux build", " built sentiment sha256:" + "f" * 64 + " in 9.0s", "at ~/.cache/gpux/artifacts/" + "b" * 64]
    assert d.normalise(a) == d.normalise(b)
    assert d.normalise(["3 files (1.2 KB)"]) != d.normalise(["2 files (1.2 KB)"])


def test_every_command_output_in_the_docs_is_generated():
    """A block that shows `$ gpux ...` followed by output carries the marker of scripts/docs_examples.py."""
    d = _docs_examples()
    for doc in (REPO / "docs").glob("*.md"):
        text = doc.read_text()
        generated = {start for _, start, _ in d.blocks(text)}
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("$ gpux") and i + 1 < len(lines) and not lines[i + 1].startswith(("```", "$ ")):
                start = max(j for j in range(i + 1) if lines[j].startswith("```")) + 1
                assert start in generated, f"{doc.name}:{i + 1}: output not made by scripts/docs_examples.py"


@pytest.mark.convert
@pytest.mark.slow
def test_the_docs_examples_are_what_the_tool_prints():
    import sys

    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "docs_examples.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, r.stdout + r.stderr
