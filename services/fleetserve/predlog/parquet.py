"""The Parquet layout of the writer sidecar: partitions, table schemas, durable writes.

Predictions: `OUT/predictions/model=<m>/version=<v>/date=<YYYY-MM-DD>/part-<first-stream-id>.parquet`
(one row per record: ids, time, routing, latency, top-k, per-input profile columns
`input_<name>_{mean,std,min,max}` and, for the sampled records, the tensor itself in
`input_<name>_{datatype,shape,raw}`; `label` / `label_time` stay null in the files, join.py
fills them from the feedback). Feedback: `OUT/feedback/date=<YYYY-MM-DD>/part-<id>.parquet`.
Partition values are URL-quoted; dates are the UTC date of the record's time.
A file is written under a dot-name, fsynced, renamed into place and its folder fsynced.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

from fleetserve.wire import fleet_pb2

TIME = pa.timestamp("ns", tz="UTC")
PREDICTION_COLUMNS = pa.schema(
    [
        ("record_id", pa.string()),
        ("request_id", pa.string()),
        ("item_index", pa.int32()),
        ("time", TIME),
        ("model", pa.string()),
        ("version", pa.string()),
        ("route", pa.string()),
        ("route_key", pa.string()),
        ("protocol", pa.string()),
        ("latency_seconds", pa.float64()),
        ("top1_index", pa.int32()),
        ("top1_label", pa.string()),
        ("confidence", pa.float32()),
        ("topk_indices", pa.list_(pa.int32())),
        ("topk_scores", pa.list_(pa.float32())),
        ("topk_labels", pa.list_(pa.string())),
        ("label", pa.int32()),
        ("label_time", TIME),
    ]
)
FEEDBACK_COLUMNS = pa.schema(
    [
        ("record_id", pa.string()),
        ("request_id", pa.string()),
        ("item_index", pa.int32()),
        ("label", pa.int32()),
        ("time", TIME),
        ("replaced", pa.bool_()),
        ("model", pa.string()),
        ("version", pa.string()),
    ]
)
_STATS = ("mean", "std", "min", "max")


def utc_date(time_ns: int) -> str:
    """YYYY-MM-DD of a Unix time in nanoseconds, in UTC."""
    return time.strftime("%Y-%m-%d", time.gmtime(time_ns / 1e9))


def prediction_dir(out: Path, model: str, version: str, date: str) -> Path:
    """The partition folder of a model version's predictions of one day."""
    return (
        out
        / "predictions"
        / f"model={quote(model, safe='')}"
        / f"version={quote(version, safe='')}"
        / f"date={date}"
    )


def feedback_dir(out: Path, date: str) -> Path:
    """The partition folder of one day's feedback."""
    return out / "feedback" / f"date={date}"


def part_name(first_id: str, n: int = 0) -> str:
    """`part-<stream id>.parquet` (`-<n>` when that name held other records already)."""
    return f"part-{first_id}.parquet" if n == 0 else f"part-{first_id}-{n}.parquet"


def input_names(records: Iterable[fleet_pb2.PredictionRecord]) -> list[str]:
    """The input names of the records, in first-seen order."""
    names: dict[str, None] = {}
    for r in records:
        for p in r.inputs:
            names.setdefault(p.name, None)
    return list(names)


def predictions_table(records: Sequence[fleet_pb2.PredictionRecord]) -> pa.Table:
    """One row per prediction record (columns: PREDICTION_COLUMNS, then the input columns)."""
    cols: dict[str, list[object]] = {n: [] for n in PREDICTION_COLUMNS.names}
    for r in records:
        top = list(r.top)
        cols["record_id"].append(r.record_id)
        cols["request_id"].append(r.request_id)
        cols["item_index"].append(r.item_index)
        cols["time"].append(r.time_unix_ns)
        cols["model"].append(r.model)
        cols["version"].append(r.version)
        cols["route"].append(r.route)
        cols["route_key"].append(r.route_key or None)
        cols["protocol"].append(r.protocol)
        cols["latency_seconds"].append(r.latency_seconds)
        cols["top1_index"].append(top[0].index if top else None)
        cols["top1_label"].append((top[0].label or None) if top else None)
        cols["confidence"].append(r.confidence if top else None)
        cols["topk_indices"].append([c.index for c in top])
        cols["topk_scores"].append([c.score for c in top])
        cols["topk_labels"].append([c.label for c in top])
        cols["label"].append(None)
        cols["label_time"].append(None)
    arrays = [pa.array(cols[f.name], type=f.type) for f in PREDICTION_COLUMNS]
    fields = list(PREDICTION_COLUMNS)
    for name in input_names(records):
        profile_cols, sample_cols = _input_columns(records, name)
        for stat, values in zip(_STATS, profile_cols, strict=True):
            fields.append(pa.field(f"input_{name}_{stat}", pa.list_(pa.float64())))
            arrays.append(pa.array(values, type=fields[-1].type))
        for suffix, kind, values in zip(
            ("datatype", "shape", "raw"),
            (pa.string(), pa.list_(pa.int64()), pa.binary()),
            sample_cols,
            strict=True,
        ):
            fields.append(pa.field(f"input_{name}_{suffix}", kind))
            arrays.append(pa.array(values, type=kind))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _input_columns(
    records: Sequence[fleet_pb2.PredictionRecord], name: str
) -> tuple[list[list[object]], list[list[object]]]:
    stats: list[list[object]] = [[], [], [], []]
    sample: list[list[object]] = [[], [], []]
    for r in records:
        profile = next((p for p in r.inputs if p.name == name), None)
        for i, stat in enumerate(_STATS):
            stats[i].append(list(getattr(profile, stat)) if profile is not None else None)
        tensor = next((s for s in r.sample if s.name == name), None)
        sample[0].append(tensor.datatype if tensor is not None else None)
        sample[1].append(list(tensor.shape) if tensor is not None else None)
        sample[2].append(tensor.raw if tensor is not None else None)
    return stats, sample


def feedback_table(records: Sequence[fleet_pb2.FeedbackRecord]) -> pa.Table:
    """One row per feedback record (FEEDBACK_COLUMNS)."""
    return pa.Table.from_pydict(
        {
            "record_id": [r.record_id for r in records],
            "request_id": [r.request_id for r in records],
            "item_index": [r.item_index for r in records],
            "label": [r.label for r in records],
            "time": [r.time_unix_ns for r in records],
            "replaced": [r.replaced for r in records],
            "model": [r.model for r in records],
            "version": [r.version for r in records],
        },
        schema=FEEDBACK_COLUMNS,
    )


def write_durably(table: pa.Table, path: Path) -> None:
    """Write `table` to `path` so that `path` either does not exist or holds all of it."""
    created = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    for folder in created:  # a new partition folder's entry must be durable too
        _fsync_dir(folder.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        pq.write_table(table, f, compression="zstd")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
