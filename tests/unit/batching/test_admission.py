"""The batcher's scheduling: queue bound, deadline admission and expiry, priority levels,
the fixed window, and the adaptive choice against the latency model (fake clock, fake run)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from fleetserve.batching.batcher import Batcher, Rejected
from fleetserve.batching.policy import FixedWindowPolicy
from fleetserve.common.clock import FakeClock

WAIT = 5.0


class Gate:
    """A fake `run` that blocks while the gate is closed and records its batches."""

    def __init__(self, closed: bool = True) -> None:
        self.calls: list[list[Any]] = []
        self.entered = threading.Event()
        self.open = threading.Event()
        if not closed:
            self.open.set()

    def __call__(self, items: list[Any]) -> list[Any]:
        self.calls.append(list(items))
        self.entered.set()
        assert self.open.wait(WAIT)
        return [f"r-{i}" for i in items]


async def _hold_executor(batcher: Batcher, gate: Gate) -> asyncio.Task:
    task = asyncio.create_task(batcher.submit("first"))
    assert await asyncio.to_thread(gate.entered.wait, WAIT)
    return task


def _seed(batcher: Batcher, per_row: float, fixed: float) -> None:
    for n in (1, 2, 4, 8):
        batcher.latency.observe(n, per_row * n + fixed)


async def _running_20ms_batch() -> tuple[FakeClock, Gate, Batcher[str, str], asyncio.Task]:
    """A batcher whose model predicts 20 ms for a batch of one, its executor busy 10 ms more."""
    clock = FakeClock()
    gate = Gate()
    b: Batcher[str, str] = Batcher(gate, max_batch_size=8, clock=clock)
    _seed(b, per_row=0.010, fixed=0.010)
    first = await _hold_executor(b, gate)
    b._executors[0].busy_until = clock.now + 0.010
    return clock, gate, b, first


async def test_queue_bound_rejects_at_once() -> None:
    gate = Gate()
    b: Batcher[str, str] = Batcher(gate, max_batch_size=8, max_queue_size=2)
    first = await _hold_executor(b, gate)
    queued = [asyncio.create_task(b.submit(f"q{i}")) for i in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Rejected) as info:
        await b.submit("over")
    assert info.value.reason == "queue_full" and "2 requests waiting" in str(info.value)
    gate.open.set()
    assert await first == "r-first"
    assert await asyncio.gather(*queued) == ["r-q0", "r-q1"]
    await b.close()


async def test_deadline_that_cannot_be_met_is_rejected_before_queueing() -> None:
    clock, gate, b, first = await _running_20ms_batch()
    with pytest.raises(Rejected) as info:
        await b.submit("late", deadline=clock.now + 0.025)  # 10 ms wait + 20 ms compute
    assert info.value.reason == "deadline" and "cannot be met" in str(info.value)
    gate.open.set()
    assert await first == "r-first"
    assert ["late"] not in gate.calls  # never computed
    assert await b.submit("ok", deadline=clock.now + 0.030) == "r-ok"
    await b.close()


async def test_an_idle_batcher_takes_a_request_its_model_calls_too_slow() -> None:
    """A latency model that learned slow batches must not refuse everything forever."""
    clock = FakeClock()
    gate = Gate(closed=False)
    b: Batcher[str, str] = Batcher(gate, max_batch_size=8, clock=clock)
    _seed(b, per_row=0.100, fixed=0.100)  # predicts 200 ms for one row
    assert await b.submit("probe", deadline=clock.now + 0.050) == "r-probe"
    assert gate.calls == [["probe"]]
    with pytest.raises(Rejected):
        await b.submit("expired", deadline=clock.now - 0.001)
    await b.close()


async def test_admission_counts_the_work_queued_ahead() -> None:
    clock = FakeClock()
    gate = Gate()
    b: Batcher[str, str] = Batcher(gate, max_batch_size=2, clock=clock)
    _seed(b, per_row=0.010, fixed=0.0)  # 10 ms per row
    first = await _hold_executor(b, gate)
    b._executors[0].busy_until = clock.now + 0.010  # the running batch ends in 10 ms
    ahead = [asyncio.create_task(b.submit(f"a{i}")) for i in range(4)]  # 2 batches of 2: 40 ms
    await asyncio.sleep(0)
    assert b.estimated_wait() == pytest.approx(0.050)
    b.latency.handover = 0.005  # each batch ahead also waits for its hand-over to a thread and back
    assert b.estimated_wait() == pytest.approx(0.060)
    b.latency.handover = 0.0
    with pytest.raises(Rejected):
        await b.submit("tight", deadline=clock.now + 0.055)  # 50 ms wait + 10 ms compute
    gate.open.set()
    await asyncio.gather(first, *ahead)
    await b.close()


async def test_queued_item_past_its_deadline_fails_then() -> None:
    gate = Gate()
    b: Batcher[str, str] = Batcher(gate, max_batch_size=8)
    first = await _hold_executor(b, gate)
    loop_now = b._clock.monotonic()
    late = asyncio.create_task(b.submit("late", deadline=loop_now + 0.05))
    with pytest.raises(Rejected) as info:
        await asyncio.wait_for(late, WAIT)
    assert info.value.reason == "timeout"
    assert b.depth == 0
    gate.open.set()
    assert await first == "r-first"
    assert ["late"] not in gate.calls
    await b.close()


async def test_queued_item_that_can_no_longer_make_it_is_refused_not_computed_late() -> None:
    clock, gate, b, first = await _running_20ms_batch()
    late = asyncio.create_task(b.submit("late", deadline=clock.now + 0.035))  # 10 + 20 ms: admitted
    kept = asyncio.create_task(b.submit("kept", deadline=clock.now + 0.060))
    await asyncio.sleep(0)
    assert b.depth == 2
    clock.advance(0.020)  # the running batch ends 10 ms late: "late" would finish at 40 ms
    gate.open.set()
    with pytest.raises(Rejected) as info:
        await asyncio.wait_for(late, WAIT)
    assert info.value.reason == "timeout" and "cannot be met any more" in str(info.value)
    assert await first == "r-first" and await kept == "r-kept"
    assert gate.calls == [["first"], ["kept"]]  # never computed
    await b.close()


async def test_priority_level_one_is_served_first() -> None:
    gate = Gate()
    b: Batcher[str, str] = Batcher(gate, max_batch_size=1)
    first = await _hold_executor(b, gate)
    low = asyncio.create_task(b.submit("low", priority=2))
    await asyncio.sleep(0)
    high = asyncio.create_task(b.submit("high", priority=1))
    await asyncio.sleep(0)
    gate.open.set()
    await asyncio.gather(first, low, high)
    assert gate.calls == [["first"], ["high"], ["low"]]
    await b.close()


async def test_fixed_window_waits_for_the_window() -> None:
    gate = Gate(closed=False)
    b: Batcher[str, str] = Batcher(gate, max_batch_size=8, policy=FixedWindowPolicy(0.05))
    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(*(b.submit(f"w{i}") for i in range(3)))
    waited = asyncio.get_running_loop().time() - started
    assert results == ["r-w0", "r-w1", "r-w2"]
    assert gate.calls == [["w0", "w1", "w2"]]  # one batch, formed by waiting
    assert waited >= 0.045
    await b.close()


async def test_fixed_window_dispatches_a_full_batch_at_once() -> None:
    gate = Gate(closed=False)
    b: Batcher[str, str] = Batcher(gate, max_batch_size=2, policy=FixedWindowPolicy(5.0))
    results = await asyncio.wait_for(asyncio.gather(b.submit("a"), b.submit("b")), WAIT)
    assert results == ["r-a", "r-b"] and gate.calls == [["a", "b"]]
    await b.close()


async def test_adaptive_batch_shrinks_to_the_oldest_deadline() -> None:
    clock = FakeClock()
    gate = Gate()
    b: Batcher[str, str] = Batcher(gate, max_batch_size=8, clock=clock)
    _seed(b, per_row=0.001, fixed=0.001)
    first = await _hold_executor(b, gate)
    b._executors[0].busy_until = clock.now
    # 3 rows: 4 ms predicted
    tight = asyncio.create_task(b.submit("tight", deadline=clock.now + 0.0045))
    rest = [asyncio.create_task(b.submit(f"r{i}")) for i in range(5)]
    await asyncio.sleep(0)
    gate.open.set()
    await asyncio.gather(first, tight, *rest)
    assert gate.calls[1] == ["tight", "r0", "r1"]
    assert gate.calls[2] == ["r2", "r3", "r4"]
    await b.close()
