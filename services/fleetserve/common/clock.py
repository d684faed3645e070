"""Time sources, injectable so that tests can drive time."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic clock in seconds, and wall time in nanoseconds."""

    def monotonic(self) -> float: ...

    def wall_ns(self) -> int: ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.perf_counter()

    def wall_ns(self) -> int:
        return time.time_ns()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def wall_ns(self) -> int:
        return int(self.now * 1e9)

    def advance(self, seconds: float) -> None:
        self.now += seconds
