"""Dynamic batching and the serve limits on the new routes, against a real server on 127.0.0.1."""

from __future__ import annotations

import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from gpuxbuild.runtime import load

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from serving import serving  # noqa: E402

TEXTS = ["hello world", "paris is in france", "the quick brown fox jumps over the lazy dog", "onnx", "gpus", "cpus"]


def _batches(base: str, model: str) -> tuple[float, float]:
    """(onnxruntime runs, texts run) of `model` so far, from /metrics."""
    text = httpx.get(f"{base}/metrics").text
    runs = re.search(rf'^gpux_batch_size_count{{model="{model}"}} (\S+)$', text, re.M)
    rows = re.search(rf'^gpux_batch_size_sum{{model="{model}"}} (\S+)$', text, re.M)
    return (float(runs.group(1)), float(rows.group(1))) if runs else (0.0, 0.0)


def test_concurrent_requests_share_one_run_and_get_their_own_answers(artifacts):
    folder = artifacts("bert").artifact
    model = load(folder)
    # A generous wait, so that all requests sent together surely meet in one batch on a busy machine.
    with serving(folder, GPUX_SERVE_MAX_WAIT_MS="3000") as (base, _):
        with ThreadPoolExecutor(len(TEXTS)) as pool:
            answers = list(pool.map(lambda t: httpx.post(f"{base}/", json={"inputs": t}, timeout=60), TEXTS))
        runs, rows = _batches(base, "bert")
    assert rows == len(TEXTS) and runs < len(TEXTS)
    for text, response in zip(TEXTS, answers, strict=True):
        assert response.status_code == 200
        want = model.predict({"text": text})["labels"]
        got = response.json()[0]
        assert [x["label"] for x in got] == [x["label"] for x in want]
        assert [x["score"] for x in got] == pytest.approx([x["score"] for x in want], abs=1e-5)


def test_a_bad_request_fails_alone_in_its_batch(artifacts):
    folder = artifacts("bert-mlm").artifact
    with serving(folder, GPUX_SERVE_MAX_WAIT_MS="3000") as (base, _):
        bodies = [{"inputs": "paris is in [MASK]"}, {"inputs": "no mask here"}, {"inputs": "hello [MASK]"}]
        with ThreadPoolExecutor(len(bodies)) as pool:
            answers = list(pool.map(lambda b: httpx.post(f"{base}/predict", json=b, timeout=60), bodies))
    assert [a.status_code for a in answers] == [200, 400, 200]
    assert "no [MASK] token in the text" in answers[1].json()["error"]


def test_limits_hold_on_every_protocols_routes(artifacts):
    folder = artifacts("sentence-transformers").artifact
    limits = {"GPUX_SERVE_MAX_BODY_BYTES": "2000", "GPUX_SERVE_MAX_BATCH": "4", "GPUX_SERVE_MAX_QUEUE": "1"}
    with serving({"st": folder}, **limits) as (base, _):
        big = "a " * 2000
        r = httpx.post(f"{base}/v1/embeddings", json={"model": "st", "input": big})
        assert r.status_code == 413 and "over the limit of 2000 bytes" in r.json()["error"]["message"]
        r = httpx.post(f"{base}/", json={"inputs": big})
        assert r.status_code == 413 and "over the limit of 2000 bytes" in r.json()["error"]
        r = httpx.post(f"{base}/v1/embeddings", json={"model": "st", "input": ["a"] * 5})
        assert r.status_code == 413 and "5 inputs, over the batch limit of 4" in r.json()["error"]["message"]
        r = httpx.post(f"{base}/models/st", json={"inputs": ["a"] * 5})
        assert r.status_code == 413 and "batch limit of 4" in r.json()["error"]
        r = httpx.post(f"{base}/v1/embeddings", content=b"[" * 100 + b"]" * 100)
        assert r.status_code == 400 and "nested deeper" in r.json()["error"]["message"]
        assert httpx.head(f"{base}/v1/models").status_code == 200
        metrics = httpx.get(f"{base}/metrics").text
        assert 'gpux_errors_total{status="413"} 4.0' in metrics
        assert 'gpux_request_duration_seconds_count{path="/v1/embeddings"}' in metrics

        body = b'{"model": "st", "input": "hello"}'
        with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1]))) as slow:
            # half a body holds the only queue place until the rest comes
            slow.sendall(
                b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:5]
            )
            for _ in range(300):
                r = httpx.post(f"{base}/v1/embeddings", json={"model": "st", "input": "hi"})
                if r.status_code == 503:
                    break
                time.sleep(0.1)  # the slow request may not have reached the app yet
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert "busy" in r.json()["error"]["message"]
            slow.sendall(body[5:])
            assert slow.recv(65536).startswith(b"HTTP/1.1 200")


def test_requests_already_waiting_join_the_batch_whatever_the_wait(artifacts):
    """A zero wait still takes every request queued by then (the wait is for requests yet to come)."""
    import asyncio

    from starlette.concurrency import run_in_threadpool

    from gpuxbuild.runtime.batching import Batcher
    from gpuxbuild.runtime.inputs import parse_inputs

    model = load(artifacts("bert").artifact)
    rows: list[int] = []
    texts = [f"paris is number {i}" for i in range(6)]  # one length: one group, one onnxruntime run

    async def main():
        batcher = Batcher(model, asyncio.Lock(), 32, 0.0, run_in_threadpool, rows.append)
        parsed = [parse_inputs(t, model.input_types, model.task) for t in texts]
        return await asyncio.gather(*(batcher.submit(p) for p in parsed))

    results = asyncio.run(main())
    assert rows == [len(texts)]
    assert [r[0]["label"] for r in results] == [model.predict(t)["label"] for t in texts]


def _cost(groups: list[list[int]], lengths: list[int], overhead: float) -> float:
    return sum(overhead + len(g) * max(max(lengths[i], 1) for i in g) for g in groups)


def _partitions(items: list[int]):
    """Every partition of `items` into groups."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in _partitions(rest):
        yield [[first], *partition]
        for n in range(len(partition)):
            yield [*partition[:n], [first, *partition[n]], *partition[n + 1 :]]


@pytest.mark.parametrize("overhead", [0.0, 3.0, 25.0, 1000.0])
@pytest.mark.parametrize("max_rows", [1, 2, 3, 32])
def test_a_batch_runs_in_the_groups_that_cost_least(overhead, max_rows):
    """A run costs its fixed overhead plus its rows padded to its longest: the groups are the cheapest partition
    of all (brute force over every partition of seven rows), at most max_rows each."""
    from gpuxbuild.runtime.batching import group_rows

    lengths = [40, 10, 11, 39, 10, 200, 12]
    groups = group_rows(lengths, max_rows, overhead)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(len(g) <= max_rows for g in groups)
    allowed = [p for p in _partitions(list(range(len(lengths)))) if all(len(g) <= max_rows for g in p)]
    assert _cost(groups, lengths, overhead) == min(_cost(p, lengths, overhead) for p in allowed)


def test_grouping_follows_the_exchange_rate_of_runs_and_padding():
    from gpuxbuild.runtime.batching import group_rows

    lengths = [40, 10, 11, 39, 10, 200, 12]
    assert group_rows(lengths, 32, 0.0) == [[1, 4], [2], [6], [3], [0], [5]]  # free runs: only equal lengths share
    assert group_rows(lengths, 32, 10_000.0) == [[1, 4, 2, 6, 3, 0, 5]]  # costly runs: one for all
    assert group_rows(lengths, 32, 5.0) == [[1, 4, 2, 6], [3, 0], [5]]
    assert group_rows([5] * 7, 3, 0.0) == [[0], [1, 2, 3], [4, 5, 6]]
    assert group_rows([], 8, 1.0) == []


def test_run_costs_are_learnt_from_the_runs():
    """seconds = fixed + per_row * rows + per_unit * rows * longest: the overhead is fixed / per_unit, in units of
    length; a default until enough runs are known; clamped when the runs say nothing sensible."""
    from gpuxbuild.runtime.batching import RunCosts

    costs = RunCosts()
    rng = np.random.default_rng(0)
    for _ in range(RunCosts.min_runs - 1):
        rows, longest = int(rng.integers(1, 9)), int(rng.integers(10, 200))
        costs.add(rows, longest, 0.004 + 0.001 * rows + 0.0001 * rows * longest)
    assert costs.overhead() == RunCosts.DEFAULT_OVERHEAD
    for _ in range(40):
        rows, longest = int(rng.integers(1, 9)), int(rng.integers(10, 200))
        costs.add(rows, longest, 0.004 + 0.001 * rows + 0.0001 * rows * longest)
    assert costs.overhead() == pytest.approx(40.0)  # 0.004 s of fixed cost buys 40 units of padding

    flat = RunCosts()
    for n in range(RunCosts.min_runs):
        flat.add(1 + n % 4, 20 + n, 0.01)  # runs cost the same whatever they hold: as few runs as can be, bounded
    assert flat.overhead() == 8 * RunCosts.DEFAULT_OVERHEAD
    for n in range(RunCosts.min_runs):
        flat.add(1 + n % 4, 20 + n, 0.05 - 0.00001 * (1 + n % 4) * (20 + n))  # nonsense (cheaper with more work)
    assert flat.overhead() == 8 * RunCosts.DEFAULT_OVERHEAD  # ignored: the last estimate stays
