"""Benchmark `gpux lock` of a 10-model project: models resolved one at a time (`-j 1`) against in parallel.

Resolving a model costs a metadata request and a download of each small file (their sha256 is only
known from their bytes), so a lock is a chain of round trips. Serves 10 distinct tiny models from the
test Hub, then in one run, each lock a fresh process with an empty store, alternating:
  - on loopback, where round trips cost ~nothing and the CPU is the limit;
  - with --latency (default 50 ms) added to every request, like a Hub across the internet.
Prints the medians and their ratio.

    python benchmarks/bench_lock.py [--models 10] [--runs 3] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

from helpers import write_manifest  # noqa: E402
from hubserver import HubServer  # noqa: E402
from tinymodels import make_repo  # noqa: E402


def distinct_repo(i: int) -> dict[str, bytes]:
    """The tiny ONNX-shipping BERT repo, every small file made unique to model `i` (nothing shared)."""
    files = make_repo("onnx-shipped", seed=i)
    for name in files:
        if name.endswith(".json"):
            files[name] = json.dumps({**json.loads(files[name]), "gpux_bench": i}).encode()
        elif not name.endswith(".onnx"):
            files[name] += f"\n# model {i}\n".encode()
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added to every request (default 0.05)")
    args = ap.parse_args()

    hub = HubServer().start()
    work = Path(tempfile.mkdtemp(prefix="bench-lock-"))
    repos = [f"bench/model-{i}" for i in range(args.models)]
    for i, repo in enumerate(repos):
        hub.create_repo(repo)
        hub.commit(repo, distinct_repo(i))
    project = work / "project"
    write_manifest(project, {f"m{i}": {"source": f"hf:{r}"} for i, r in enumerate(repos)})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "GPUX_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode caching on, as in an installed package
    env.update(HF_ENDPOINT=hub.endpoint, HF_HUB_DISABLE_TELEMETRY="1", PYTHONPYCACHEPREFIX=str(work / "pycache"))
    gpux = [sys.executable, "-m", "gpuxbuild", "lock"]
    try:
        for latency in (0.0, args.latency):
            hub.latency = latency
            times: dict[str, list[float]] = {"-j 1": [], "default": []}
            for run in range(-1, args.runs):  # run -1 warms up the bytecode and disk caches
                for label, extra in (("-j 1", ["-j", "1"]), ("default", [])):
                    (project / "gpux.lock").unlink(missing_ok=True)
                    home = work / f"home-{label}-{run}"
                    started = time.perf_counter()
                    subprocess.run(
                        gpux + extra, cwd=project, env={**env, "GPUX_HOME": str(home)}, check=True, capture_output=True
                    )
                    if run >= 0:
                        times[label].append(time.perf_counter() - started)
                    shutil.rmtree(home)
            serial, parallel = statistics.median(times["-j 1"]), statistics.median(times["default"])
            where = f"{latency * 1000:.0f} ms per request" if latency else "loopback"
            print(f"gpux lock, {args.models} models, {where}, median of {args.runs}:")
            print(f"  one at a time (-j 1)   {serial:.2f} s")
            print(f"  in parallel (default)  {parallel:.2f} s   ({serial / parallel:.1f}x faster)")
    finally:
        hub.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
