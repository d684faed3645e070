"""The monitor loop and the quality analyser's metric families, with a fake record source."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
from prometheus_client import CollectorRegistry

from fleetserve.common.clock import FakeClock
from fleetserve.drift.monitor import Monitor
from fleetserve.drift.quality_monitor import QualityAnalyser
from fleetserve.drift.streams import RecordBatch, SourceUnavailable
from fleetserve.drift.windows import QualityWindows
from fleetserve.wire import fleet_pb2

NS = 1_000_000_000


def prediction(rid: str, cls: int, conf: float, version: str = "1") -> fleet_pb2.PredictionRecord:
    return fleet_pb2.PredictionRecord(
        record_id=rid,
        model="digits",
        version=version,
        route="production",
        time_unix_ns=10 * NS,
        top=[fleet_pb2.ClassScore(index=cls, score=conf), fleet_pb2.ClassScore(index=9, score=0.01)],
        confidence=conf,
    )


def feedback(rid: str, label: int, at_s: int = 12) -> fleet_pb2.FeedbackRecord:
    return fleet_pb2.FeedbackRecord(record_id=rid, label=label, time_unix_ns=at_s * NS)


class FakeSource:
    """Hands out queued batches; raises SourceUnavailable while `down`."""

    def __init__(self, batches: Iterable[RecordBatch]) -> None:
        self.batches = list(batches)
        self.down = False
        self.closed = False

    async def read(self) -> RecordBatch:
        await asyncio.sleep(0)
        if self.down:
            raise SourceUnavailable("cannot read the streams at redis://127.0.0.1:9: refused")
        return self.batches.pop(0) if self.batches else RecordBatch()

    async def close(self) -> None:
        self.closed = True


def rig(*batches: RecordBatch) -> tuple[FakeSource, Monitor, CollectorRegistry]:
    source = FakeSource(batches)
    windows = QualityWindows(label_grace_s=0, clock=FakeClock())
    monitor = Monitor(source, [QualityAnalyser(windows)], refresh_s=1.0)
    registry = CollectorRegistry()
    registry.register(monitor)
    return source, monitor, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_records_become_quality_metrics() -> None:
    batch = RecordBatch(
        predictions=[prediction("a:0", 1, 0.9), prediction("b:0", 2, 0.75), prediction("c:0", 2, 0.6)],
        feedback=[feedback("a:0", 1), feedback("b:0", 1), feedback("zzz:0", 1)],
        undecodable={"feedback": 2},
    )
    _, monitor, registry = rig(batch)
    assert await monitor.read_once()
    monitor.refresh()
    mv = {"model": "digits", "version": "1"}
    assert value(registry, "fleetserve_quality_accuracy", **mv) == 0.5
    assert value(registry, "fleetserve_quality_labelled_ratio", **mv) == pytest.approx(2 / 3)
    assert value(registry, "fleetserve_quality_labelled_items", **mv) == 2
    assert value(registry, "fleetserve_quality_predicted_items", **mv) == 3
    assert value(registry, "fleetserve_quality_precision", **mv, **{"class": "1"}) == 1.0
    assert value(registry, "fleetserve_quality_recall", **mv, **{"class": "1"}) == 0.5
    assert value(registry, "fleetserve_quality_f1", **mv, **{"class": "2"}) == 0.0
    assert value(registry, "fleetserve_quality_confusion", **mv, true="1", predicted="2") == 1
    assert value(registry, "fleetserve_quality_confusion", **mv, true="2", predicted="1") == 0
    # bins (0.8, 0.9]: one right at 0.9 -> 0.1; (0.7, 0.8]: one wrong at 0.75 -> 0.75; mean 0.425
    assert value(registry, "fleetserve_quality_ece", **mv) == pytest.approx(0.425)
    assert value(registry, "fleetserve_quality_label_delay_seconds", **mv, quantile="0.5") == 2.0
    assert value(registry, "fleetserve_quality_label_delay_mean_seconds", **mv) == 2.0
    assert value(registry, "fleetserve_quality_unknown_labels_total") == 1
    assert value(registry, "fleetserve_quality_pending_predictions") == 1
    assert value(registry, "fleetserve_monitor_records_total", stream="predictions") == 3
    assert value(registry, "fleetserve_monitor_undecodable_records_total", stream="feedback") == 2
    assert value(registry, "fleetserve_monitor_stream_up") == 1


async def test_unscored_predictions_are_counted_and_skipped() -> None:
    bare = fleet_pb2.PredictionRecord(record_id="x:0", model="digits", version="1")
    _, monitor, registry = rig(RecordBatch(predictions=[bare]))
    await monitor.read_once()
    monitor.refresh()
    assert value(registry, "fleetserve_quality_unscored_records_total") == 1
    assert value(registry, "fleetserve_quality_predicted_items", model="digits", version="1") is None


async def test_source_down_keeps_the_last_values_and_retries() -> None:
    first = RecordBatch(predictions=[prediction("a:0", 1, 0.9)], feedback=[feedback("a:0", 1)])
    later = RecordBatch(predictions=[prediction("b:0", 1, 0.9)], feedback=[feedback("b:0", 2)])
    source, monitor, registry = rig(first)
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    mv = {"model": "digits", "version": "1"}
    for _ in range(200):
        if value(registry, "fleetserve_quality_accuracy", **mv) is not None:
            break
        await asyncio.sleep(0.01)
    assert value(registry, "fleetserve_quality_accuracy", **mv) == 1.0
    source.down = True
    for _ in range(200):
        if not monitor.up:
            break
        await asyncio.sleep(0.01)
    assert value(registry, "fleetserve_monitor_stream_up") == 0
    assert value(registry, "fleetserve_quality_accuracy", **mv) == 1.0  # still served
    source.batches.append(later)
    source.down = False
    for _ in range(300):
        if value(registry, "fleetserve_quality_accuracy", **mv) == 0.5:
            break
        await asyncio.sleep(0.01)
    assert value(registry, "fleetserve_quality_accuracy", **mv) == 0.5
    assert monitor.failures >= 1
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_failing_analyser_does_not_stop_the_others() -> None:
    class Broken:
        def on_predictions(self, records: object) -> None:
            raise RuntimeError("bug")

        def on_feedback(self, records: object) -> None:
            raise RuntimeError("bug")

        def refresh(self) -> None:
            raise RuntimeError("bug")

        def collect(self) -> list[object]:
            return []

    windows = QualityWindows(label_grace_s=0, clock=FakeClock())
    quality = QualityAnalyser(windows)
    batch = RecordBatch(predictions=[prediction("a:0", 1, 0.9)], feedback=[feedback("a:0", 1)])
    monitor = Monitor(FakeSource([batch]), [Broken(), quality])  # type: ignore[list-item]
    await monitor.read_once()
    monitor.refresh()
    assert monitor.errors == 2
    assert [s.accuracy for s in quality.snapshots] == [1.0]
