"""The prediction log on a real redis-server: stream content, the index, feedback, and an outage.

Redis runs with its append-only file (as `fleetserve up` starts it), so records written before
a restart are still there after it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from fleetserve.predlog.log import PredictionLog, prediction_log
from fleetserve.predlog.metrics import PredlogMetrics
from fleetserve.predlog.records import to_records
from fleetserve.predlog.redis_sink import FEEDBACK_STREAM, PREDICTIONS_STREAM, RedisStreamSink
from fleetserve.predlog.settings import LogSettings
from fleetserve.predlog.sink import PredlogUnavailable
from fleetserve.wire import fleet_pb2
from tests.support.predlog import log_entry
from tests.support.redis_server import RedisServer, redis_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis") as s:
        yield s


async def stream(url: str, name: str) -> list[bytes]:
    client = aioredis.Redis.from_url(url)
    try:
        return [fields[b"record"] for _, fields in await client.xrange(name)]
    finally:
        await client.aclose()


async def until(condition, within: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within} s")
        await asyncio.sleep(0.01)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_entries_become_records_on_the_stream_and_the_index(
    server: RedisServer, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    log = prediction_log(server.url, tmp_path / "data", registry, LogSettings(ttl_s=3600))
    entries = [log_entry(f"req{i}", items=1 + i % 4, version=str(1 + i % 2)) for i in range(30)]
    await log.start()
    try:
        for e in entries:
            log.submit(e)
        found = await log.lookup([e.request_id for e in entries] + ["unknown"])
    finally:
        await log.stop()
    expected = [r for e in entries for r in to_records(e)]
    got = [fleet_pb2.PredictionRecord.FromString(b) for b in await stream(server.url, PREDICTIONS_STREAM)]
    assert got == expected  # the same profiles, top-k, ids, routing fields, in order
    assert value(registry, "fleetserve_predlog_records_total", sink="redis") == len(expected)
    assert sorted(found) == sorted(e.request_id for e in entries)
    e = entries[7]
    logged = found[e.request_id]
    assert (logged.model, logged.version, logged.route, logged.items, logged.time_ns, logged.labels) == (
        "digits", e.version, "production", 4, e.time_ns, {},
    )  # fmt: skip
    client = aioredis.Redis.from_url(server.url)
    try:
        assert 3500 < await client.ttl(f"fleetserve:prediction:{e.request_id}") <= 3600
    finally:
        await client.aclose()


async def test_feedback_goes_to_its_stream_and_labels_the_index(server: RedisServer, tmp_path: Path) -> None:
    log = prediction_log(server.url, tmp_path / "data", CollectorRegistry())
    await log.start()
    try:
        log.submit(log_entry("a", items=3))
        assert (await log.lookup(["a"]))["a"].labels == {}
        first = fleet_pb2.FeedbackRecord(
            record_id="a:1", request_id="a", item_index=1, label=5, time_unix_ns=1
        )
        await log.record_feedback([first])
        assert (await log.lookup(["a"]))["a"].labels == {1: 5}
        again = fleet_pb2.FeedbackRecord(
            record_id="a:1", request_id="a", item_index=1, label=2, time_unix_ns=2, replaced=True
        )
        other = fleet_pb2.FeedbackRecord(
            record_id="a:0", request_id="a", item_index=0, label=9, time_unix_ns=2
        )
        await log.record_feedback([again, other])
        assert (await log.lookup(["a"]))["a"].labels == {0: 9, 1: 2}
    finally:
        await log.stop()
    got = [fleet_pb2.FeedbackRecord.FromString(b) for b in await stream(server.url, FEEDBACK_STREAM)]
    assert got == [first, again, other]
    client = aioredis.Redis.from_url(server.url)
    try:
        assert await client.ttl("fleetserve:labels:a") > 6 * 24 * 3600
    finally:
        await client.aclose()


async def test_an_outage_spills_then_replays_in_order_losing_nothing(
    server: RedisServer, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    metrics = PredlogMetrics(registry)
    sink = RedisStreamSink(server.url, tmp_path / "spill", metrics, chunk_records=50, max_backoff_s=0.2)
    log = PredictionLog(sink, metrics, batch_entries=20, idle_retry_s=0.05)
    ids = [f"r{i:04d}" for i in range(600)]
    await log.start()
    try:
        for rid in ids[:200]:
            log.submit(log_entry(rid, items=2))
        await log.lookup([])  # written
        server.stop()
        with pytest.raises(PredlogUnavailable):
            await log.lookup(["r0001"])
        for rid in ids[200:500]:
            log.submit(log_entry(rid, items=2))
            await asyncio.sleep(0)
        await until(lambda: log.waiting() == 600, within=10)  # 300 requests x 2 items, all spilled
        assert value(registry, "fleetserve_predlog_records_total", sink="spill") == 600
        assert (tmp_path / "spill" / "predictions.bin").exists()
        server.start()  # same port; the append-only file brings the first 400 records back
        for rid in ids[500:]:
            log.submit(log_entry(rid, items=2))
        await until(lambda: log.waiting() == 0, within=15)
        found = await log.lookup(ids)
    finally:
        await log.stop()
    got = [
        fleet_pb2.PredictionRecord.FromString(b).record_id
        for b in await stream(server.url, PREDICTIONS_STREAM)
    ]
    expected = [f"{rid}:{i}" for rid in ids for i in range(2)]
    assert list(dict.fromkeys(got)) == expected  # every record, in the order submitted
    assert len(got) - len(expected) <= 40  # at most a batch in flight at the stop sent twice
    assert value(registry, "fleetserve_predlog_dropped_total", sink="redis") == 0
    assert sorted(found) == ids  # the spilled requests are indexed on replay
    assert not (tmp_path / "spill" / "predictions.bin").exists()


async def test_a_spill_left_by_an_earlier_process_is_replayed(server: RedisServer, tmp_path: Path) -> None:
    down = RedisStreamSink("redis://127.0.0.1:1/0", tmp_path / "spill")  # nothing listens on port 1
    await down.start()
    records = to_records(log_entry("old", items=3))
    await down.write(records)
    await down.write_feedback([fleet_pb2.FeedbackRecord(record_id="old:0", request_id="old", label=3)])
    assert down.waiting() == 4
    await down.close()
    up = RedisStreamSink(server.url, tmp_path / "spill")
    await up.start()
    assert up.waiting() == 4
    await up.retry()
    assert up.waiting() == 0
    assert (await up.lookup(["old"]))["old"].labels == {0: 3}
    await up.close()
    assert [
        fleet_pb2.PredictionRecord.FromString(b) for b in await stream(server.url, PREDICTIONS_STREAM)
    ] == records


async def test_a_full_spill_drops_and_counts(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    sink = RedisStreamSink(
        "redis://127.0.0.1:1/0", tmp_path / "spill", PredlogMetrics(registry), spill_max_bytes=2000
    )
    await sink.start()
    for i in range(20):
        await sink.write(to_records(log_entry(f"r{i}")))
    await sink.close()
    spilled = value(registry, "fleetserve_predlog_records_total", sink="spill")
    dropped = value(registry, "fleetserve_predlog_dropped_total", sink="redis")
    assert spilled > 0 and dropped > 0 and spilled + dropped == 20
