"""`gpux build` vs `optimum-cli export onnx`, timed in one run, and the build success rate over the
supported architecture list.

- one model: `gpux build` of a one-model project vs one `optimum-cli export onnx` of the same folder,
  alternating, `--repeat` times each (goal of issue 15: at most 0.8x, median);
- five models: `gpux build -j 2` of a five-model project vs five `optimum-cli` runs one after another
  (goal of issue 15: at least 4x faster);
- success rate: every architecture of tests/support/tinymodels.py that gpuxbuild supports, built in one project
  (goal: above 90%).

Models are tiny random-weight models of real architectures (tests/support/tinymodels.py), widened with
`--hidden`, served from local folders (the local registry), each build in a fresh GPUX_HOME. Both sides
validate their export against PyTorch (optimum-cli does by default). Never asserts times.

    python benchmarks/bench_build.py [--hidden 128] [--repeat 3] [--skip-sweep]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

from bytecode import compile_gpuxbuild  # noqa: E402  (benchmarks/, on the path as the script's folder)
from tinymodels import TEXT_ARCHITECTURES, write_repo  # noqa: E402

FIVE = {
    "bert": "text-classification",
    "distilbert": "text-classification",
    "roberta": "text-classification",
    "gpt2": "text-generation",
    "t5": "text2text-generation",
}
OPTIMUM_TASK = {
    "text-classification": "text-classification",
    "text-generation": "text-generation-with-past",
    "text2text-generation": "text2text-generation-with-past",
}


def timed(cmd: list[str], **kw) -> float:
    start = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    took = time.perf_counter() - start
    if r.returncode != 0:
        print(f"FAILED: {' '.join(cmd)}\n{r.stderr[-2000:]}", file=sys.stderr)
        sys.exit(1)
    return took


def project(root: Path, kinds: dict[str, str | None], hidden: int) -> Path:
    lines = ["version: 1", "models:"]
    for kind, task in kinds.items():
        write_repo(kind, root / "models" / kind, hidden=hidden)
        entry = f"  {kind}: {{source: path:./models/{kind}" + (f", task: {task}" if task else "") + "}"
        lines.append(entry)
    (root / "gpux.models.yml").write_text("\n".join(lines) + "\n")
    return root


def gpux_build(proj: Path, *args: str, home: str = "home") -> tuple[float, dict]:
    """`gpux build --json ARGS` of project ``proj`` with its own GPUX_HOME ``proj/home`` (a fresh one: cold)."""
    env = {**os.environ, "GPUX_HOME": str(proj / home)}
    start = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "gpuxbuild", "build", "--json", *args], cwd=proj, env=env, capture_output=True, text=True
    )
    took = time.perf_counter() - start
    return took, json.loads(r.stdout) if r.stdout.strip() else {"models": [], "stderr": r.stderr}


def optimum_cli(src: Path, task: str, out: Path) -> float:
    cli = str(Path(sys.executable).with_name("optimum-cli"))
    return timed(
        [cli, "export", "onnx", "--model", str(src), "--task", OPTIMUM_TASK[task], str(out)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=128, help="hidden size of the models (default 128)")
    ap.add_argument("--repeat", type=int, default=3, help="one-model runs of each side, alternating (default 3)")
    ap.add_argument("--skip-sweep", action="store_true", help="skip the architecture success-rate sweep")
    args = ap.parse_args()
    compile_gpuxbuild()  # as an install does (see bytecode.py)
    with tempfile.TemporaryDirectory(prefix="gpux-bench-build-") as tmp:
        tmp = Path(tmp)
        one = project(tmp / "one", {"bert": FIVE["bert"]}, args.hidden)
        ratios = []
        for n in range(args.repeat):
            t_opt1 = optimum_cli(one / "models" / "bert", FIVE["bert"], tmp / f"opt-one-{n}")
            t_gpux1, _ = gpux_build(one, home=f"home-{n}")
            ratios.append(t_gpux1 / t_opt1)
            print(
                f"one model (bert):   gpux build {t_gpux1:6.1f} s   optimum-cli {t_opt1:6.1f} s   "
                f"ratio {ratios[-1]:.2f}x",
                flush=True,
            )
        median = statistics.median(ratios)
        print(f"one model: median ratio {median:.2f}x (goal <= 0.8x: {'met' if median <= 0.8 else 'NOT met'})")

        five = project(tmp / "five", FIVE, args.hidden)
        t_opt5 = sum(optimum_cli(five / "models" / k, task, tmp / f"opt-{k}") for k, task in FIVE.items())
        t_gpux5, out5 = gpux_build(five, "--jobs", "2")
        ok5 = sum(m["status"] == "built" for m in out5["models"])
        print(
            f"five models:        gpux build {t_gpux5:6.1f} s   optimum-cli x5 {t_opt5:6.1f} s   "
            f"speed-up {t_opt5 / t_gpux5:.2f}x  (goal >= 4x: {'met' if t_opt5 / t_gpux5 >= 4 else 'NOT met'}); "
            f"{ok5}/5 built"
        )

        if not args.skip_sweep:
            sweep = project(tmp / "sweep", dict.fromkeys(TEXT_ARCHITECTURES), 32)
            t_sweep, out = gpux_build(sweep, "--jobs", "2")
            built = [m["name"] for m in out["models"] if m["status"] == "built"]
            failed = {m["name"]: m["error"] for m in out["models"] if m["status"] == "failed"}
            rate = len(built) / len(TEXT_ARCHITECTURES)
            print(
                f"architectures:      {len(built)}/{len(TEXT_ARCHITECTURES)} built ({rate:.0%}, goal > 90%) in {t_sweep:.0f} s"
            )
            for name, error in sorted(failed.items()):
                print(f"  failed {name}: {error}")


if __name__ == "__main__":
    main()
