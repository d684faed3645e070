"""A generic batcher: items queue on the event loop, executors run batches.

The queue and all its bookkeeping live on the event loop thread; an executor thread only runs
`run(items)` and hands the results back with `call_soon_threadsafe`, so no lock guards the
queue. `run` must return one result per item, in order; a mismatch fails the whole batch.

Dispatch happens once per loop iteration (`call_soon`), so requests that arrive together form
one batch even when an executor is idle. A batch that the latency model predicts to take less
than `inline_below_s` runs on the loop itself: on a busy core, handing it to a thread and back
costs more than computing it (two thread switches and a wake-up of the loop).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fleetserve.common.clock import Clock, SystemClock

from .latency import LatencyModel
from .policy import BatchPolicy, GreedyPolicy

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BatchReport:
    """What one executed batch did, for statistics and metrics."""

    items: int
    rows: int
    queue_seconds: list[float]
    compute_seconds: float
    failed: bool
    inline: bool = False


class _Pending(Generic[T, R]):
    __slots__ = ("enqueued", "future", "item", "key", "size")

    def __init__(self, item: T, size: int, key: Hashable, future: asyncio.Future[R], enqueued: float) -> None:
        self.item = item
        self.size = size
        self.key = key
        self.future = future
        self.enqueued = enqueued

    @property
    def cancelled(self) -> bool:
        return self.future.done()


class BatcherClosed(Exception):
    """The batcher no longer takes items (its model version is being unloaded)."""


class Batcher(Generic[T, R]):
    """Queues items and runs them in batches on `executors` executors."""

    def __init__(
        self,
        run: Callable[[list[T]], list[R]],
        *,
        max_batch_size: int,
        executors: int = 1,
        policy: BatchPolicy | None = None,
        on_batch: Callable[[BatchReport], None] | None = None,
        clock: Clock | None = None,
        inline_below_s: float = 0.0,
        name: str = "batcher",
    ) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self._policy = policy or GreedyPolicy()
        self._on_batch = on_batch
        self._clock = clock or SystemClock()
        self._inline_below = inline_below_s
        self.latency = LatencyModel()
        self._queue: collections.deque[_Pending[T, R]] = collections.deque()
        self._idle: list[_Executor] = []
        self._executors: list[_Executor] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._flush_scheduled = False
        self._inflight = 0
        self._drained: asyncio.Event | None = None
        self._count = max(1, executors)
        self._name = name

    @property
    def depth(self) -> int:
        """Items waiting for an executor."""
        return len(self._queue)

    @property
    def inflight(self) -> int:
        """Items queued or running."""
        return self._inflight

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for i in range(self._count):
            ex = _Executor(f"{self._name}-{i}", self)
            self._executors.append(ex)
            self._idle.append(ex)

    async def submit(self, item: T, size: int = 1, key: Hashable = None) -> R:
        """Queue an item and wait for its result (the exception of a failed batch is raised)."""
        if self._closed:
            raise BatcherClosed("model version is unloading")
        if self._loop is None:
            self._start()
        loop = self._loop
        assert loop is not None
        if self._inline_below > 0 and not self._queue and self._idle and not self._inflight:
            # Nothing else waits: a batch this cheap is computed right here, without suspending.
            predicted = self.latency.predict(size)
            if predicted is not None and predicted < self._inline_below:
                return self._run_now(item, size)
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append(_Pending(item, size, key, future, self._clock.monotonic()))
        self._inflight += 1
        try:
            if self._idle and not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(self._flush)
            return await future
        finally:
            self._inflight -= 1
            if self._inflight == 0 and self._drained is not None:
                self._drained.set()

    def _run_now(self, item: T, size: int) -> R:
        executor = self._idle.pop()
        started = self._clock.monotonic()
        try:
            results: Any = self._run([item])
        except Exception as exc:
            results = exc
        ended = self._clock.monotonic()
        self._idle.append(executor)
        results = _checked(results, 1)
        failed = isinstance(results, BaseException)
        if not failed:
            self.latency.observe(size, ended - started)
        if self._on_batch is not None:
            self._report(BatchReport(1, size, [0.0], ended - started, failed, inline=True))
        if failed:
            raise results
        return results[0]

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._dispatch()

    def _dispatch(self) -> None:
        while self._idle and self._queue:
            # Drop cancelled items at the head so they cannot block the queue.
            while self._queue and self._queue[0].cancelled:
                self._queue.popleft()
            if not self._queue:
                return
            chosen = self._policy.take(self._queue, self.max_batch_size)
            if not chosen:
                return
            batch = [self._queue[i] for i in chosen]
            for i in reversed(chosen):
                del self._queue[i]
            batch = [p for p in batch if not p.cancelled]
            if not batch:
                continue
            executor = self._idle.pop()
            if self._inline_below > 0:
                predicted = self.latency.predict(sum(p.size for p in batch))
                if predicted is not None and predicted < self._inline_below:
                    self._execute_inline(executor, batch)
                    continue
            executor.jobs.put(batch)

    def _execute_inline(self, executor: _Executor, batch: list[_Pending[T, R]]) -> None:
        started = self._clock.monotonic()
        try:
            results: Any = self._run([p.item for p in batch])
        except Exception as exc:  # a failed batch fails its items, never the batcher
            results = exc
        self._complete(executor, batch, results, started, self._clock.monotonic(), inline=True)

    def _complete(
        self,
        executor: _Executor,
        batch: list[_Pending[T, R]],
        results: Any,
        started: float,
        ended: float,
        inline: bool = False,
    ) -> None:
        results = _checked(results, len(batch))
        failed = isinstance(results, BaseException)
        for i, p in enumerate(batch):
            if p.future.done():
                continue
            if failed:
                p.future.set_exception(results)
            else:
                p.future.set_result(results[i])
        self._idle.append(executor)
        rows = sum(p.size for p in batch)
        if not failed:
            self.latency.observe(rows, ended - started)
        if self._on_batch is not None:
            queued = [started - p.enqueued for p in batch]
            self._report(BatchReport(len(batch), rows, queued, ended - started, failed, inline))
        if not inline and self._queue:
            self._dispatch()

    def _report(self, report: BatchReport) -> None:
        assert self._on_batch is not None
        try:
            self._on_batch(report)
        except Exception:  # statistics must not stall the queue behind this batch
            log.exception("%s: on_batch failed", self._name)

    def _execute(self, executor: _Executor, batch: list[_Pending[T, R]]) -> None:
        started = self._clock.monotonic()
        try:
            results: Any = self._run([p.item for p in batch])
        except Exception as exc:  # a failed batch fails its items, never the executor
            results = exc
        ended = self._clock.monotonic()
        assert self._loop is not None
        # RuntimeError: the loop has closed, and nobody waits for these results any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._complete, executor, batch, results, started, ended)

    async def close(self, drain_timeout: float = 30.0) -> None:
        """Stop taking items, let queued and running ones finish, then stop the executors."""
        self._closed = True
        if self._inflight:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), drain_timeout)
            except TimeoutError:
                for p in self._queue:
                    if not p.future.done():
                        p.future.set_exception(BatcherClosed("model version unloaded"))
        for ex in self._executors:
            ex.jobs.put(None)
        for ex in self._executors:
            await asyncio.to_thread(ex.thread.join, 5.0)


def _checked(results: Any, items: int) -> Any:
    """The results of a batch, or the exception that fails it (a wrong count fails it too:
    anything raised later would leave futures unanswered and the executor lost)."""
    if isinstance(results, BaseException):
        return results
    if not isinstance(results, list | tuple) or len(results) != items:
        got = f"{len(results)} results" if isinstance(results, list | tuple) else type(results).__name__
        return RuntimeError(f"batch of {items} items gave {got}")
    return results


class _Executor:
    """One thread that runs one batch at a time."""

    def __init__(self, name: str, owner: Batcher[Any, Any]) -> None:
        self.jobs: queue.SimpleQueue[list[Any] | None] = queue.SimpleQueue()
        self._owner = owner
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            batch = self.jobs.get()
            if batch is None:
                return
            self._owner._execute(self, batch)
