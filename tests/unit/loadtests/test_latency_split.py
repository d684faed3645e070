"""Unit tests of the answer split (loadtests/answer_split.py) and latency_split's report: no server."""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
if str(PROJECT_ROOT) not in sys.path:  # loadtests/ is a folder of the project, not an installed package
    sys.path.insert(0, str(PROJECT_ROOT))

from fleetserve.predlog.framing import frames  # noqa: E402
from fleetserve.wire import fleet_pb2  # noqa: E402
from loadtests.answer_split import logged_times, over_limit, slowest, split  # noqa: E402
from loadtests.latency_split import report  # noqa: E402

MS = 1_000_000  # ns


def test_logged_times_reads_every_prediction_file(tmp_path: Path) -> None:
    def record(rid: str, done_ns: int, seconds: float) -> bytes:
        return fleet_pb2.PredictionRecord(
            request_id=rid, record_id=f"{rid}:0", time_unix_ns=done_ns, latency_seconds=seconds
        ).SerializeToString()

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "predictions-20261201.bin").write_bytes(frames([record("r1", 5, 0.25)]))
    (tmp_path / "predictions-20261202.bin").write_bytes(frames([record("r2", 7, 0.5)]))
    (tmp_path / "feedback-20261201.bin").write_bytes(frames([record("x", 1, 1.0)]))
    assert logged_times(tmp_path) == {"r1": (5, 0.25), "r2": (7, 0.5)}


def test_split_puts_each_part_where_it_went() -> None:
    traced = [
        ("slow-in", 0, 41 * MS, True),  # called at 0, data plane from 30 to 40 ms, answer at 41 ms
        ("refused", 0, 2 * MS, False),
        ("not-logged", 0, 5 * MS, True),
    ]
    logged = {"slow-in": (40 * MS, 0.010), "refused": (1 * MS, 0.001)}
    (row,) = split(traced, logged)
    assert row["id"] == "slow-in"
    assert round(row["total"], 6) == 41.0
    assert round(row["before"], 6) == 30.0
    assert round(row["server"], 6) == 10.0
    assert round(row["after"], 6) == 1.0


def test_report_counts_answers_late_before_the_data_plane() -> None:
    rows = [
        {"id": "a", "at_s": 1.0, "total": 150.0, "before": 110.0, "server": 39.0, "after": 1.0},
        {"id": "b", "at_s": 2.0, "total": 120.0, "before": 1.0, "server": 118.0, "after": 1.0},
        {"id": "c", "at_s": 3.0, "total": 50.0, "before": 1.0, "server": 48.0, "after": 1.0},
    ]
    lines = report(rows, {"ok": 3, "rejected": 1}, slo_ms=100.0)
    assert lines[0] == "3 answers joined with the prediction log; 4 sent: 3 ok, 1 rejected"
    assert "over the 100 ms SLO: 2; of them within it in the data plane: 1" in "\n".join(lines)
    slowest = lines[lines.index("    total   before   server    after       at") + 1]
    assert slowest.split() == ["150.0", "110.0", "39.0", "1.0", "0.0"]
    assert report([], {"rejected": 2}, slo_ms=100.0) == [
        "0 answers joined with the prediction log; 2 sent: 2 rejected"
    ]


def test_slowest_first() -> None:
    rows = [{"total": t} for t in (3.0, 9.0, 1.0, 7.0)]
    assert [r["total"] for r in slowest(rows, 2)] == [9.0, 7.0]
    assert slowest([], 3) == []


def test_over_limit_counts_the_late_and_those_late_outside_the_data_plane() -> None:
    rows = [
        {"total": 90.0, "server": 85.0},  # within the limit
        {"total": 160.0, "server": 40.0},  # late before or after the data plane
        {"total": 170.0, "server": 155.0},  # late in the data plane
        {"total": 150.0, "server": 150.0},  # exactly at the limit: not over
    ]
    assert over_limit(rows, 150.0) == (2, 1)
