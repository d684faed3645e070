"""LoopLoad: the loop's saturation from its runnable share, with hysteresis, on injected clocks."""

from __future__ import annotations

import threading
import time

from fleetserve.batching.loop_load import LoopLoad, runnable_seconds


class Clocks:
    def __init__(self) -> None:
        self.wall = self.busy = 0.0

    def advance(self, wall: float, busy: float) -> None:
        self.wall += wall
        self.busy += busy


def gauge(clocks: Clocks) -> LoopLoad:
    """A gauge on `clocks` whose baseline (its first update) is taken now."""
    # steps of 0.05 s; min_rate 0: only the share decides here
    load = LoopLoad(period_s=0.04, min_rate=0.0, wall=lambda: clocks.wall, busy=lambda: clocks.busy)
    assert not load.update()
    return load


def test_a_loop_thread_runnable_all_the_time_is_saturated_and_leaves_with_hysteresis() -> None:
    clocks = Clocks()
    load = gauge(clocks)
    clocks.advance(0.05, 0.02)
    assert not load.update() and abs(load.share - 0.4) < 1e-9
    clocks.advance(0.05, 0.048)  # 96%
    assert load.update()
    clocks.advance(0.05, 0.035)  # 70%: above the leave threshold, still saturated
    assert load.update()
    clocks.advance(0.05, 0.025)  # 50%
    assert not load.update()


def test_it_is_measured_at_most_once_a_period() -> None:
    clocks = Clocks()
    load = gauge(clocks)
    clocks.advance(0.01, 0.01)
    assert not load.update() and load.share == 0.0  # too soon to measure
    clocks.advance(0.04, 0.04)
    assert load.update()


def test_the_baseline_is_the_first_update_not_the_construction() -> None:
    # Built on a loader thread whose figure is small; read later on the loop thread, whose
    # figure since the process started is large: that difference is no load.
    clocks = Clocks()
    clocks.busy = 0.001
    load = LoopLoad(period_s=0.04, wall=lambda: clocks.wall, busy=lambda: clocks.busy)
    clocks.wall, clocks.busy = 100.0, 30.0
    assert not load.update()  # the baseline
    clocks.advance(0.05, 0.01)
    assert not load.update() and abs(load.share - 0.2) < 1e-9


def test_runnable_seconds_grow_with_work_and_not_with_sleep() -> None:
    found: dict[str, float] = {}

    def measure() -> None:
        start = runnable_seconds()
        time.sleep(0.2)
        found["slept"] = runnable_seconds() - start
        start, until = runnable_seconds(), time.perf_counter() + 0.2
        while time.perf_counter() < until:
            pass
        found["worked"] = runnable_seconds() - start

    thread = threading.Thread(target=measure)
    thread.start()
    thread.join()
    assert found["slept"] < 0.05
    assert found["worked"] > 0.15


def test_a_saturated_loop_with_few_arrivals_is_not_worth_coalescing() -> None:
    clocks = Clocks()
    load = LoopLoad(period_s=0.04, min_rate=400.0, wall=lambda: clocks.wall, busy=lambda: clocks.busy)
    assert not load.update()
    for _ in range(2):  # 40 a second: a busy machine, little traffic
        load.arrived()
    clocks.advance(0.05, 0.05)
    assert not load.update() and load.share == 1.0 and abs(load.rate - 40.0) < 1e-9
    for _ in range(30):  # 600 a second
        load.arrived()
    clocks.advance(0.05, 0.05)
    assert load.update()
