"""The latency model's tail margin (observed / predicted, high quantile) and its use by
admission and the adaptive policy."""

from __future__ import annotations

import asyncio

import pytest

from fleetserve.batching.batcher import Batcher, Rejected
from fleetserve.batching.latency import LatencyModel
from fleetserve.batching.policy import AdaptivePolicy, Limits
from fleetserve.common.clock import FakeClock

from .test_admission import Gate, _hold_executor


def _line(model: LatencyModel, batches: int, slow_every: int = 0, slow: float = 1.0) -> None:
    """Batches of 1..4 rows on t = 1 ms * rows + 1 ms; every `slow_every`-th one `slow` times longer."""
    for i in range(batches):
        rows = 1 + i % 4
        factor = slow if slow_every and i % slow_every == slow_every - 1 else 1.0
        model.observe(rows, (0.001 * rows + 0.001) * factor)


def test_margin_is_one_on_an_exact_line() -> None:
    model = LatencyModel(window=64, warmup=3, margin_every=1)
    _line(model, 64)
    assert model.margin == pytest.approx(1.0)
    assert model.predict_tail(3) == pytest.approx(model.predict(3))


def test_margin_is_the_high_quantile_of_observed_over_predicted() -> None:
    # One batch in ten takes 1.5x the line; the fit moves a little towards them, so the ratio of
    # those slow batches to the prediction is somewhat under 1.5, and the rest a little under 1.
    model = LatencyModel(window=100, warmup=3, quantile=0.95, margin_every=1)
    _line(model, 300, slow_every=10, slow=1.5)
    assert 1.2 < model.margin < 1.5
    predicted = model.predict(2)
    assert predicted is not None
    assert model.predict_tail(2) == pytest.approx(predicted * model.margin)
    # The 50th percentile would ignore the slow tenth.
    median = LatencyModel(window=100, warmup=3, quantile=0.5, margin_every=1)
    _line(median, 300, slow_every=10, slow=1.5)
    assert median.margin < 1.05


def test_margin_is_capped_and_never_below_one() -> None:
    model = LatencyModel(window=32, warmup=3, quantile=0.99, max_margin=2.0, margin_every=1)
    _line(model, 32)
    model.observe(2, 1.0)  # one batch 300 times its prediction (a stall)
    assert model.margin == pytest.approx(2.0)
    fast = LatencyModel(window=32, warmup=3, margin_every=1)
    _line(fast, 32)
    for _ in range(32):
        fast.observe(2, 0.0015)  # faster than the line: ratio < 1
    assert fast.margin >= 1.0


def test_margin_recovers_when_batches_are_fast_again() -> None:
    model = LatencyModel(window=32, warmup=3, margin_every=1)
    _line(model, 64, slow_every=2, slow=1.8)
    assert model.margin > 1.3
    _line(model, 64)  # the window now holds only batches on the line
    assert model.margin < 1.05


def test_adaptive_policy_sizes_batches_with_the_margin() -> None:
    class Item:
        def __init__(self, deadline: float) -> None:
            self.size, self.key, self.enqueued, self.deadline = 1, None, 0.0, deadline
            self.checked = True

    model = LatencyModel(window=32, warmup=3, margin_every=1)
    _line(model, 32)
    queue = [Item(0.0045) for _ in range(4)]  # 3 rows: 4 ms on the line, fits 4.5 ms
    assert AdaptivePolicy().choose(queue, Limits(8), 0.0, model).take == [0, 1, 2]
    model.margin = 1.4  # the tail: 3 rows may take 5.6 ms, 2 rows 4.2 ms
    assert AdaptivePolicy().choose(queue, Limits(8), 0.0, model).take == [0, 1]


async def test_admission_multiplies_its_prediction_by_the_margin() -> None:
    clock = FakeClock()
    gate = Gate()
    b: Batcher[str, str] = Batcher(gate, max_batch_size=8, clock=clock)
    for n in (1, 2, 4, 8):
        b.latency.observe(n, 0.010 * n + 0.010)  # a batch of one: 20 ms
    first = await _hold_executor(b, gate)
    b._executors[0].busy_until = clock.now + 0.010
    b.latency.margin = 1.5  # 10 ms wait + 20 ms compute -> 45 ms in the tail
    with pytest.raises(Rejected) as info:
        await b.submit("tail", deadline=clock.now + 0.040)
    assert info.value.reason == "deadline" and "x1.50" in str(info.value)
    b.latency.margin = 1.0
    admitted = asyncio.create_task(b.submit("fits", deadline=clock.now + 0.040))
    await asyncio.sleep(0)
    gate.open.set()
    assert await first == "r-first"
    assert await admitted == "r-fits"
    await b.close()


def test_handover_is_averaged_apart_from_the_fit() -> None:
    model = LatencyModel(warmup=1, margin_every=1)
    for _ in range(60):
        model.observe(1, 0.010, handover=0.002)
    assert model.handover == pytest.approx(0.002, rel=0.01)
    assert model.predict(1) == pytest.approx(0.010)  # the run alone decides what runs inline
    assert model.margin == pytest.approx(1.0, abs=0.01)
    for _ in range(8):  # the way back runs long: the margin sees it, the fit does not
        model.observe(1, 0.010, handover=0.008)
    assert model.margin > 1.3 and model.predict(1) == pytest.approx(0.010)
    model.observe(1, 0.010, handover=-1.0)  # a clock step never makes it negative
    assert model.handover >= 0.0
