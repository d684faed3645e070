"""The writer sidecar against a real redis-server, run as `fleetserve predlog` in a subprocess:
the Parquet layout, labels joined, and SIGKILLs and a Redis restart losing and doubling nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import redis

from fleetserve.predlog.join import labelled_predictions, read_predictions
from fleetserve.predlog.parquet import utc_date
from fleetserve.predlog.records import to_records
from fleetserve.predlog.redis_sink import FEEDBACK_STREAM, PREDICTIONS_STREAM
from fleetserve.predlog.writer import GROUP
from fleetserve.wire import fleet_pb2
from tests.support.ports import free_ports
from tests.support.predlog import log_entry
from tests.support.redis_server import RedisServer, redis_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis") as s:
        yield s


class WriterProcess:
    """`fleetserve predlog` as a subprocess, stopped by its pid."""

    def __init__(self, url: str, out: Path, log: Path, **env: str) -> None:
        self.url, self.out, self.log, self.env = url, out, log, env
        self.port = free_ports(1)[0]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "services"), **self.env}
        args = [sys.executable, "-m", "fleetserve.cli", "predlog", "--out", str(self.out)]
        args += ["--redis-url", self.url, "--metrics-port", str(self.port), "--log-level", "warning"]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def terminate(self) -> int:
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        proc.terminate()
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            return r.read().decode()


@pytest.fixture
def writer_factory(tmp_path: Path) -> Iterator[Callable[..., WriterProcess]]:
    made: list[WriterProcess] = []

    def make(url: str, **env: str) -> WriterProcess:
        w = WriterProcess(url, tmp_path / "out", tmp_path / "writer.log", **env)
        made.append(w)
        return w

    yield make
    for w in made:
        if w.proc is not None:
            w.kill()


def xadd(url: str, stream: str, records: list, chunk: int = 2000) -> None:  # type: ignore[type-arg]
    client = redis.Redis.from_url(url)
    try:
        for i in range(0, len(records), chunk):
            pipe = client.pipeline(transaction=False)
            for r in records[i : i + chunk]:
                pipe.xadd(stream, {"record": r.SerializeToString()})
            pipe.execute()
    finally:
        client.close()


def drained(url: str) -> bool:
    """Whether the group has every entry of both streams delivered and acknowledged."""
    client = redis.Redis.from_url(url)
    try:
        for stream in (PREDICTIONS_STREAM, FEEDBACK_STREAM):
            groups = {g["name"].decode(): g for g in client.xinfo_groups(stream)}
            g = groups.get(GROUP)
            # `lag` is unknown (None) after a Redis restart: compare the last delivered id with
            # the stream's last id instead
            last = client.xinfo_stream(stream)["last-generated-id"]
            if g is None or g["pending"] or g["last-delivered-id"] != last:
                return False
        return True
    except redis.RedisError:
        return False
    finally:
        client.close()


def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within} s")
        time.sleep(0.05)


def feedback(record_id: str, label: int, time_ns: int, replaced: bool = False) -> fleet_pb2.FeedbackRecord:
    rid, item = record_id.split(":")
    return fleet_pb2.FeedbackRecord(
        schema_version=1, record_id=record_id, request_id=rid, item_index=int(item), label=label,
        time_unix_ns=time_ns, replaced=replaced, model="digits", version="1",
    )  # fmt: skip


def test_records_and_feedback_land_in_partitioned_parquet_with_labels_joined(
    server: RedisServer, writer_factory: Callable[..., WriterProcess], tmp_path: Path
) -> None:
    predictions = [
        r for i in range(40) for r in to_records(log_entry(f"q{i}", items=2, version=str(1 + i % 2)))
    ]
    xadd(server.url, PREDICTIONS_STREAM, predictions)
    t = predictions[0].time_unix_ns
    xadd(
        server.url,
        FEEDBACK_STREAM,
        [feedback("q0:0", 3, t + 1000), feedback("q1:1", 4, t + 2000), feedback("q0:0", 7, t + 3000, True)],
    )
    writer = writer_factory(server.url, FLEETSERVE_FLUSH_S="0.2")
    writer.start()
    wait_for(lambda: drained(server.url), 20, "the writer drains both streams")
    text = writer.metrics()
    assert 'fleetserve_predlog_records_total{sink="parquet"} 83.0' in text
    assert "fleetserve_predlog_lag_records 0.0" in text
    assert writer.terminate() == 0  # SIGTERM: a clean stop
    out = tmp_path / "out"
    date = utc_date(t)
    for version in ("1", "2"):
        (part,) = (out / "predictions" / "model=digits" / f"version={version}" / f"date={date}").glob(
            "part-*.parquet"
        )
        assert not part.name.startswith(".")
        assert pq.read_table(part).column("version").to_pylist() == [version] * 40
    assert len(list((out / "feedback" / f"date={date}").glob("part-*.parquet"))) == 1
    assert not list(out.rglob(".*.tmp"))
    assert read_predictions(out).num_rows == 80
    labelled = {r["record_id"]: r for r in labelled_predictions(out).to_pylist()}
    assert sorted(labelled) == ["q0:0", "q1:1"]
    assert (labelled["q0:0"]["label"], labelled["q0:0"]["label_replaced"]) == (7, True)  # the latest
    assert (labelled["q1:1"]["label"], labelled["q1:1"]["version"]) == (4, "2")
    assert labelled["q1:1"]["route"] == "production"


def test_killed_and_restarted_and_redis_restarted_every_record_is_written_once(
    server: RedisServer, writer_factory: Callable[..., WriterProcess], tmp_path: Path
) -> None:
    records = [r for i in range(6000) for r in to_records(log_entry(f"k{i:05d}", items=4))]  # 24,000
    xadd(server.url, PREDICTIONS_STREAM, records)
    xadd(server.url, PREDICTIONS_STREAM, records[100:150])  # sent twice, as a replayed spill may
    labels = [feedback(r.record_id, 1, r.time_unix_ns + 1000) for r in records[::97]]
    xadd(server.url, FEEDBACK_STREAM, labels)
    out = tmp_path / "out"
    writer = writer_factory(server.url, FLEETSERVE_BATCH_RECORDS="1500", FLEETSERVE_FLUSH_S="0.2")
    rng = random.Random(0)

    def files() -> int:
        return len(list(out.rglob("part-*.parquet")))

    for kills in range(1, 4):
        writer.start()
        before = files()
        wait_for(lambda: files() > before, 20, "the writer makes progress")  # noqa: B023
        time.sleep(rng.uniform(0.0, 0.3))
        writer.kill()
        if kills == 2:
            server.stop()  # SIGTERM; the append-only file keeps streams, group and pending entries
            server.start()
    assert files() < 24_000 // 1500  # killed with a backlog left
    writer.start()
    server.stop()  # and once under a running writer
    time.sleep(0.5)
    server.start()
    wait_for(lambda: drained(server.url), 40, "the writer drains the backlog")
    assert writer.terminate() == 0
    ids = read_predictions(out).column("record_id").to_pylist()  # read_predictions dedupes: count raw rows
    raw = sum(pq.read_metadata(p).num_rows for p in (out / "predictions").rglob("part-*.parquet"))
    assert raw == len(records) == len(set(ids))
    assert set(ids) == {r.record_id for r in records}
    fb_rows = sum(pq.read_metadata(p).num_rows for p in (out / "feedback").rglob("part-*.parquet"))
    assert fb_rows == len(labels)
    assert labelled_predictions(out).num_rows == len(labels)


def test_entries_a_dead_consumer_left_pending_are_taken_over(
    server: RedisServer, writer_factory: Callable[..., WriterProcess], tmp_path: Path
) -> None:
    records = to_records(log_entry("dead", items=100))
    xadd(server.url, PREDICTIONS_STREAM, records)
    client = redis.Redis.from_url(server.url)
    try:
        client.xgroup_create(PREDICTIONS_STREAM, GROUP, id="0")
        delivered = client.xreadgroup(GROUP, "another-writer", {PREDICTIONS_STREAM: ">"}, count=1000)
        assert len(delivered[0][1]) == 100  # pending for a consumer that will never come back
    finally:
        client.close()
    writer = writer_factory(server.url, FLEETSERVE_CLAIM_IDLE_S="0.5", FLEETSERVE_FLUSH_S="0.2")
    writer.start()
    wait_for(lambda: drained(server.url), 20, "the writer takes the entries over")
    assert writer.terminate() == 0
    assert sorted(read_predictions(tmp_path / "out").column("record_id").to_pylist()) == sorted(
        r.record_id for r in records
    )
