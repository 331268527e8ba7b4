"""Log a model into an MLflow server with MLflow's own client: run by tests/support/mlflowserver.py with the
MLflow venv's Python (MLFLOW_TRACKING_URI set). transformers, torch and onnx come from the test environment,
whose site-packages (GPUX_TEST_SITE_PACKAGES) go after the venv's own, so MLflow's dependencies win.

    mlflow_log.py transformers|onnx NAME FOLDER [--alias A] [--task T]   prints {"version", "run_id", "model_id"}
    mlflow_log.py alias NAME ALIAS VERSION
    mlflow_log.py serve    reads one such argument list per line (JSON) and answers each with a line
                           `RESULT {...}` (or `ERROR traceback`): MLflow is imported once for many calls
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.append(os.environ["GPUX_TEST_SITE_PACKAGES"])

import mlflow
from mlflow import MlflowClient


def log_transformers(name: str, folder: Path, task: str | None):
    import transformers

    pipe = transformers.pipeline(task or "text-classification", model=str(folder), tokenizer=str(folder))
    # pip_requirements: MLflow would otherwise import every package it can think of to infer them.
    return mlflow.transformers.log_model(
        pipe, name="model", registered_model_name=name, pip_requirements=["transformers"]
    )


def log_onnx(name: str, folder: Path):
    """The folder's ONNX graph, logged with the onnx flavor, and its tokenizer and config beside it in the logged model."""
    import onnx

    graph = onnx.load(str(next(folder.rglob("model.onnx"))))
    info = mlflow.onnx.log_model(graph, name="model", registered_model_name=name, pip_requirements=["onnx"])
    extras = [p for p in folder.iterdir() if p.is_file()]
    with tempfile.TemporaryDirectory() as d:
        for p in extras:
            (Path(d) / p.name).write_bytes(p.read_bytes())
        MlflowClient().log_model_artifacts(info.model_id, d)
    return info


def run(argv: list[str]) -> dict | None:
    """One command (the arguments of the usage above); its result."""
    if argv[0] == "alias":
        _, name, alias, version = argv
        MlflowClient().set_registered_model_alias(name, alias, version)
        return None
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["transformers", "onnx"])
    parser.add_argument("name")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--alias")
    parser.add_argument("--task")
    a = parser.parse_args(argv)
    with mlflow.start_run() as started:
        info = log_transformers(a.name, a.folder, a.task) if a.kind == "transformers" else log_onnx(a.name, a.folder)
    version = str(info.registered_model_version)
    if a.alias:
        MlflowClient().set_registered_model_alias(a.name, a.alias, version)
    return {"version": version, "run_id": started.info.run_id, "model_id": info.model_id}


def serve() -> None:
    import traceback

    for line in sys.stdin:
        try:
            answer = "RESULT " + json.dumps(run(json.loads(line)))
        except BaseException:  # argparse exits too: the caller raises it, with the traceback
            answer = "ERROR " + json.dumps(traceback.format_exc())
        print(answer, flush=True)


def main() -> None:
    if sys.argv[1:] == ["serve"]:
        serve()
    else:
        print(json.dumps(run(sys.argv[1:])))


if __name__ == "__main__":
    main()
