"""Whether the event loop, which runs cheap batches itself, is saturated.

Batches that run inline run on the loop, so for them the loop is the executor: when it has no
time left (the transport and the data plane of many requests), an idle "executor" does not mean
low load, and the adaptive policy coalesces instead of dispatching each request at once.
Saturated means, over the last period: the loop thread was on the CPU nearly all the time, or
the whole process used nearly all the cores it may run on (the loop then shares its core with
the transport's and the prediction log's threads: measured on one core at c=64, the loop thread
had 67% of it, the rest those threads). Read on the loop thread (`time.thread_time` is per
thread).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class LoopLoad:
    """CPU shares over the last `period_s`, with hysteresis for `saturated`."""

    def __init__(
        self,
        period_s: float = 0.1,
        enter: float = 0.9,
        leave: float = 0.6,
        wall: Callable[[], float] = time.perf_counter,
        thread_cpu: Callable[[], float] = time.thread_time,
        process_cpu: Callable[[], float] = time.process_time,
        cores: int | None = None,
    ) -> None:
        self._period = period_s
        self._enter, self._leave = enter, leave
        self._wall, self._thread_cpu, self._process_cpu = wall, thread_cpu, process_cpu
        self._cores = cores or usable_cores()
        # The first update takes the baseline: the batcher is built on a loader thread, and
        # `thread_cpu` of that thread against the loop's later read as a saturated loop.
        self._t0: float | None = None
        self._l0 = self._p0 = 0.0
        self.share = 0.0  # the larger of the loop thread's share and the process's share of its cores
        self.saturated = False

    def update(self) -> bool:
        """Whether the loop is saturated; re-measured at most once per period. Call it on the loop."""
        now = self._wall()
        if self._t0 is None:
            self._t0, self._l0, self._p0 = now, self._thread_cpu(), self._process_cpu()
            return self.saturated
        elapsed = now - self._t0
        if elapsed >= self._period:
            loop, process = self._thread_cpu(), self._process_cpu()
            self.share = min(
                1.0, max((loop - self._l0) / elapsed, (process - self._p0) / (elapsed * self._cores))
            )
            self._t0, self._l0, self._p0 = now, loop, process
            self.saturated = self.share > self._leave if self.saturated else self.share >= self._enter
        return self.saturated
