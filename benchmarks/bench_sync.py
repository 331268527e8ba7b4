"""Benchmark `gpux sync` (issue 5), in one run, against a local Hub-compatible server:

1. no-op: `gpux sync` of a 10-model project already in sync, vs a no-op `huggingface_hub.snapshot_download`
   of the same 10 repos already in the HF cache; both as fresh processes, as a user or CI runs them.
   Goals: gpux at least 5x faster, and under 0.3 s wall.
2. first sync of a 10-model project whose artifacts are all in the store (linking, not copying).
   Goal: under 1 s for 10 models of 500 MB (`--full`; the default is 20 MB per model to spare disk).

Usage: python benchmarks/bench_sync.py [--full | --mb N] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

N_MODELS = 10
SNAPSHOT = (
    "import sys\nfrom huggingface_hub import snapshot_download\nfor r in sys.argv[1:]:\n    snapshot_download(r)\n"
)


def timed(cmd: list[str], *, cwd: Path, env: dict, runs: int) -> float:
    """Median wall seconds of `cmd` over `runs` runs (after one warm-up run)."""
    times = []
    for i in range(runs + 1):
        t = time.perf_counter()
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - t
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{done.stderr}")
        if i:
            times.append(elapsed)
    return statistics.median(times)


def padded_onnx_repo(mb: int) -> dict[str, bytes]:
    """The tiny ONNX-shipping BERT repo, its graph padded with an `mb` MB initializer in external data."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from tinymodels import make_repo

    files = make_repo("onnx-shipped")
    model = onnx.load_from_string(files["onnx/model.onnx"])
    pad = np.ones(mb * (1 << 20) // 4, dtype=np.float32)
    model.graph.initializer.append(numpy_helper.from_array(pad, "gpux_bench_padding"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="model.onnx_data",
            size_threshold=1024,
        )
        files["onnx/model.onnx"] = path.read_bytes()
        files["onnx/model.onnx_data"] = (Path(tmp) / "model.onnx_data").read_bytes()
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--full", action="store_true", help="10 models of 500 MB for the first-sync part (needs ~11 GB of disk)"
    )
    ap.add_argument("--mb", type=int, default=20, help="model size in MB for the first-sync part (default 20)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per measurement (median reported)")
    args = ap.parse_args()
    mb = 500 if args.full else args.mb

    from helpers import publish, write_manifest
    from hubserver import HubServer

    work = Path(tempfile.mkdtemp(prefix="gpux-bench-sync-"))
    hub = HubServer().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "GPUX_"))}
    # Bytecode caching on (as in any installed package), kept out of the source tree.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        HF_ENDPOINT=hub.endpoint,
        HF_HOME=str(work / "hf"),
        GPUX_HOME=str(work / "gpux"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        PYTHONPYCACHEPREFIX=str(work / "pycache"),
    )
    gpux = [sys.executable, "-m", "gpuxbuild"]
    try:
        # -- 1. no-op ------------------------------------------------------------------------------
        repos = [f"bench/model-{i}" for i in range(N_MODELS)]
        for r in repos:
            publish(hub, r, "onnx-shipped")
        project = work / "noop"
        write_manifest(project, {f"m{i}": {"source": f"hf:{r}"} for i, r in enumerate(repos)})
        subprocess.run([*gpux, "sync"], cwd=project, env=env, check=True, capture_output=True)
        subprocess.run([sys.executable, "-c", SNAPSHOT, *repos], cwd=work, env=env, check=True, capture_output=True)
        t_gpux = timed([*gpux, "sync"], cwd=project, env=env, runs=args.runs)
        t_hf = timed([sys.executable, "-c", SNAPSHOT, *repos], cwd=work, env=env, runs=args.runs)
        t_py = timed([sys.executable, "-c", "pass"], cwd=work, env=env, runs=args.runs)
        print(f"no-op, {N_MODELS} models, fresh process each, median of {args.runs}:")
        print(
            f"  gpux sync                      {t_gpux:.3f} s   (goal < 0.3 s: {'met' if t_gpux < 0.3 else 'MISSED'})"
        )
        print(
            f"  snapshot_download x{N_MODELS}          {t_hf:.3f} s   (loopback Hub; a real Hub adds a round trip per repo)"
        )
        print(f"  python startup alone           {t_py:.3f} s")
        ratio = t_hf / t_gpux
        print(f"  ratio                          {ratio:.1f}x   (goal >= 5x: {'met' if ratio >= 5 else 'MISSED'})")

        # -- 2. first sync, artifacts in the store ------------------------------------------------
        hub.create_repo("bench/big")
        hub.commit("bench/big", padded_onnx_repo(mb), message=f"{mb} MB")
        project = work / "first"
        write_manifest(project, {f"m{i}": {"source": "hf:bench/big"} for i in range(N_MODELS)})
        t = time.perf_counter()
        subprocess.run(
            [*gpux, "sync", "--target", str(work / "prebuilt")], cwd=project, env=env, check=True, capture_output=True
        )
        t_build = time.perf_counter() - t
        results = {}
        for mode in ("auto", "copy"):
            times = []
            for _ in range(3 if mode == "auto" else 1):
                target = work / f"first-{mode}-{len(times)}"
                t = time.perf_counter()
                done = subprocess.run(
                    [*gpux, "sync", "--target", str(target), "--link-mode", mode],
                    cwd=project,
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                times.append(time.perf_counter() - t)
                used = done.stdout.strip().splitlines()[-1]
                subprocess.run(["rm", "-rf", str(target)], check=True)
            results[mode] = (statistics.median(times), used)
        print(f"first sync, {N_MODELS} models of {mb} MB, all artifacts in the store (built once in {t_build:.1f} s):")
        t_auto, used = results["auto"]
        print(
            f"  gpux sync (--link-mode auto)   {t_auto:.3f} s   [{used}]   (goal < 1 s: {'met' if t_auto < 1 else 'MISSED'})"
        )
        print(f"  gpux sync --link-mode copy     {results['copy'][0]:.3f} s   (for contrast)")
    finally:
        hub.stop()
        subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
