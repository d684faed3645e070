"""The prediction log: bounded buffer, sampling, the background task, lookup and feedback."""

from __future__ import annotations

import asyncio
import random

import numpy as np
from prometheus_client import CollectorRegistry

from fleetserve.predlog.log import PredictionLog
from fleetserve.predlog.metrics import PredlogMetrics
from fleetserve.wire import fleet_pb2
from tests.support.predlog import MemorySink, log_entry


def make_log(**kw: object) -> tuple[PredictionLog, MemorySink, CollectorRegistry]:
    registry = CollectorRegistry()
    sink = MemorySink()
    return PredictionLog(sink, PredlogMetrics(registry), **kw), sink, registry  # type: ignore[arg-type]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_a_full_buffer_drops_and_counts_the_items_and_never_raises() -> None:
    log, sink, registry = make_log(capacity=3)
    for i in range(5):
        log.submit(log_entry(f"r{i}", items=2))
    assert log.waiting() == 3
    assert value(registry, "fleetserve_predlog_dropped_total", sink="memory") == 4  # 2 entries x 2 items
    assert value(registry, "fleetserve_predlog_lag_records") == 3
    log.submit(None)  # type: ignore[arg-type]  # nonsense is logged, not raised
    await log.start()
    await log.stop()
    assert [r.request_id for r in sink.records] == ["r0", "r0", "r1", "r1", "r2", "r2"]
    assert sink.closed


async def test_entries_become_records_in_order_in_batches() -> None:
    log, sink, registry = make_log(batch_entries=16)
    await log.start()
    for i in range(100):
        log.submit(log_entry(f"r{i:03d}", items=1 + i % 3))
        if i % 10 == 0:
            await asyncio.sleep(0)
    await log.stop()
    assert [r.request_id for r in sink.records] == [f"r{i:03d}" for i in range(100) for _ in range(1 + i % 3)]
    assert sink.batches < 100
    assert value(registry, "fleetserve_predlog_dropped_total", sink="memory") == 0


async def test_sample_rate_logs_that_share_of_requests() -> None:
    log, _sink, _ = make_log(sample_rate=0.3, capacity=100_000, rng=random.Random(7))
    for i in range(5000):
        log.submit(log_entry(f"r{i}"))
    assert 1350 <= log.waiting() <= 1650
    none, _, _ = make_log(sample_rate=0.0)
    none.submit(log_entry("x"))
    assert none.waiting() == 0


async def test_tensor_sample_rate_is_the_share_of_records_with_tensors() -> None:
    log, sink, _ = make_log(tensor_sample_rate=0.2, rng=random.Random(1))
    await log.start()
    for i in range(500):
        log.submit(log_entry(f"r{i}", items=2))
    await log.stop()
    share = sum(1 for r in sink.records if r.sample) / len(sink.records)
    assert 0.15 <= share <= 0.25
    default, sink2, _ = make_log()
    await default.start()
    default.submit(log_entry("y"))
    await default.stop()
    assert not sink2.records[0].sample


async def test_a_bad_entry_is_dropped_and_counted_and_the_log_goes_on() -> None:
    log, sink, registry = make_log()
    await log.start()
    bad = log_entry("bad", items=3)
    bad.outputs = {"probabilities": bad.outputs["probabilities"][:2]}  # 2 items...
    bad.inputs = {"image": np.zeros((3, 7), np.float32)}  # ...but 3 input rows that do not split in 2
    log.submit(bad)
    log.submit(log_entry("good"))
    await log.stop()
    assert [r.request_id for r in sink.records] == ["good"]
    assert value(registry, "fleetserve_predlog_dropped_total", sink="memory") == 2


async def test_lookup_waits_for_what_was_submitted_and_sees_feedback() -> None:
    log, sink, _ = make_log()
    await log.start()
    try:
        log.submit(log_entry("a", items=3))
        found = await log.lookup(["a", "nope"])
        assert set(found) == {"a"}
        a = found["a"]
        assert (a.model, a.version, a.route, a.items, a.labels) == ("digits", "1", "production", 3, {})
        fb = fleet_pb2.FeedbackRecord(record_id="a:2", request_id="a", item_index=2, label=7)
        await log.record_feedback([fb])
        assert sink.feedback == [fb]
        assert (await log.lookup(["a"]))["a"].labels == {2: 7}
    finally:
        await log.stop()


async def test_entries_that_trickle_in_within_the_linger_make_one_batch() -> None:
    log, sink, _ = make_log(linger_s=0.5)
    await log.start()
    try:
        for i in range(5):
            log.submit(log_entry(f"t{i}"))
            await asyncio.sleep(0.01)
        assert sink.records == []  # still lingering for more
        for _ in range(200):
            if sink.records:
                break
            await asyncio.sleep(0.01)
        assert [r.request_id for r in sink.records] == [f"t{i}" for i in range(5)]
        assert sink.batches == 1
    finally:
        await log.stop()


async def test_a_full_batch_or_a_waiting_lookup_ends_the_linger() -> None:
    log, sink, _ = make_log(linger_s=30.0, batch_entries=4)
    await log.start()
    try:
        for i in range(4):
            log.submit(log_entry(f"f{i}"))
        for _ in range(200):
            if sink.records:
                break
            await asyncio.sleep(0.01)
        assert [r.request_id for r in sink.records] == ["f0", "f1", "f2", "f3"]
        log.submit(log_entry("alone"))
        await asyncio.sleep(0.05)  # the log lingers: one entry of a batch of 4
        assert len(sink.records) == 4
        # a lookup needs what is buffered: it does not wait out the 30 s linger
        assert set(await log.lookup(["alone"], wait_s=5.0)) == {"alone"}
    finally:
        await log.stop()


async def test_the_sink_is_retried_while_idle() -> None:
    log, sink, _ = make_log(idle_retry_s=0.01)
    await log.start()
    await asyncio.sleep(0.1)
    await log.stop()
    assert sink.retries >= 3


async def test_after_stop_entries_are_dropped_and_counted() -> None:
    log, _sink, registry = make_log()
    await log.start()
    await log.stop()
    log.submit(log_entry("late", items=2))
    assert value(registry, "fleetserve_predlog_dropped_total", sink="memory") == 2
