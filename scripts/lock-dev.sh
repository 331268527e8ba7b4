#!/usr/bin/env bash
# Refresh requirements/dev.txt, the pinned, hashed environment that scripts/setup.sh installs for
# development and CI, from pyproject.toml's extras (convert, media, serve, remote, supply, test, dev), and
# requirements/mlflow.txt, the MLflow server's own venv for the tests, from requirements/mlflow.in. Run it after
# changing a dependency in pyproject.toml or requirements/mlflow.in, and commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d "${TMPDIR:-/tmp}/gpux-lock-dev.XXXXXX")
trap 'rm -rf "$tools"' EXIT
echo "lock-dev: installing pip-tools in a throwaway venv" >&2
python3 -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install -q pip-tools==7.6.2
echo "lock-dev: resolving pyproject.toml's extras into requirements/dev.txt" >&2
# The project is installed editable on top (setup.sh): lock only its dependencies.
CUSTOM_COMPILE_COMMAND="bash scripts/lock-dev.sh" "$tools/venv/bin/pip-compile" -q --generate-hashes --allow-unsafe \
    --strip-extras --no-emit-index-url --no-emit-find-links \
    --extra convert --extra media --extra serve --extra remote --extra supply --extra test --extra dev \
    -o requirements/dev.txt pyproject.toml
echo "lock-dev: wrote requirements/dev.txt" >&2
echo "lock-dev: resolving requirements/mlflow.in into requirements/mlflow.txt" >&2
CUSTOM_COMPILE_COMMAND="bash scripts/lock-dev.sh" "$tools/venv/bin/pip-compile" -q --generate-hashes --allow-unsafe \
    --strip-extras --no-emit-index-url --no-emit-find-links \
    -o requirements/mlflow.txt requirements/mlflow.in
echo "lock-dev: wrote requirements/mlflow.txt" >&2
