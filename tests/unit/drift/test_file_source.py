"""The file source tails the gateway's file sink: new records only, predictions before
feedback, a frame read once it is whole, new daily files, the start position."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetserve.drift.file_source import FileRecords
from fleetserve.drift.streams import SourceUnavailable
from fleetserve.predlog.file_sink import FileSink
from fleetserve.predlog.framing import frame
from fleetserve.wire import fleet_pb2


def prediction(i: int) -> fleet_pb2.PredictionRecord:
    return fleet_pb2.PredictionRecord(record_id=f"r{i}:0", model="digits", version="1", confidence=0.5)


def feedback(i: int) -> fleet_pb2.FeedbackRecord:
    return fleet_pb2.FeedbackRecord(record_id=f"r{i}:0", label=i % 10)


def ids(records: list[fleet_pb2.PredictionRecord] | list[fleet_pb2.FeedbackRecord]) -> list[str]:
    return [r.record_id for r in records]


async def test_tails_what_the_file_sink_appends(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    await sink.start()
    await sink.write([prediction(0), prediction(1)])
    source = FileRecords(tmp_path, start="$", poll_s=0.01)
    assert len(await source.read()) == 0  # "$": what was there before is skipped
    await sink.write([prediction(2), prediction(3)])
    await sink.write_feedback([feedback(2)])
    batch = await source.read()
    assert ids(batch.predictions) == ["r2:0", "r3:0"] and ids(batch.feedback) == ["r2:0"]
    assert len(await source.read()) == 0
    await sink.write([prediction(4)])
    assert ids((await source.read()).predictions) == ["r4:0"]
    everything = FileRecords(tmp_path, start="0", poll_s=0.01)
    assert ids((await everything.read()).predictions) == [f"r{i}:0" for i in range(5)]
    await sink.close()
    await source.close()


async def test_a_partial_frame_waits_and_a_new_day_file_is_read(tmp_path: Path) -> None:
    day1 = tmp_path / "predictions-20260101.bin"
    whole = frame(prediction(0).SerializeToString())
    torn = frame(prediction(1).SerializeToString())
    day1.write_bytes(whole + torn[:5])
    source = FileRecords(tmp_path, start="0", poll_s=0.01, max_records=100)
    assert ids((await source.read()).predictions) == ["r0:0"]
    with day1.open("ab") as f:
        f.write(torn[5:])
    (tmp_path / "predictions-20260102.bin").write_bytes(frame(prediction(2).SerializeToString()))
    assert ids((await source.read()).predictions) == ["r1:0", "r2:0"]
    assert source.offsets[day1] == len(whole) + len(torn)


async def test_undecodable_payloads_are_counted(tmp_path: Path) -> None:
    (tmp_path / "predictions-20260101.bin").write_bytes(
        frame(b"\xff\xff\xff") + frame(prediction(0).SerializeToString())
    )
    batch = await FileRecords(tmp_path, start="0", poll_s=0.01).read()
    assert batch.undecodable == {"predictions": 1} and ids(batch.predictions) == ["r0:0"]


async def test_batches_are_bounded(tmp_path: Path) -> None:
    (tmp_path / "predictions-20260101.bin").write_bytes(
        b"".join(frame(prediction(i).SerializeToString()) for i in range(25))
    )
    source = FileRecords(tmp_path, start="0", poll_s=0.01, max_records=10)
    sizes = [len((await source.read()).predictions) for _ in range(4)]
    assert sizes == [10, 10, 5, 0]


async def test_a_missing_folder_is_unavailable_and_bad_starts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="is not a folder"):
        await FileRecords(tmp_path / "nowhere").read()
    with pytest.raises(ValueError, match=r"starts at \$"):
        FileRecords(tmp_path, start="1700000000000-0")
