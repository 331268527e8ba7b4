#!/usr/bin/env bash
# Lint and types, as CI runs them before the tests: ruff (format and rules) and mypy, all from .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy
