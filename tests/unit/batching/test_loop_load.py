"""LoopLoad: the loop's saturation from CPU shares, with hysteresis, on injected clocks."""

from __future__ import annotations

from fleetserve.batching.loop_load import LoopLoad, usable_cores


class Clocks:
    def __init__(self) -> None:
        self.wall = self.thread = self.process = 0.0

    def advance(self, wall: float, thread: float, process: float) -> None:
        self.wall += wall
        self.thread += thread
        self.process += process


def gauge(clocks: Clocks, cores: int = 2) -> LoopLoad:
    """A gauge on `clocks` whose baseline (its first update) is taken now."""
    load = LoopLoad(
        period_s=0.04,  # the steps below are 0.05 s
        wall=lambda: clocks.wall,
        thread_cpu=lambda: clocks.thread,
        process_cpu=lambda: clocks.process,
        cores=cores,
    )
    assert not load.update()
    return load


def test_a_loop_thread_busy_all_the_time_is_saturated_and_leaves_with_hysteresis() -> None:
    clocks = Clocks()
    load = gauge(clocks)
    clocks.advance(0.05, 0.02, 0.03)
    assert not load.update() and abs(load.share - 0.4) < 1e-9
    clocks.advance(0.05, 0.048, 0.05)  # loop thread 96%
    assert load.update()
    clocks.advance(0.05, 0.035, 0.04)  # 70%: above the leave threshold, still saturated
    assert load.update()
    clocks.advance(0.05, 0.025, 0.03)  # 50%
    assert not load.update()


def test_a_process_using_all_its_cores_is_saturated_though_its_loop_thread_is_not() -> None:
    clocks = Clocks()
    load = gauge(clocks, cores=1)
    clocks.advance(0.05, 0.034, 0.05)  # one core: loop 67%, its other threads the rest
    assert load.update()
    two = Clocks()
    load2 = gauge(two, cores=2)
    two.advance(0.05, 0.034, 0.05)  # the same on two cores: half of them idle
    assert not load2.update()


def test_it_is_measured_at_most_once_a_period() -> None:
    clocks = Clocks()
    load = gauge(clocks)
    clocks.advance(0.01, 0.01, 0.01)
    assert not load.update() and load.share == 0.0  # too soon to measure
    clocks.advance(0.04, 0.04, 0.04)
    assert load.update()


def test_usable_cores_is_at_least_one() -> None:
    assert usable_cores() >= 1


def test_the_baseline_is_the_first_update_not_the_construction() -> None:
    # Built on a loader thread whose CPU time is small; read later on the loop thread, whose
    # CPU time since the process started is large: that difference is no load.
    cpu = {"now": 0.001}
    clocks = Clocks()
    load = LoopLoad(
        period_s=0.04,
        wall=lambda: clocks.wall,
        thread_cpu=lambda: cpu["now"],
        process_cpu=lambda: cpu["now"],
        cores=1,
    )
    clocks.wall = 100.0
    cpu["now"] = 30.0  # the loop thread's total
    assert not load.update()  # the baseline
    clocks.wall += 0.05
    cpu["now"] += 0.01
    assert not load.update() and abs(load.share - 0.2) < 1e-9
