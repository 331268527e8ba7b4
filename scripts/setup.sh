#!/usr/bin/env bash
# Set up .venv with gpuxbuild (editable) and the pinned, hashed environment of requirements/dev.txt
# (its convert, serve, test and dev extras; refresh it with scripts/lock-dev.sh), and .venv-mlflow, the MLflow
# server the MLflow registry tests run (requirements/mlflow.txt: its dependencies clash with the convert stack).
# Idempotent: prints nothing when there is nothing to do; else one line per step as it starts (the first
# setup downloads about 1.3 GB), and the failing step's output when one fails.
# Needs Python >= 3.11 (PYTHON=/path/to/python to choose one) and access to PyPI (or a mirror set in pip's config).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
MLFLOW_VENV=.venv-mlflow
STAMP=$VENV/.gpuxbuild-setup

log=$(mktemp)
trap 'rm -f "$log"' EXIT

step() { # step WHAT COMMAND...: say WHAT, run COMMAND, its output kept back unless it fails
    local what=$1
    shift
    echo "setup: $what" >&2
    if ! "$@" >"$log" 2>&1; then
        echo "setup: $what failed:" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
}

# Everything below is skipped when the inputs of the last successful setup have not changed.
key=$(cat pyproject.toml requirements/dev.txt requirements/mlflow.txt "$0" | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/gpux" ] && [ -x "$MLFLOW_VENV/bin/mlflow" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$key" ]; then
    exit 0
fi

# The OCI registry of the remote-cache tests (tests/test_remote.py): the CNCF distribution registry, from
# Debian's package (SeaweedFS, their S3 store, comes as a wheel in requirements/dev.txt), and skopeo, a standard
# OCI client that lists and copies what gpux pushes there.
missing=""
command -v docker-registry >/dev/null || missing="$missing docker-registry"
command -v skopeo >/dev/null || missing="$missing skopeo"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        # A new machine may have no package lists yet.
        step "updating the package lists (apt)" apt-get update -q
        # shellcheck disable=SC2086  # one word per package
        step "installing$missing (apt)" apt-get install -y -q $missing
    else
        echo "setup: not installed:$missing (apt-get install$missing); the OCI tests will be skipped" >&2
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "setup: gpuxbuild needs Python >= 3.11; '$PYTHON' is not (set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    step "creating $VENV" "$PYTHON" -m venv "$VENV"
fi
# Every package pinned and checked by hash (torch included: its CPU build, never a CUDA one).
step "installing the pinned environment of requirements/dev.txt (torch, the exporter, test tools)" "$VENV/bin/python" -m pip install -q --require-hashes -r requirements/dev.txt
step "installing gpuxbuild" "$VENV/bin/python" -m pip install -q --no-deps -e .
# The MLflow tracking server of the MLflow registry tests (tests/support/mlflowserver.py), about 250 MB.
if [ ! -x "$MLFLOW_VENV/bin/python" ]; then
    step "creating $MLFLOW_VENV" "$PYTHON" -m venv "$MLFLOW_VENV"
fi
step "installing the MLflow server of requirements/mlflow.txt into $MLFLOW_VENV" "$MLFLOW_VENV/bin/python" -m pip install -q --require-hashes -r requirements/mlflow.txt
echo "$key" >"$STAMP"
echo "setup: done ($VENV)" >&2
