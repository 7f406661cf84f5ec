"""Dynamic micro-batching: examples from concurrent requests share one model call.

A batch leaves when it holds `max_batch` examples or when its oldest example has waited
`max_wait_s`, whichever comes first. Only one batch per model runs at a time, on the model's own
thread, so the event loop keeps accepting requests meanwhile; examples that queue up during a
batch have already waited, and go out in the next one at once. Examples whose request was
cancelled (client gone, per-request timeout) are dropped before they reach the model.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from lantern_jax.serve.metrics import ServerMetrics

log = logging.getLogger("lantern_jax.serve")


@dataclasses.dataclass
class _Pending:
    item: Any
    future: asyncio.Future
    enqueued: float


class MicroBatcher:
    """`await batcher.submit(item) -> result`, where `process(items) -> results` runs on a
    dedicated thread with up to `max_batch` items at a time."""

    def __init__(self, name: str, process: Callable[[list[Any]], Sequence[Any]], *, max_batch: int,
                 max_wait_s: float, metrics: ServerMetrics | None = None):
        if max_batch < 1:
            raise ValueError(f"{name}: max_batch must be >= 1, got {max_batch}")
        self.name, self.process = name, process
        self.max_batch, self.max_wait_s = max_batch, max(0.0, max_wait_s)
        self.metrics = metrics
        self._pending: collections.deque[_Pending] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"serve-{name}")

    # -- lifecycle (inside the server's event loop) ---------------------------------------------
    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for p in self._pending:
            p.future.cancel()
        self._pending.clear()
        self._thread.shutdown(wait=False)

    # -- submitting -----------------------------------------------------------------------------
    async def submit(self, item: Any) -> Any:
        return (await self.submit_many([item]))[0]

    async def submit_many(self, items: Sequence[Any]) -> list[Any]:
        if self._task is None:
            raise RuntimeError(f"batcher {self.name} is not running")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        pending = [_Pending(item, loop.create_future(), now) for item in items]
        self._pending.extend(pending)
        self._gauge()
        self._wakeup.set()
        try:
            return list(await asyncio.gather(*(p.future for p in pending)))
        except BaseException:
            for p in pending:  # a timeout or a failed sibling: the rest needn't run
                p.future.cancel()
            raise

    # -- the loop -------------------------------------------------------------------------------
    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.labels(model=self.name).set(len(self._pending))

    def _drop_cancelled(self) -> None:
        while self._pending and self._pending[0].future.done():
            self._pending.popleft()

    async def _next_batch(self) -> list[_Pending]:
        while True:
            self._drop_cancelled()
            if self._pending:
                break
            self._wakeup.clear()
            await self._wakeup.wait()
        deadline = self._pending[0].enqueued + self.max_wait_s
        while len(self._pending) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        batch = []
        while self._pending and len(batch) < self.max_batch:
            p = self._pending.popleft()
            if not p.future.done():
                batch.append(p)
        self._gauge()
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            tic = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._thread, self.process, [p.item for p in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(results)} results for {len(batch)} examples")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the model failed: these requests fail, the server goes on
                log.exception("%s batch of %d failed", self.name, len(batch))
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            if self.metrics is not None:
                self.metrics.batch_size.labels(model=self.name).observe(len(batch))
                self.metrics.batch_seconds.labels(model=self.name).observe(time.perf_counter() - tic)
                self.metrics.examples.labels(model=self.name).inc(len(batch))
            for p, result in zip(batch, results):
                if not p.future.done():
                    p.future.set_result(result)
