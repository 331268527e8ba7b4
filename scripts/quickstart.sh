#!/usr/bin/env bash
# The quickstart: set up the project, then lock, sync and run the offline example (examples/quickstart)
# in a temporary copy with its own GPUX_HOME, so the repository stays clean. Needs no network but PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

repo=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/gpux-quickstart.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -R examples/quickstart/gpux.models.yml examples/quickstart/models "$work/"
cd "$work"
export GPUX_HOME=$work/.gpux-home
# The example's model is a folder in the project: nothing may reach out to the Hugging Face Hub.
export HF_HUB_OFFLINE=1

gpux() { # show the command as a user would type it, then run it
    local shown="" arg
    for arg in "$@"; do
        case $arg in *" "*) shown+=" \"$arg\"" ;; *) shown+=" $arg" ;; esac
    done
    echo "\$ gpux$shown" >&2
    "$repo/.venv/bin/gpux" "$@"
}

answer() { # answer TEXT EXPECTED_LABEL: run the model on TEXT, print its answer, fail on a wrong one
    local out
    out=$(gpux run --json sentiment "$1")
    "$repo/.venv/bin/python" - "$1" "$2" "$out" <<'PY'
import json
import sys

text, want, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
print(f"{text!r} -> {out['label']} (score {out['score']:.3f})")
if out["label"] != want:
    sys.exit(f"quickstart: expected {want} for {text!r}")
PY
}

gpux lock
gpux sync
answer "I love this" POSITIVE
answer "This is terrible" NEGATIVE
