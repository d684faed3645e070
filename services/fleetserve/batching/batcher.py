"""A generic batcher: items queue on the event loop, executors run batches.

The queue and all its bookkeeping live on the event loop thread; an executor thread only runs
`run(items)` and hands the results back with `call_soon_threadsafe`, so no lock guards the
queue. `run` must return one result per item, in order; a mismatch fails the whole batch.

Admission: an item is refused at once when the queue is full or when its deadline cannot be
met (the latency model predicts its completion past it); a queued item fails when its deadline
passes or the policy drops it (it can no longer make it), never later. Priority level 1 first.

Dispatch happens once per loop iteration (`call_soon`), so requests that arrive together form
one batch even when an executor is idle. A batch predicted under `inline_below_s` runs on the
loop: on a busy core, handing it to a thread and back costs more than computing it. A lone cheap
request (nothing queued or running, no other request in this pass of the loop) is computed in
`submit` itself, without suspending; the next requests of the same pass (HTTP/1.1 connections
whose data came in together) queue behind it and form one batch when the pass ends.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from fleetserve.common.clock import Clock, SystemClock

from .latency import LatencyModel
from .loop_load import LoopLoad
from .policy import AdaptivePolicy, BatchPolicy, Limits
from .queued import Executor, Pending
from .results import BatcherClosed, BatchReport, Rejected, checked

__all__ = ["BatchReport", "Batcher", "BatcherClosed", "Rejected"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


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
        preferred_batch_sizes: tuple[int, ...] = (),
        max_queue_delay_s: float | None = None,
        max_queue_size: int = 0,
        name: str = "batcher",
        loop_load: LoopLoad | None = None,
    ) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.limits = Limits(max_batch_size, tuple(sorted(preferred_batch_sizes)), max_queue_delay_s)
        self.policy: BatchPolicy = policy or AdaptivePolicy()
        self._on_batch = on_batch
        self._clock = clock or SystemClock()
        self._inline_below = inline_below_s
        # inline batches run on the loop: its load is their executor's (None: nothing inline)
        self._load = (loop_load or LoopLoad()) if inline_below_s > 0 else None
        self._max_queue = max_queue_size
        self.latency = LatencyModel()
        self._levels: dict[int, collections.deque[Pending[T, R]]] = {}
        self._queued = 0  # live items in the queues
        self._rows: dict[int, int] = {}  # live rows queued per priority level
        self._idle: list[Executor] = []
        self._executors: list[Executor] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._flush_scheduled = False
        self._pass_open = False  # a request reached submit in this pass of the loop
        self._wake: asyncio.TimerHandle | None = None
        self._inflight = 0
        self._drained: asyncio.Event | None = None
        self._count = max(1, executors)
        self._name = name

    @property
    def depth(self) -> int:
        """Items waiting for an executor."""
        return self._queued

    @property
    def inflight(self) -> int:
        """Items queued or running."""
        return self._inflight

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for i in range(self._count):
            ex = Executor(f"{self._name}-{i}", self._execute)
            self._executors.append(ex)
            self._idle.append(ex)

    # --- admission ---

    def estimated_wait(self, priority: int = 0) -> float | None:
        """Predicted seconds before a new item of this priority starts computing (None in warm-up)."""
        now = self._clock.monotonic()
        busy = self._executors and not self._idle
        free_in = max(0.0, min(ex.busy_until for ex in self._executors) - now) if busy else 0.0
        ahead = sum(rows for level, rows in self._rows.items() if level <= priority)
        if not ahead:
            return free_in
        chunk = max(1, self.max_batch_size)
        full, rest = divmod(ahead, chunk)
        per_full, per_rest = self.latency.predict(chunk), self.latency.predict(rest) if rest else 0.0
        if per_full is None or per_rest is None:
            return None
        handovers = (full + bool(rest)) * self.latency.handover
        return free_in + (full * per_full + per_rest + handovers) / self._count

    def _admit(self, size: int, priority: int, deadline: float | None) -> bool:
        """Refuse the item (Rejected), or return whether its deadline was checked by the model."""
        if self._max_queue and self._queued >= self._max_queue:
            wait = self.estimated_wait(priority)
            raise Rejected("queue_full", f"queue is full ({self._max_queue} requests waiting)", wait)
        if deadline is None:
            return False
        if self._idle and not self._queued and self._clock.monotonic() < deadline:
            # An idle batcher always takes a request whose deadline has not passed: otherwise a
            # latency model that learned slow batches (a busy spell) would refuse everything and,
            # running nothing, never learn better.
            return False
        wait = self.estimated_wait(priority)
        compute = self.latency.predict(size)
        if wait is None or compute is None:
            return False  # warm-up: nothing to predict with
        compute += self.latency.handover  # its own batch's hand-over, if it runs on a thread
        now = self._clock.monotonic()
        if now >= deadline:
            raise Rejected(
                "deadline", f"the deadline passed {(now - deadline) * 1e3:.1f} ms before queueing", wait
            )
        margin = self.latency.margin
        if now + (wait + compute) * margin > deadline:
            budget = (deadline - now) * 1e3
            raise Rejected(
                "deadline",
                f"the deadline cannot be met: {budget:.1f} ms left, predicted "
                f"{wait * 1e3:.1f} ms queueing + {compute * 1e3:.1f} ms compute"
                + (f" (x{margin:.2f}, the tail of recent batch times)" if margin > 1.0 else ""),
                wait,
            )
        return True

    async def submit(
        self,
        item: T,
        size: int = 1,
        key: Hashable = None,
        *,
        priority: int = 0,
        deadline: float | None = None,
    ) -> R:
        """Queue an item and wait for its result (the exception of a failed batch is raised).

        `priority`: 1 is served first, higher numbers later. `deadline`: the clock's time by
        which the item must be answered; Rejected when it cannot be or was not met.
        """
        if self._closed:
            raise BatcherClosed("model version is unloading")
        if self._loop is None:
            self._start()
        loop = self._loop
        assert loop is not None
        checked = self._admit(size, priority, deadline)
        if self._load is not None:
            self._load.arrived()
        if (
            self._inline_below > 0
            and self.policy.dispatches_at_once
            and not self._queued
            and self._idle
            and not self._inflight
            and not self._saturated()
            # past the first request of a pass of the loop (HTTP/1.1 connections whose data
            # came in together), requests queue: the flush at the end of the pass batches them
            and not self._pass_open
        ):
            # Nothing else waits: a batch this cheap is computed right here, without suspending.
            predicted = self.latency.predict(size)
            if predicted is not None and predicted < self._inline_below:
                self._pass_open = True
                loop.call_soon(self._end_pass)
                return self._run_now(item, size)
        future: asyncio.Future[R] = loop.create_future()
        now = self._clock.monotonic()
        pending = Pending(item, size, key, future, now, priority, deadline)
        pending.checked = checked
        self._levels.setdefault(priority, collections.deque()).append(pending)
        if len(self._levels) > 1:
            self._levels = dict(sorted(self._levels.items()))
        self._queued += 1
        self._rows[priority] = self._rows.get(priority, 0) + size
        if deadline is not None:
            pending.timer = loop.call_later(max(0.0, deadline - now), self._expire, pending)
        self._inflight += 1
        try:
            if self._idle and not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(self._flush)
            return await future
        finally:
            self._inflight -= 1
            if not pending.taken:  # the caller went away while the item was queued
                self._take(pending)
            if pending.timer is not None:
                pending.timer.cancel()
            if self._inflight == 0 and self._drained is not None:
                self._drained.set()

    def _saturated(self) -> bool:
        return self._load is not None and self._load.update()

    def _inline(self, rows: int) -> bool:
        """Whether a batch of `rows` would run on the loop (the loop's load is then its executor's)."""
        predicted = self.latency.predict(rows)
        return self._inline_below > 0 and predicted is not None and predicted < self._inline_below

    def _take(self, pending: Pending[T, R]) -> None:
        """The item leaves the queue (dispatched, expired, or its caller went away)."""
        pending.taken = True
        self._queued -= 1
        self._rows[pending.priority] -= pending.size

    def _end_pass(self) -> None:
        self._pass_open = False

    def _expire(self, pending: Pending[T, R]) -> None:
        if pending.live:
            self._take(pending)
            waited = (self._clock.monotonic() - pending.enqueued) * 1e3
            pending.future.set_exception(
                Rejected("timeout", f"deadline passed after {waited:.1f} ms in the queue")
            )

    # --- dispatch ---

    def _run_now(self, item: T, size: int) -> R:
        executor = self._idle.pop()
        started = self._clock.monotonic()
        try:
            results: Any = self._run([item])
        except Exception as exc:
            results = exc
        ended = self._clock.monotonic()
        self._idle.append(executor)
        results = checked(results, 1)
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
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        self._dispatch()

    def _view(self) -> list[Pending[T, R]]:
        """Live items in dispatch order, dropping dead ones at each level's head."""
        view: list[Pending[T, R]] = []
        limit = 4 * max(1, self.max_batch_size)
        for q in self._levels.values():
            while q and not q[0].live:
                q.popleft()
            view.extend(p for p in q if p.live)
            if len(view) >= limit:
                break
        return view

    def _dispatch(self) -> None:
        while self._idle and self._queued:
            view = self._view()
            if not view:
                return
            now = self._clock.monotonic()
            # coalescing on a saturated loop is for models whose batches the loop itself runs
            saturated = self._inline(view[0].size) and self._saturated()
            decision = self.policy.choose(view, self.limits, now, self.latency, saturated)
            if decision.drop:
                self._drop([view[i] for i in decision.drop], now)
                continue
            if not decision.take:
                if decision.wait_until is not None and self._wake is None and self._loop is not None:
                    self._wake = self._loop.call_later(max(0.0, decision.wait_until - now), self._flush)
                return
            batch = [view[i] for i in decision.take]
            for p in batch:
                self._take(p)
                if p.timer is not None:
                    p.timer.cancel()
            executor = self._idle.pop()
            rows = sum(p.size for p in batch)
            if self._inline(rows):
                self._execute_inline(executor, batch)
                continue
            predicted = self.latency.predict(rows)
            executor.busy_until = now + (predicted or 0.0) + self.latency.handover
            executor.dispatched = now
            executor.jobs.put(batch)

    def _drop(self, items: list[Pending[T, R]], now: float) -> None:  # refused, not computed late
        for p in items:
            self._take(p)  # its timer finds it taken; submit's finally cancels it
            waited, left = (now - p.enqueued) * 1e3, ((p.deadline or now) - now) * 1e3
            why = f"the deadline cannot be met any more after {waited:.1f} ms in the queue"
            p.future.set_exception(Rejected("timeout", f"{why}: {left:.1f} ms left"))

    def _execute_inline(self, executor: Executor, batch: list[Pending[T, R]]) -> None:
        started = self._clock.monotonic()
        try:
            results: Any = self._run([p.item for p in batch])
        except Exception as exc:  # a failed batch fails its items, never the batcher
            results = exc
        self._complete(executor, batch, results, started, self._clock.monotonic(), inline=True)

    def _complete(
        self,
        executor: Executor,
        batch: list[Pending[T, R]],
        results: Any,
        started: float,
        ended: float,
        inline: bool = False,
    ) -> None:
        results = checked(results, len(batch))
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
            way = None if inline else self._clock.monotonic() - executor.dispatched - (ended - started)
            self.latency.observe(rows, ended - started, way)  # queued requests wait for the way too
        if self._on_batch is not None:
            queued = [started - p.enqueued for p in batch]
            self._report(BatchReport(len(batch), rows, queued, ended - started, failed, inline))
        if not inline and self._queued:
            self._dispatch()

    def _report(self, report: BatchReport) -> None:
        assert self._on_batch is not None
        try:
            self._on_batch(report)
        except Exception:  # statistics must not stall the queue behind this batch
            log.exception("%s: on_batch failed", self._name)

    def _execute(self, executor: Executor, batch: list[Pending[T, R]]) -> None:
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
                for q in self._levels.values():
                    for p in q:
                        if p.live:
                            p.future.set_exception(BatcherClosed("model version unloaded"))
        for ex in self._executors:
            ex.jobs.put(None)
        for ex in self._executors:
            await asyncio.to_thread(ex.thread.join, 5.0)
