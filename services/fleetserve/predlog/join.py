"""Predictions joined with their latest label: what the trainer and the quality figures read.

`labelled_predictions(out)` reads the writer's Parquet files under `out` (predictions/ and
feedback/), keeps the latest feedback per record id (a replaced label loses to its
replacement), and returns the predictions that have a label, each with its model, version,
route and the label (`label`, `label_time`, `label_replaced`). `include_unlabelled=True` keeps
the others too, with null labels.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .parquet import FEEDBACK_COLUMNS, PREDICTION_COLUMNS


def _read_parts(folder: Path, schema: pa.Schema) -> pa.Table:
    tables = [pq.ParquetFile(p).read() for p in sorted(folder.glob("**/part-*.parquet"))]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables, promote_options="default")


def _first_per_id(table: pa.Table) -> pa.Table:
    """One row per record_id (the first read), as a safety net against duplicates."""
    if table.num_rows == 0:
        return table
    numbered = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    first = numbered.group_by("record_id").aggregate([("_row", "min")]).column("_row_min")
    return table.take(pc.sort_indices(first))


def read_predictions(out: Path) -> pa.Table:
    """Every prediction row under `out`, once per record id."""
    return _first_per_id(_read_parts(Path(out) / "predictions", PREDICTION_COLUMNS))


def latest_labels(out: Path) -> pa.Table:
    """The latest feedback per record id: record_id, label, label_time, label_replaced."""
    fb = _read_parts(Path(out) / "feedback", FEEDBACK_COLUMNS)
    fb = fb.append_column("_row", pa.array(range(fb.num_rows), pa.int64()))
    fb = fb.sort_by([("time", "ascending"), ("_row", "ascending")])
    latest = fb.group_by("record_id", use_threads=False).aggregate(
        [("label", "last"), ("time", "last"), ("replaced", "last")]
    )
    return pa.table(
        {
            "record_id": latest.column("record_id"),
            "label": latest.column("label_last").cast(pa.int32()),
            "label_time": latest.column("time_last").cast(pa.timestamp("ns", tz="UTC")),
            "label_replaced": latest.column("replaced_last").cast(pa.bool_()),
        }
    )


def labelled_predictions(out: Path, include_unlabelled: bool = False) -> pa.Table:
    """Predictions joined with the latest label of each (see the module docstring), by time."""
    predictions = read_predictions(out).drop_columns(["label", "label_time"])
    labels = latest_labels(out)
    # a lookup rather than Table.join, which cannot carry the list columns along
    at = pc.index_in(predictions.column("record_id"), value_set=labels.column("record_id"))
    for name in ("label", "label_time", "label_replaced"):
        predictions = predictions.append_column(name, labels.column(name).take(at))
    if not include_unlabelled:
        predictions = predictions.filter(pc.is_valid(at))
    if predictions.num_rows == 0:
        return predictions
    return predictions.sort_by([("time", "ascending"), ("record_id", "ascending")])
