"""A real MLflow tracking server (PyPI mlflow-skinny 3.x with the server's dependencies, SQLite backend, local
artifact root) on 127.0.0.1, run from its own venv: MLflow's dependencies clash with the convert stack.

The venv is `.venv-mlflow` at the repository root (scripts/setup.sh makes it from requirements/mlflow.txt), or
`$GPUX_MLFLOW_VENV`. Models are logged into the server with MLflow's own client, run from that venv
(tests/support/mlflow_log.py), which imports transformers, torch and onnx from the test environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sysconfig
import uuid
from pathlib import Path

import pytest
import requests
from processes import free_port, missing_server, start_retrying, stop, wait_until
from tinymodels import repo_dir

REPO = Path(__file__).resolve().parents[2]
LOGGER = Path(__file__).with_name("mlflow_log.py")


def mlflow_python() -> Path | None:
    """The MLflow venv's Python, or None when it is not installed."""
    venv = Path(os.environ.get("GPUX_MLFLOW_VENV") or REPO / ".venv-mlflow")
    python = venv / "bin" / "python"
    return python if (venv / "bin" / "mlflow").exists() and python.exists() else None


class MlflowServer:
    def __init__(self, root: Path, *, admin_password: str | None = None, data: Path | None = None):
        self.root = root
        self.data = data or root  # the backend store and artifacts: another server's, to serve its models too
        self.admin_password = admin_password  # MLflow's basic-auth app, with user `admin`; None: no auth
        self.proc: subprocess.Popen | None = None
        self.client: subprocess.Popen | None = None  # mlflow_log.py serve, started by the first call
        self.uri = ""

    def start(self) -> None:
        start_retrying(self._start)

    def _start(self) -> None:
        python = mlflow_python()
        if python is None:
            raise RuntimeError("the MLflow venv is not installed")
        port = free_port()
        self.uri = f"http://127.0.0.1:{port}"
        args = [
            str(python.parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.data / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.data / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        # No background job runner (scorers, trace archival): the tests use the registry and artifacts only.
        env = {**self._clean_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        if self.admin_password is not None:
            args += ["--app-name", "basic-auth"]
            env |= {"MLFLOW_AUTH_ADMIN_PASSWORD": self.admin_password, "MLFLOW_FLASK_SERVER_SECRET_KEY": "gpux-tests"}
        self.log = open(self.root / "mlflow.log", "wb")  # noqa: SIM115 (open while the server runs)
        self.proc = subprocess.Popen(
            args, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True
        )
        try:
            log = self.root / "mlflow.log"
            wait_until(self._answers, self.proc, timeout=120, what=f"mlflow server (log: {log})", log=log)
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _clean_env() -> dict[str, str]:
        """The environment without the test venv's Python settings."""
        return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.uri}/health", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def log_model(
        self, kind: str, name: str, *, source: Path, alias: str | None = None, task: str | None = None
    ) -> dict:
        """Log the model folder `source` with MLflow's client as `kind` ("transformers" or "onnx"), registered as
        `name` (a new version), and point `alias` at it; returns {"version", "run_id", "model_id"}."""
        args = [kind, name, str(source)] + (["--alias", alias] if alias else []) + (["--task", task] if task else [])
        result = self._client(*args)
        assert result is not None
        return result

    def _client(self, *args: str) -> dict | None:
        """The result of tests/support/mlflow_log.py `args`, run by one long-lived process in the MLflow venv (MLflow is
        imported once, not once per call)."""
        if self.client is None:
            python = mlflow_python()
            assert python is not None
            env = {
                **self._clean_env(),
                "MLFLOW_TRACKING_URI": self.uri,
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "GPUX_TEST_SITE_PACKAGES": sysconfig.get_paths()["purelib"],
            }
            if self.admin_password is not None:
                env |= {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": self.admin_password}
            self.client = subprocess.Popen(
                [str(python), str(LOGGER), "serve"],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.log,
                text=True,
            )
        assert self.client.stdin is not None and self.client.stdout is not None
        self.client.stdin.write(json.dumps(args) + "\n")
        self.client.stdin.flush()
        for line in self.client.stdout:  # MLflow and transformers may print lines of their own first
            kind, _, answer = line.partition(" ")
            if kind == "RESULT":
                return json.loads(answer)
            if kind == "ERROR":
                raise RuntimeError(f"mlflow_log.py {' '.join(args)} failed:\n{json.loads(answer)}")
        raise RuntimeError(f"mlflow_log.py ended (log: {self.root / 'mlflow.log'})")

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` of `name` at `version` with MLflow's client."""
        self._client("alias", name, alias, version)

    def stop(self) -> None:
        if self.client is not None:
            assert self.client.stdin is not None
            self.client.stdin.close()  # it ends at the end of its input
            stop(self.client)
            self.client = None
        if self.proc is not None:
            try:  # the server's uvicorn worker is a child in its session: end them all
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            stop(self.proc)
            self.proc = None
            self.log.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real MLflow tracking server on 127.0.0.1, started once per test session."""
    if mlflow_python() is None:
        missing_server("the MLflow venv (.venv-mlflow, or $GPUX_MLFLOW_VENV) is not installed: run scripts/setup.sh")
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    yield server
    server.stop()


def unique(prefix: str) -> str:
    """A registered model name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def mlflow_bert(mlflow_server):
    """(name, version 1, version 2): a transformers pipeline logged and registered twice (other weights in
    version 2), with alias `champion` on version 1."""
    name = unique("bert")
    v1 = mlflow_server.log_model("transformers", name, source=repo_dir("bert"), alias="champion")
    v2 = mlflow_server.log_model("transformers", name, source=repo_dir("bert", seed=1))
    return name, v1, v2


@pytest.fixture(scope="session")
def mlflow_onnx(mlflow_server):
    """(name, version 1): an ONNX graph logged with the onnx flavor, its tokenizer and config beside it."""
    name = unique("onnx")
    return name, mlflow_server.log_model("onnx", name, source=repo_dir("onnx-shipped"))
