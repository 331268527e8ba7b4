#!/usr/bin/env bash
# The test command: set up the project (scripts/setup.sh) and run the whole test suite, slow tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The GPUX runtime (PyPI gpux 0.1.1) lives in its own venv: its console script is also `gpux`.
.venv/bin/python tests/support/gpux_runtime.py >/dev/null
# Here every extra is installed: a test that needs one must run, never skip.
export GPUX_RUNTIME_REQUIRED=1 GPUX_CONVERT_REQUIRED=1 GPUX_SERVERS_REQUIRED=1
# Three workers (pytest-xdist), also on 2 cores: the suite waits on servers and subprocesses a third of the time, which
# a third worker fills. A file's tests stay on one worker, the longest start first (tests/conftest.py).
exec .venv/bin/python -m pytest -q --durations=15 -n "${GPUX_TEST_WORKERS:-3}" --no-loadscope-reorder "$@"
