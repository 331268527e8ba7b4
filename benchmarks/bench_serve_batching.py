"""Dynamic batching under load: 32 concurrent clients against `gpux serve` vs a bare onnxruntime loop.

    python benchmarks/bench_serve_batching.py [--models distilbert,minilm] [--requests 256] [--clients 32]
        [--max-wait-ms 5] [--workdir DIR] [--batch-sizes 1,2,4,8,16,32] [--repeat 1]

The models are distilbert-base-uncased-finetuned-sst-2-english and all-MiniLM-L6-v2 at their real sizes
(published configs, random weights, generated once like bench_cold_run.py), locked and synced from local folders.
For each model:
  limit:  a bare loop in this process, tokenizers + onnxruntime on the same texts, at batch sizes 1..32;
          the best texts/s is the limit.
  grouped: the same loop with each window of texts run in the groups the server's batcher would choose (its cost
          model, learnt from the loop's own runs; for reference: the server may beat the in-order limit by grouping).
  served: `gpux serve` (one process, both models) with `--clients` concurrent clients, each POSTing one text at a
          time in the Inference API's payload over its own keep-alive connection (a minimal asyncio client: the
          load generator shares the CPUs and must cost them little); requests/s and p50/p99 latency.
The goal is served >= 0.9x the limit. Both sides share the machine's cores with each other's neighbours (and the
clients share them with the server); the numbers are reported, never asserted. On a busy machine wall-clock
rates swing with the neighbours' load (printed): the CPU ratio (CPU seconds per text of the bare loop over those of
server and client) is steadier. `--workdir DIR` keeps the synced project for later runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_cold_run  # noqa: E402  (the real-size model generator)

CORPUS = (
    "the quick brown fox jumps over the lazy dog while paris is in france and berlin is in germany "
    "machine learning models run fast on gpus and cpus onnx runtime executes graphs with providers"
)
BATCH_SIZES = (1, 2, 4, 8, 16, 32)


def texts(count: int) -> list[str]:
    """Sentences of 8 to 40 words, the same every run."""
    rng = np.random.default_rng(0)
    words = CORPUS.split()
    return [" ".join(rng.choice(words, size=int(rng.integers(8, 41)))) for _ in range(count)]


def sync_project(root: Path, keys: list[str], cache: Path) -> Path:
    """A project whose models are the generated real-size folders, synced (built) with gpux (a no-op when
    `root` holds it already, from an earlier run with --workdir)."""
    lines = ["version: 1", "models:"]
    for key in keys:
        source = bench_cold_run.source_dir(bench_cold_run.MODELS[key], cache)
        if not (root / "models" / key).is_dir():
            shutil.copytree(source, root / "models" / key, ignore=shutil.ignore_patterns("meta.json"))
        lines.append(f"  {key}: {{source: path:./models/{key}}}")
    (root / "gpux.models.yml").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "GPUX_HOME": str(root / "home")}
    subprocess.run([sys.executable, "-m", "gpuxbuild", "-q", "sync"], cwd=root, env=env, check=True)
    return root


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of this process, or of process `pid` (Linux)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_limit(
    folder: Path, items: list[str], sizes: tuple[int, ...] = BATCH_SIZES, grouped: bool = False, repeat: int = 1
) -> tuple[int, float, float]:
    """(best batch size, texts/s, CPU seconds per text at that size) of tokenizers + onnxruntime alone over
    `items`, in batches of consecutive texts; `grouped`: each window of `size` texts run in the groups the server's
    batcher would run (gpuxbuild.runtime.batching: group_rows at the costs learnt from this loop's runs)."""
    from gpuxbuild.runtime import load
    from gpuxbuild.runtime.batching import RunCosts, group_rows

    model = load(folder, provider="cpu")
    session = model.main
    costs = RunCosts()

    def run(chunk: list[str]) -> None:
        start = time.perf_counter()
        session.run(None, model.feed(model.tokenizer.encode(chunk).arrays))
        costs.add(len(chunk), max(len(t) for t in chunk), time.perf_counter() - start)

    def groups(window: list[str], size: int) -> list[list[str]]:
        if not grouped:
            return [window]
        return [[window[i] for i in g] for g in group_rows([len(t) for t in window], size, costs.overhead())]

    best = (1, 0.0, 0.0)
    for size in sizes:
        windows = [items[i : i + size] for i in range(0, len(items), size)]
        for window in windows[:4]:  # warm-up (and the grouping's first costs)
            for chunk in groups(window, size):
                run(chunk)
        rate, per_text = 0.0, 0.0
        for _ in range(repeat):  # the best of `repeat` passes: neighbours only ever slow a pass down
            start, cpu = time.perf_counter(), cpu_seconds()
            for window in windows:
                for chunk in groups(window, size):
                    run(chunk)
            this = len(items) / (time.perf_counter() - start)
            if this > rate:
                rate, per_text = this, (cpu_seconds() - cpu) / len(items)
        print(
            f"    bare {'grouped ' if grouped else ''}batch {size:>2}: {rate:8.1f} texts/s, "
            f"{per_text * 1000:.1f} ms CPU per text",
            flush=True,
        )
        if rate > best[1]:
            best = (size, rate, per_text)
    return best


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def batches(response, model: str) -> tuple[float, float]:
    """(onnxruntime runs, texts run) of `model` so far, from a /metrics response."""
    values = {}
    for line in response.text.splitlines():
        for kind in ("count", "sum"):
            if line.startswith(f'gpux_batch_size_{kind}{{model="{model}"}}'):
                values[kind] = float(line.rsplit(" ", 1)[1])
    return values.get("count", 0.0), values.get("sum", 0.0)


class Connection:
    """A minimal HTTP/1.1 keep-alive client on one socket: the load generator must cost the shared CPUs as
    little as it can (httpx spends more CPU per request than the server does), as wrk or hey would."""

    def __init__(self, host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.host, self.port, self.reader, self.writer = host, port, reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(host, port, *await asyncio.open_connection(host, port))

    async def post(self, path: str, payload: dict) -> tuple[int, bytes]:
        body = json.dumps(payload).encode()
        head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        request = head.encode() + body
        self.writer.write(request)
        line = await self.reader.readline()
        if not line:  # the server closed an idle keep-alive connection (uvicorn: after 5 s): open another
            self.writer.close()
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.write(request)
            line = await self.reader.readline()
        status = int(line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def load_test(
    url: str, items: list[str], clients: int, server_pid: int
) -> tuple[float, np.ndarray, int, float, float]:
    """(requests/s, latencies in s, failures, mean texts per onnxruntime run, CPU seconds per request of the
    server and this client together) of `clients` concurrent clients sending `items` one by one, after a
    warm-up."""
    import httpx

    parsed = urlsplit(url)
    queue = list(reversed(items[: clients * 2]))  # the warm-up's
    latencies: list[float] = []
    failures = 0

    async def client(connection: Connection) -> None:
        nonlocal failures
        while queue:
            text = queue.pop()
            start = time.perf_counter()
            status, _ = await connection.post(parsed.path, {"inputs": text})
            latencies.append(time.perf_counter() - start)
            failures += status != 200

    metrics_url = url.rsplit("/models/", 1)[0] + "/metrics"
    connections = [await Connection.open(parsed.hostname or "127.0.0.1", parsed.port or 80) for _ in range(clients)]
    try:
        await asyncio.gather(*(client(c) for c in connections))  # warm-up: sessions, connections
        before = batches(httpx.get(metrics_url), url.rsplit("/", 1)[1])
        queue.extend(reversed(items))
        latencies.clear()
        start, cpu = time.perf_counter(), cpu_seconds() + cpu_seconds(server_pid)
        await asyncio.gather(*(client(c) for c in connections))
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds() + cpu_seconds(server_pid) - cpu
        after = batches(httpx.get(metrics_url), url.rsplit("/", 1)[1])
    finally:
        for c in connections:
            c.close()
    runs, rows = after[0] - before[0], after[1] - before[1]
    return len(items) / elapsed, np.array(latencies), failures, rows / max(runs, 1), cpu / len(items)


def serve(project: Path, keys: list[str], clients: int, wait_ms: int):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "gpuxbuild", "serve", *keys, "--port", str(port)]
    args += ["--max-queue", str(clients * 2), "--max-wait-ms", str(wait_ms), "--offline"]
    env = {**os.environ, "GPUX_HOME": str(project / "home")}
    proc = subprocess.Popen(args, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import httpx

    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(f"{base}/health", timeout=1).raise_for_status()
            return proc, base
        except httpx.TransportError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read()) from None
            time.sleep(0.2)
    raise RuntimeError("gpux serve did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="distilbert,minilm")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=Path(bench_cold_run.DEFAULT_CACHE))
    parser.add_argument("--workdir", type=Path, help="keep the synced project here, reused by later runs")
    parser.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)), help="of the bare loop")
    parser.add_argument("--repeat", type=int, default=1, help="passes of each measurement; the best one counts")
    args = parser.parse_args()
    keys = args.models.split(",")
    sizes = tuple(int(n) for n in args.batch_sizes.split(","))
    items = texts(args.requests)

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = args.workdir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        project = sync_project(root, keys, args.cache)
        rows = []
        for key in keys:
            print(f"{key}: bare onnxruntime loop (load average {loadavg()})", flush=True)
            size, limit, cpu = bare_limit(project / ".gpux" / "models" / key, items, sizes, repeat=args.repeat)
            grouped = bare_limit(project / ".gpux" / "models" / key, items, sizes, True, args.repeat)[1]
            rows.append([key, size, limit, grouped, cpu])
        proc, base = serve(project, keys, args.clients, args.max_wait_ms)
        try:
            for row in rows:
                print(f"{row[0]}: {args.clients} clients against gpux serve (load average {loadavg()})", flush=True)
                runs = [
                    asyncio.run(load_test(f"{base}/models/{row[0]}", items, args.clients, proc.pid))
                    for _ in range(args.repeat)
                ]
                rate, latencies, failures, batch, cpu = max(runs, key=lambda run: run[0])
                failures = sum(run[2] for run in runs)
                p50, p99 = float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99))
                row += [rate, p50, p99, batch, cpu, failures]
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    print(
        f"\n{args.requests} requests, {args.clients} clients, max wait {args.max_wait_ms} ms, {os.cpu_count()} CPUs, "
        f"load average {loadavg()} at the end"
    )
    print(
        f"{'model':<12}{'limit/s':>10}{'(batch)':>8}{'grouped/s':>10}{'served/s':>10}{'ratio':>7}{'vs grouped':>11}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'batch':>7}{'CPU ratio':>10}{'fail':>6}"
    )
    for key, size, limit, grouped, bare_cpu, rate, p50, p99, batch, cpu, failures in rows:
        print(
            f"{key:<12}{limit:>10.1f}{size:>8}{grouped:>10.1f}{rate:>10.1f}{rate / limit:>7.2f}{rate / grouped:>11.2f}"
            f"{p50 * 1000:>9.1f}{p99 * 1000:>9.1f}{batch:>7.1f}{bare_cpu / cpu:>10.2f}{failures:>6}"
        )
    print(
        "goal: ratio >= 0.90 (limit: the bare loop over consecutive texts at its best batch size; grouped: the bare "
        "loop with the server's length grouping; batch: mean texts per onnxruntime run of the server; CPU ratio: "
        "CPU seconds per text of the bare loop at its best batch size over those of server and client together, "
        "which a busy shared machine disturbs less than wall-clock rates)"
    )
    return 1 if any(row[-1] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
