"""The spill file: append, replay in order by request, resume after a restart, the cap."""

from __future__ import annotations

from pathlib import Path

from fleetserve.predlog.records import to_records
from fleetserve.predlog.spill import SpillFile
from fleetserve.wire import fleet_pb2
from tests.support.predlog import log_entry

Record = fleet_pb2.PredictionRecord


def key(r: Record) -> str:
    return r.request_id


def test_replay_reads_in_order_without_splitting_a_request(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "predictions.bin")
    spill.open()
    records = [r for i in range(6) for r in to_records(log_entry(f"r{i}", items=3))]
    assert spill.append([r.SerializeToString() for r in records[:9]])
    assert spill.append([r.SerializeToString() for r in records[9:]])
    assert spill.count == 18
    got: list[Record] = []
    while not spill.empty():
        batch, end = spill.read_batch(4, Record.FromString, key)
        assert len(batch) == 6  # 4 asked, and the second request is kept whole
        got.extend(batch)
        spill.commit(end, len(batch))
    assert got == records
    assert not spill.path.exists() and not spill.offset_path.exists()


def test_a_new_process_resumes_at_the_committed_offset(tmp_path: Path) -> None:
    path = tmp_path / "predictions.bin"
    first = SpillFile(path)
    first.open()
    records = [r for i in range(4) for r in to_records(log_entry(f"r{i}"))]
    first.append([r.SerializeToString() for r in records])
    batch, end = first.read_batch(2, Record.FromString, key)
    first.commit(end, len(batch))
    first.close()
    with path.open("ab") as f:
        f.write(b"\x05\x00")  # a torn frame, as a crash mid-append leaves
    second = SpillFile(path)
    second.open()
    assert second.count == 2
    rest, _ = second.read_batch(10, Record.FromString, key)
    assert rest == records[2:]
    assert second.append([records[0].SerializeToString()])  # appends follow whole frames
    assert second.read_batch(10, Record.FromString, key)[0] == [*records[2:], records[0]]
    second.close()


def test_the_cap_refuses_appends(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "p.bin", max_bytes=2000)
    spill.open()
    payload = to_records(log_entry("r"))[0].SerializeToString()
    accepted = 0
    while spill.append([payload]):
        accepted += 1
    assert accepted == 2000 // (len(payload) + 8)
    assert spill.size <= 2000
    spill.close()
