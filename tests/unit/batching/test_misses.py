"""Feedback on missed deadlines: the admission factor and how the batcher feeds and uses it
(fake clock, fake run)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from fleetserve.batching.batcher import Batcher, Rejected
from fleetserve.batching.misses import MissFeedback
from fleetserve.common.clock import FakeClock

WAIT = 5.0


def test_factor_rises_on_late_items_and_settles_near_the_target_share() -> None:
    feedback = MissFeedback(target=0.01, step=0.02, max_factor=1.5)
    feedback.finished(True)
    assert feedback.factor == pytest.approx(1.02)
    for _ in range(99):  # 99 on time undo one late item at a 1% target
        feedback.finished(False)
    assert feedback.factor == pytest.approx(1.0)
    for _ in range(10):
        feedback.finished(False)
    assert feedback.factor == 1.0  # never below the latency model's own prediction
    for _ in range(100):
        feedback.finished(True)
    assert feedback.factor == 1.5  # bounded
    # late items at 5% of the traffic (over the 1% target): the factor keeps rising
    feedback = MissFeedback(target=0.01, step=0.02, max_factor=3.0)
    for i in range(2000):
        feedback.finished(i % 20 == 0)
    assert feedback.factor > 2.0
    with pytest.raises(ValueError):
        MissFeedback(target=1.0)


class SlowRun:
    """A fake `run` that advances the fake clock by `seconds` per batch (an executor batch)."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds
        self.lock = threading.Lock()

    def __call__(self, items: list[Any]) -> list[Any]:
        with self.lock:
            self.clock.advance(self.seconds)
        return [f"r-{i}" for i in items]


async def test_late_answers_make_admission_stricter() -> None:
    clock = FakeClock()
    run = SlowRun(clock, 0.030)  # every batch takes 30 ms
    b: Batcher[str, str] = Batcher(run, max_batch_size=1, clock=clock)
    for _ in range(3):
        b.latency.observe(1, 0.010)  # while the model predicts 10 ms: answers come late
    for i in range(5):
        assert await asyncio.wait_for(b.submit(f"i{i}", deadline=clock.now + 0.020), WAIT) == f"r-i{i}"
    assert b.misses.factor == pytest.approx(1.10)
    # a busy executor and a deadline that the raw prediction meets but the stricter one does not
    gate = threading.Event()
    b2: Batcher[str, str] = Batcher(
        lambda items: (gate.wait(WAIT), list(items))[1], max_batch_size=1, clock=clock
    )
    for _ in range(3):
        b2.latency.observe(1, 0.010)
    first = asyncio.create_task(b2.submit("first"))
    await asyncio.sleep(0.01)
    b2._executors[0].busy_until = clock.now + 0.010
    budget = clock.now + 0.021  # 10 ms wait + 10 ms compute fits; x1.1 does not
    b2.misses.factor = 1.1
    with pytest.raises(Rejected) as info:
        await b2.submit("tight", deadline=budget)
    assert "late answers" in str(info.value)
    b2.misses.factor = 1.0
    second = asyncio.create_task(b2.submit("fits", deadline=budget))
    await asyncio.sleep(0.01)
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(first, second), WAIT) == ["first", "fits"]
    await b.close()
    await b2.close()


async def test_inline_batches_leave_the_factor_alone() -> None:
    clock = FakeClock()
    run = SlowRun(clock, 0.030)
    b: Batcher[str, str] = Batcher(run, max_batch_size=1, clock=clock, inline_below_s=0.050)
    for _ in range(3):
        b.latency.observe(1, 0.010)  # predicted under the inline bound: computed on the loop
    for i in range(3):
        await b.submit(f"i{i}", deadline=clock.now + 0.020)
    assert b.misses.factor == 1.0
    await b.close()
