"""Benchmark the shared remote cache (issue 16), in one run, against a local Hub-compatible server and a local
SeaweedFS (S3) or a shared folder:

1. build from source: a five-model lock (exports: bert, distilbert, roberta, gpt2, electra) built and pushed
   from an empty store (`gpux build --push`), as the one CI job that converts;
2. cold sync from the warm remote: another empty store, in an environment without the convert extra (no torch,
   no transformers), `gpux sync --locked` of the same lock, as every other CI job.
Goal: the cold sync at least 10x faster than building. Also printed: the consumer's install size without the
convert extra, against the full environment's.

Usage: python benchmarks/bench_remote.py [--remote s3|file] [--hidden 32]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

KINDS = ("bert", "distilbert", "roberta", "gpt2", "electra")


def run(python: Path | str, args: list[str], *, cwd: Path, env: dict) -> float:
    t = time.perf_counter()
    done = subprocess.run([str(python), "-m", "gpuxbuild", *args], cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"gpux {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    print(f"  $ gpux {' '.join(args)}  ({elapsed:.1f} s)\n    " + done.stdout.strip().replace("\n", "\n    "))
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--remote", choices=("s3", "file"), default="s3")
    ap.add_argument("--hidden", type=int, default=32, help="hidden size of the tiny models")
    args = ap.parse_args()

    from consumer_env import consumer_python, install_size
    from helpers import write_manifest
    from hubserver import HubServer
    from tinymodels import make_repo

    from gpuxbuild.models.pull import human_size

    work = Path(tempfile.mkdtemp(prefix="gpux-bench-remote-"))
    hub = HubServer().start()
    s3 = None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "GPUX_", "AWS_"))}
    env.update(
        HF_ENDPOINT=hub.endpoint,
        HF_HOME=str(work / "hf"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        PYTHONPATH=str(ROOT),
    )
    try:
        if args.remote == "s3":
            from s3server import BUCKET, S3Server

            (work / "s3").mkdir()
            s3 = S3Server(work / "s3")
            s3.start()
            env.update(s3.env())
            remote = f"s3://{BUCKET}/bench"
        else:
            (work / "shared").mkdir()
            remote = (work / "shared").as_uri()
        env["GPUX_REMOTE"] = remote
        models = {}
        for kind in KINDS:
            hub.create_repo(f"bench/{kind}")
            hub.commit(f"bench/{kind}", make_repo(kind, hidden=args.hidden), message=kind)
            models[kind] = {"source": f"hf:bench/{kind}"}
        project = work / "project"
        write_manifest(project, models)

        print(f"remote: {remote}")
        print("1. build from source and push (empty store, convert extra installed)")
        build = run(sys.executable, ["build", "--push"], cwd=project, env={**env, "GPUX_HOME": str(work / "a")})
        consumer = consumer_python(work / "consumer-venv")
        print("2. cold sync from the warm remote (empty store, no convert extra)")
        sync = run(consumer, ["sync", "--locked"], cwd=project, env={**env, "GPUX_HOME": str(work / "b")})
        ratio = build / sync
        print(f"\ncold sync from the remote: {sync:.2f} s; build from source: {build:.2f} s")
        print(f"ratio: {ratio:.1f}x faster (goal: >= 10x) {'OK' if ratio >= 10 else 'BELOW GOAL'}")
        full = install_size(Path(sys.executable))
        slim = install_size(consumer)
        print(f"install size: {human_size(slim)} without the convert extra, {human_size(full)} with it")
    finally:
        if s3 is not None:
            s3.stop()
        hub.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
