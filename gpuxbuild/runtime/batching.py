"""Dynamic batching: concurrent text requests to one encoder model are run as one onnxruntime batch.

A request waits at most `max_wait_s` for others to join; a batch holds at most `max_rows` texts; requests
with different options (or with and without text pairs) never share a batch. A batch's texts are sorted by
length and run in groups, each padded to its own longest text: which texts share a run is decided by what runs
cost on this machine and model (`RunCosts`): a run's fixed cost against the work its padding adds (`group_rows`).
Where runs cost little beyond their tokens (a large model), texts run alone or with texts of their own length;
where the fixed cost dominates (a small model), many texts share a run.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from gpuxbuild.runtime.inputs import ParsedInputs
    from gpuxbuild.runtime.session import Model

# Tasks whose texts are independent rows of one graph run (generation decodes token by token, per text).
BATCHED_TASKS = ("feature-extraction", "fill-mask", "question-answering", "text-classification", "token-classification")


def group_rows(lengths: list[int], max_rows: int, overhead: float) -> list[list[int]]:
    """Indices into `lengths` in groups to run together, of at most `max_rows` rows: the partition of the rows
    sorted by length that costs least when a run costs `overhead` plus its rows times its longest length (every
    row is padded to the longest), all in units of length. Exact, by dynamic programming over the sorted rows."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sizes = [max(lengths[i], 1) for i in order]
    best = [0.0] + [float("inf")] * len(order)  # best[j]: the cost of the first j sorted rows
    cut = [0] * (len(order) + 1)  # where the last group of the first j rows starts
    for j in range(1, len(order) + 1):
        for i in range(max(0, j - max_rows), j):  # the last group: sorted rows i..j-1, padded to row j-1
            cost = best[i] + overhead + (j - i) * sizes[j - 1]
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups: list[list[int]] = []
    j = len(order)
    while j:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


class RunCosts:
    """What runs of one model cost, learnt from the runs: seconds = fixed + per_row * rows + per_unit * rows *
    longest, fitted by least squares over the last `window` runs. `overhead()` is the fixed cost in units of
    length (what one more run costs, as padding would): the exchange rate `group_rows` needs."""

    DEFAULT_OVERHEAD = 32.0  # until `min_runs` runs are known: a few words' worth
    window, min_runs = 256, 16

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, float, float]] = []  # (1, rows, rows * longest, seconds)
        self.current = self.DEFAULT_OVERHEAD

    def add(self, rows: int, longest: int, seconds: float) -> None:
        self.samples.append((1.0, float(rows), float(rows * max(longest, 1)), seconds))
        del self.samples[: -self.window]
        if len(self.samples) >= self.min_runs:
            self.current = self._fit()

    def _fit(self) -> float:
        import numpy as np

        data = np.array(self.samples)
        (fixed, _per_row, per_unit), *_ = np.linalg.lstsq(data[:, :3], data[:, 3], rcond=None)
        if per_unit <= 0:  # runs did not vary enough to tell (or noise): keep the last estimate
            return self.current
        # clamped: a noisy fit must neither split every run nor pad without bound
        return float(min(max(fixed / per_unit, 0.0), 8 * self.DEFAULT_OVERHEAD))

    def overhead(self) -> float:
        return self.current


@dataclass
class _Item:
    parsed: ParsedInputs
    key: str
    future: asyncio.Future


class Batcher:
    """Groups `submit`ted requests of one model; runs each group in a worker thread under `gate`."""

    def __init__(
        self,
        model: Model,
        gate: asyncio.Lock,
        max_rows: int,
        max_wait_s: float,
        run_in_thread: Callable,
        on_batch: Callable[[int], None] = lambda rows: None,
    ):
        self.model, self.gate, self.max_rows, self.max_wait_s = model, gate, max_rows, max_wait_s
        self.run_in_thread, self.on_batch = run_in_thread, on_batch
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.costs = RunCosts()

    async def submit(self, parsed: ParsedInputs) -> list[dict]:
        """The per-text results of `parsed` (texts, never tensors), computed in a batch with others."""
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._collect())
        key = json.dumps([parsed.pairs is not None, parsed.options], sort_keys=True, default=str)
        item = _Item(parsed, key, loop.create_future())
        self.queue.put_nowait(item)
        return await item.future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        held: list[_Item] = []  # arrived while another kind of batch was being filled
        while True:
            first = held.pop(0) if held else await self.queue.get()
            batch, rows = [first], len(first.parsed.texts)
            for item in list(held):
                if item.key == first.key and rows + len(item.parsed.texts) <= self.max_rows:
                    held.remove(item)
                    batch.append(item)
                    rows += len(item.parsed.texts)
            deadline = loop.time() + self.max_wait_s
            while rows < self.max_rows:
                # Requests queued by now always join; the wait (up to the deadline) is for requests yet to come.
                if not self.queue.empty():
                    item = self.queue.get_nowait()
                else:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), remaining)
                    except TimeoutError:
                        break
                if item.key == first.key and rows + len(item.parsed.texts) <= self.max_rows:
                    batch.append(item)
                    rows += len(item.parsed.texts)
                else:
                    held.append(item)
            batch = [item for item in batch if not item.future.done()]  # clients that went away
            if batch:
                await self._run(batch)

    async def _run(self, batch: list[_Item]) -> None:
        """Run a batch's texts in groups (`group_rows`, at this model's `costs`; characters stand for tokens), one
        onnxruntime run per group, and answer each request as soon as its texts are done: its client can send
        its next request while later groups run, so the next batch is waiting when this one ends. The requests
        of a group that fails are rerun alone, so one bad request (e.g. a text without a mask token) fails alone."""
        first = batch[0].parsed
        owner = [item for item in batch for _ in item.parsed.texts]
        texts = [t for item in batch for t in item.parsed.texts]
        pairs = None if first.pairs is None else [p for item in batch for p in item.parsed.pairs or []]
        lengths = [len(t) + (len(pairs[i]) if pairs else 0) for i, t in enumerate(texts)]
        results: list = [None] * len(texts)
        left = {id(item): len(item.parsed.texts) for item in batch}
        starts, offset = {}, 0
        for item in batch:
            starts[id(item)], offset = offset, offset + len(item.parsed.texts)
        for group in group_rows(lengths, self.max_rows, self.costs.overhead()):
            group = [i for i in group if not owner[i].future.done()]
            if not group:
                continue
            try:
                async with self.gate:
                    start = time.perf_counter()
                    got = await self.run_in_thread(
                        self.model.predict_texts,
                        [texts[i] for i in group],
                        None if pairs is None else [pairs[i] for i in group],
                        first.options,
                    )
                    self.costs.add(len(group), max(lengths[i] for i in group), time.perf_counter() - start)
            except Exception as exc:
                if len(batch) == 1:
                    if not batch[0].future.done():
                        batch[0].future.set_exception(exc)
                    return
                for item in {id(owner[i]): owner[i] for i in group}.values():  # each request of the group, once
                    if not item.future.done():
                        await self._alone(item)
                continue
            self.on_batch(len(group))
            for i, result in zip(group, got, strict=True):
                results[i] = result
                item = owner[i]
                left[id(item)] -= 1
                if not left[id(item)] and not item.future.done():
                    start = starts[id(item)]
                    item.future.set_result(results[start : start + len(item.parsed.texts)])

    async def _alone(self, item: _Item) -> None:
        """Run one request's texts by themselves; its answer, or its error."""
        parsed = item.parsed
        try:
            async with self.gate:
                got = await self.run_in_thread(self.model.predict_texts, parsed.texts, parsed.pairs, parsed.options)
        except Exception as exc:
            if not item.future.done():
                item.future.set_exception(exc)
            return
        self.on_batch(len(parsed.texts))
        if not item.future.done():
            item.future.set_result(got)
