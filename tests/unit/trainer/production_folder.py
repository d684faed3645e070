"""Writes a prediction-log Parquet folder the way `fleetserve predlog` does, from images and labels.

Records are built with the prediction log's own code (`records.to_records` from a `LogEntry`
like the gateway's) and written with the writer's table functions (`predlog/parquet.py`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fleetserve.predlog import parquet
from fleetserve.predlog.entry import LogEntry, Logged
from fleetserve.predlog.records import feedback_record, to_records

START_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
STEP_NS = 1_000_000_000


def write_folder(
    out: Path,
    images: np.ndarray,
    labels: Sequence[int | None],
    *,
    model: str = "digits",
    version: str = "1",
    sampled: Sequence[bool] | None = None,
    start_ns: int = START_NS,
    prefix: str = "req",
) -> list[str]:
    """One single-item request per image, one second apart from ``start_ns``; feedback for
    each non-None label; the tensor sampled where ``sampled`` (default: all). Returns the
    record ids in time order."""
    records = []
    feedback = []
    ids = []
    for i, image in enumerate(images):
        request_id = f"{prefix}{i:05d}"
        time_ns = start_ns + i * STEP_NS
        scores = np.full((1, 10), 0.01, np.float32)
        scores[0, i % 10] = 0.91
        entry = LogEntry(
            request_id=request_id,
            time_ns=time_ns,
            model=model,
            version=version,
            route="production",
            route_key=None,
            protocol="rest",
            latency_s=0.001,
            inputs={"image": np.asarray(image, np.float32)[np.newaxis]},
            outputs={"probabilities": scores},
            batched=True,
            labels=[str(d) for d in range(10)],
            first_output="probabilities",
        )
        rate = 1.0 if sampled is None or sampled[i] else 0.0
        (record,) = to_records(entry, tensor_sample_rate=rate, rng=random.Random(i))
        records.append(record)
        ids.append(record.record_id)
        if labels[i] is not None:
            logged = Logged(model=model, version=version, route="production", items=1, time_ns=time_ns)
            feedback.append(feedback_record(request_id, 0, int(labels[i]), logged, time_ns + STEP_NS // 2))
    date = parquet.utc_date(start_ns)
    first = f"{start_ns // 1_000_000}-0"
    parquet.write_durably(
        parquet.predictions_table(records),
        parquet.prediction_dir(out, model, version, date) / parquet.part_name(f"{prefix}{first}"),
    )
    if feedback:
        parquet.write_durably(
            parquet.feedback_table(feedback),
            parquet.feedback_dir(out, date) / parquet.part_name(f"{prefix}{first}"),
        )
    return ids
