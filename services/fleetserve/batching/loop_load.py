"""Whether the event loop, which runs cheap batches itself, is saturated.

Batches that run inline run on the loop, so for them the loop is the executor: when it has no
time left (the transport and the data plane of many requests), an idle "executor" does not mean
low load, and the adaptive policy coalesces instead of dispatching each request at once.
Saturated means: over the last period the loop thread was runnable (on a CPU, or ready and
waiting for one) nearly all the time, i.e. it never waited for I/O. Runnable rather than on-CPU:
measured on one core at c=64, the loop thread was on the CPU 67% of the time, the rest went to
the transport's and the prediction log's threads while it waited for the core. On Linux that is
/proc/thread-self/schedstat (run time + run-queue wait); elsewhere the thread's CPU time.
Read on the loop thread: both are per thread.

A saturated loop alone is not enough: on a machine busy with other processes the loop thread
waits for a CPU most of the time even at low traffic, and holding a lone request gains nothing
when no other arrives meanwhile (measured: a canary at ~30 req/s on such a machine, held up to
4.5 ms, failed its rollout's latency guardrail). So `saturated` also needs `min_rate` arrivals
a second (by default 400: two more within the 5 ms a request may be held).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

_SCHEDSTAT = Path("/proc/thread-self/schedstat")


def runnable_seconds() -> float:
    """Seconds this thread has been runnable (on a CPU or waiting for one) since it started."""
    try:
        on_cpu, waiting = _SCHEDSTAT.read_text().split()[:2]
    except (OSError, ValueError):
        return time.thread_time()
    return (int(on_cpu) + int(waiting)) / 1e9


def _source() -> Callable[[], float]:
    try:
        _SCHEDSTAT.read_text()
    except OSError:
        return time.thread_time
    return runnable_seconds


class LoopLoad:
    """The loop thread's runnable share over the last `period_s`, with hysteresis."""

    def __init__(
        self,
        period_s: float = 0.1,
        enter: float = 0.9,
        leave: float = 0.6,
        min_rate: float = 400.0,
        wall: Callable[[], float] = time.perf_counter,
        busy: Callable[[], float] | None = None,
    ) -> None:
        self._period = period_s
        self._enter, self._leave = enter, leave
        self._min_rate = min_rate
        self._arrivals = 0
        self.rate = 0.0  # arrivals a second over the last period
        self._wall = wall
        self._busy = busy or _source()
        # The first update takes the baseline: the batcher is built on a loader thread, and
        # that thread's figure against the loop's later read as a saturated loop.
        self._t0: float | None = None
        self._b0 = 0.0
        self.share = 0.0
        self.saturated = False

    def arrived(self) -> None:
        """Count one request that reached the batcher."""
        self._arrivals += 1

    def update(self) -> bool:
        """Whether the loop is saturated; re-measured at most once per period. Call it on the loop."""
        now = self._wall()
        if self._t0 is None:
            self._t0, self._b0, self._arrivals = now, self._busy(), 0
            return self.saturated
        elapsed = now - self._t0
        if elapsed >= self._period:
            busy = self._busy()
            self.share = min(1.0, (busy - self._b0) / elapsed)
            self.rate = self._arrivals / elapsed
            self._t0, self._b0, self._arrivals = now, busy, 0
            loaded = self.share > self._leave if self.saturated else self.share >= self._enter
            self.saturated = loaded and self.rate >= self._min_rate
        return self.saturated
