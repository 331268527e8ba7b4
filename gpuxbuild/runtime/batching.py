"""Dynamic batching: concurrent text requests to one encoder model are run as one onnxruntime batch.

A request waits at most `max_wait_s` for others to join; a batch holds at most `max_rows` texts; requests
with different options (or with and without text pairs) never share a batch. A batch's texts are sorted by
length and run in groups of similar length, each padded to its own longest text, so that short texts are not
padded to the length of a long one (`group_rows`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from gpuxbuild.runtime.inputs import ParsedInputs
    from gpuxbuild.runtime.session import Model

# Tasks whose texts are independent rows of one graph run (generation decodes token by token, per text).
BATCHED_TASKS = ("feature-extraction", "fill-mask", "question-answering", "text-classification", "token-classification")
# A group of rows grows while padding every row to the group's longest costs at most this share of extra work.
PADDING_BUDGET = 0.25


def group_rows(lengths: list[int], max_rows: int, budget: float = PADDING_BUDGET) -> list[list[int]]:
    """Indices into `lengths` in groups to run together: sorted by length, a group grows while its rows padded
    to the longest would be at most `budget` more than their own lengths, and up to `max_rows` rows."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    group: list[int] = []
    total = 0
    for i in order:
        longest = max(lengths[i], 1)
        if group and (len(group) == max_rows or longest * (len(group) + 1) > (1 + budget) * (total + longest)):
            groups.append(group)
            group, total = [], 0
        group.append(i)
        total += longest
    if group:
        groups.append(group)
    return groups


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
        """Run a batch's texts in groups of similar length (`group_rows`; characters stand for tokens), one
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
        for group in group_rows(lengths, self.max_rows):
            group = [i for i in group if not owner[i].future.done()]
            if not group:
                continue
            try:
                async with self.gate:
                    got = await self.run_in_thread(
                        self.model.predict_texts,
                        [texts[i] for i in group],
                        None if pairs is None else [pairs[i] for i in group],
                        first.options,
                    )
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
