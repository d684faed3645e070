"""The writer's Parquet store and the join, without Redis: layout, no duplicates, latest labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from fleetserve.predlog.join import labelled_predictions, read_predictions
from fleetserve.predlog.parquet import utc_date
from fleetserve.predlog.records import to_records
from fleetserve.predlog.store import ParquetStore
from fleetserve.protocol.tensors import from_raw
from fleetserve.wire import fleet_pb2
from tests.support.predlog import log_entry

DAY = 1_700_000_000_000_000_000  # 2023-11-14 UTC


def entries(records: list, start_ms: int = 1000) -> list[tuple[str, bytes | None]]:  # type: ignore[type-arg]
    return [(f"{start_ms + i}-0", r.SerializeToString()) for i, r in enumerate(records)]


def feedback(record_id: str, label: int, time_ns: int, replaced: bool = False) -> fleet_pb2.FeedbackRecord:
    rid, item = record_id.split(":")
    return fleet_pb2.FeedbackRecord(
        schema_version=1, record_id=record_id, request_id=rid, item_index=int(item), label=label,
        time_unix_ns=time_ns, replaced=replaced, model="digits", version="1",
    )  # fmt: skip


def test_partitions_by_model_version_and_date_named_by_the_first_stream_id(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    a = to_records(log_entry("a", items=2, version="1"), tensor_sample_rate=1.0)
    b = to_records(log_entry("b", items=1, version="2"))
    for r in b:
        r.time_unix_ns = DAY + 86_400 * 10**9  # the next day
    out = store.write_predictions(entries([*a, *b], start_ms=5000))
    assert (out.written, out.files, out.duplicates, out.dropped) == (3, 2, 0, 0)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.parquet"))
    assert files == [
        f"predictions/model=digits/version=1/date={utc_date(DAY)}/part-5000-0.parquet",
        "predictions/model=digits/version=2/date=2023-11-15/part-5000-0.parquet",
    ]
    table = pq.read_table(tmp_path / files[0])
    assert table.column("record_id").to_pylist() == ["a:0", "a:1"]
    row = table.slice(1, 1).to_pylist()[0]
    assert row["top1_index"] == a[1].top[0].index and row["topk_indices"] == [c.index for c in a[1].top]
    assert row["input_image_mean"] == list(a[1].inputs[0].mean) and row["label"] is None
    image = from_raw(
        row["input_image_raw"], row["input_image_datatype"], tuple(row["input_image_shape"]), "x"
    )
    np.testing.assert_array_equal(image, log_entry("a", items=2).inputs["image"][1])


def test_a_batch_written_again_after_a_crash_adds_nothing(tmp_path: Path) -> None:
    records = to_records(log_entry("a", items=50))
    ParquetStore(tmp_path).write_predictions(entries(records))
    again = ParquetStore(tmp_path)  # a restarted writer, before and after loading what exists
    out = again.write_predictions(entries(records))
    assert (out.written, out.duplicates) == (0, 50)
    cut_differently = ParquetStore(tmp_path)
    cut_differently.load()
    out = cut_differently.write_predictions(entries(records[20:], start_ms=1020))
    assert (out.written, out.duplicates) == (0, 30)
    more = to_records(log_entry("b", items=5))
    out = cut_differently.write_predictions(entries([*records[:10], *more], start_ms=1000))
    assert (out.written, out.duplicates, out.files) == (5, 10, 1)  # same name taken: part-1000-0-1
    assert read_predictions(tmp_path).num_rows == 55
    assert len(list(tmp_path.rglob("part-*.parquet"))) == 2


def test_undecodable_and_trimmed_entries_are_dropped(tmp_path: Path) -> None:
    out = ParquetStore(tmp_path).write_predictions([("1-0", None), ("2-0", b"\xff\xff\xff"), ("3-0", b"")])
    assert (out.written, out.dropped) == (0, 3)


def test_labelled_predictions_carry_version_route_and_the_latest_label(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    store.write_predictions(entries(to_records(log_entry("a", items=3)), start_ms=1000))
    store.write_predictions(entries(to_records(log_entry("b", items=1, version="2")), start_ms=2000))
    store.write_feedback(
        entries(
            [feedback("a:0", 4, DAY + 1000), feedback("a:2", 1, DAY + 2000), feedback("b:0", 8, DAY + 3000)],
            3000,
        )
    )
    store.write_feedback(entries([feedback("a:0", 6, DAY + 10_000, replaced=True)], 4000))
    store.write_feedback(entries([feedback("a:0", 6, DAY + 10_000, replaced=True)], 4001))  # a duplicate
    table = labelled_predictions(tmp_path)
    rows = {r["record_id"]: r for r in table.to_pylist()}
    assert sorted(rows) == ["a:0", "a:2", "b:0"]
    assert (rows["a:0"]["label"], rows["a:0"]["label_replaced"]) == (6, True)
    assert rows["a:2"]["label"] == 1 and rows["b:0"]["label"] == 8
    assert (rows["b:0"]["version"], rows["b:0"]["route"]) == ("2", "production")
    everything = labelled_predictions(tmp_path, include_unlabelled=True)
    assert everything.num_rows == 4
    assert {r["record_id"]: r["label"] for r in everything.to_pylist()}["a:1"] is None


def test_an_empty_store_gives_empty_tables(tmp_path: Path) -> None:
    assert labelled_predictions(tmp_path).num_rows == 0
    assert labelled_predictions(tmp_path, include_unlabelled=True).num_rows == 0
