"""The file sink and its reader: framed records written, read back; the memory index."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from fleetserve.predlog.file_sink import FileSink, file_name
from fleetserve.predlog.index import MemoryIndex, requests_of
from fleetserve.predlog.log import prediction_log
from fleetserve.predlog.metrics import PredlogMetrics
from fleetserve.predlog.read import read_feedback, read_predictions
from fleetserve.predlog.records import to_records
from fleetserve.wire import fleet_pb2
from tests.support.predlog import log_entry


async def test_records_round_trip_through_the_daily_files(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    sink = FileSink(tmp_path, PredlogMetrics(registry))
    await sink.start()
    written = [r for i in range(20) for r in to_records(log_entry(f"r{i}", items=2), tensor_sample_rate=0.5)]
    await sink.write(written[:10])
    await sink.write(written[10:])
    feedback = [fleet_pb2.FeedbackRecord(record_id="r3:1", request_id="r3", item_index=1, label=4)]
    await sink.write_feedback(feedback)
    # flushed per batch: readable before close
    assert list(read_predictions(tmp_path)) == written
    await sink.close()
    assert list(read_predictions(tmp_path / file_name("predictions", time.time()))) == written
    assert list(read_feedback(tmp_path)) == feedback
    assert registry.get_sample_value("fleetserve_predlog_records_total", {"sink": "file"}) == 41


async def test_a_torn_last_record_is_where_the_file_ends(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    records = to_records(log_entry("r", items=3))
    await sink.write(records)
    await sink.close()
    (path,) = list(tmp_path.glob("predictions-*.bin"))  # noqa: ASYNC240 - a test's tmp folder
    data = path.read_bytes()
    path.write_bytes(data[:-5])
    assert list(read_predictions(tmp_path)) == records[:2]
    path.write_bytes(data[:-5] + b"\xff" * 5)  # garbage in place of the payload's end: CRC fails
    assert list(read_predictions(tmp_path)) == records[:2]


async def test_the_memory_index_knows_requests_and_their_labels(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    await sink.write(to_records(log_entry("a", items=4, model="m", version="3")))
    await sink.write_feedback(
        [
            fleet_pb2.FeedbackRecord(record_id="a:1", request_id="a", item_index=1, label=9),
            fleet_pb2.FeedbackRecord(record_id="z:0", request_id="z", item_index=0, label=1),  # unknown
        ]
    )
    found = await sink.lookup(["a", "z"])
    assert list(found) == ["a"]
    assert (found["a"].model, found["a"].version, found["a"].items, found["a"].labels) == (
        "m",
        "3",
        4,
        {1: 9},
    )
    await sink.close()


def test_the_memory_index_forgets_the_oldest_beyond_its_capacity() -> None:
    index = MemoryIndex(capacity=3)
    for i in range(5):
        index.add(requests_of(to_records(log_entry(f"r{i}"))))
    assert sorted(index.lookup([f"r{i}" for i in range(5)])) == ["r2", "r3", "r4"]
    assert len(index) == 3


async def test_without_redis_the_factory_logs_to_files(tmp_path: Path) -> None:
    log = prediction_log(None, tmp_path, CollectorRegistry())
    await log.start()
    log.submit(log_entry("x", items=2))
    assert set(await log.lookup(["x"])) == {"x"}
    await log.stop()
    await asyncio.sleep(0)
    assert [r.record_id for r in read_predictions(tmp_path)] == ["x:0", "x:1"]
