"""Overhead of gpuxbuild's predict loop over a bare onnxruntime session on the same pre-tokenized inputs.

    python benchmarks/bench_run_overhead.py [ARTIFACT_DIR] [--runs N] [--batch B]

Without ARTIFACT_DIR a tiny BERT classifier is locked and synced first (needs the 'convert' extra). Prints two ratios:
`run` (our session wrapper vs session.run) and `predict` (tokenize + run + post-process vs tokenize + session.run).
The goal is under 5% overhead; this script reports, it never fails on timings.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _tiny_artifact(root: Path) -> Path:
    """A tiny BERT classifier synced the way a user gets it: local model folder -> gpux lock + sync."""
    import os
    import subprocess

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
    from tinymodels import write_repo

    write_repo("bert", root / "models" / "bert")
    (root / "gpux.models.yml").write_text("version: 1\nmodels:\n  bert: {source: path:./models/bert}\n")
    env = {**os.environ, "GPUX_HOME": str(root / "home")}
    subprocess.run([sys.executable, "-m", "gpuxbuild", "-q", "sync"], cwd=root, env=env, check=True)
    return root / ".gpux" / "models" / "bert"


def _medians_ms(bare, ours, runs: int) -> tuple[float, float]:
    """Median latency of both callables, calls interleaved so drift (clock, cache) hits both alike."""
    for _ in range(max(3, runs // 10)):
        bare(), ours()
    times = np.empty((runs, 2))
    for i in range(runs):
        for j, fn in enumerate((bare, ours) if i % 2 == 0 else (ours, bare)):
            start = time.perf_counter()
            fn()
            times[i, j if i % 2 == 0 else 1 - j] = time.perf_counter() - start
    bare_ms, ours_ms = np.median(times, axis=0) * 1000
    return float(bare_ms), float(ours_ms)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", nargs="?", type=Path)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    from gpuxbuild.runtime import load

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.artifact or _tiny_artifact(Path(tmp))
        model = load(folder, provider="cpu")
        texts = [f"the quick brown fox number {i} jumps over the lazy dog" for i in range(args.batch)]
        feed = model.feed(model.tokenizer.encode(texts).arrays)
        bare = model.main  # the same InferenceSession, called directly

        bare_run, our_run = _medians_ms(lambda: bare.run(None, feed), lambda: model.run(feed), args.runs)
        bare_full, our_full = _medians_ms(
            lambda: bare.run(None, model.feed(model.tokenizer.encode(texts).arrays)),
            lambda: model.predict({"text": texts}),
            args.runs,
        )

    print(f"batch {args.batch}, {args.runs} runs, median ms")
    print(f"run:     bare {bare_run:.3f}  gpuxbuild {our_run:.3f}  overhead {100 * (our_run / bare_run - 1):+.1f}%")
    print(f"predict: bare {bare_full:.3f}  gpuxbuild {our_full:.3f}  overhead {100 * (our_full / bare_full - 1):+.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
