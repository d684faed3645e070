"""Labelled production samples from the prediction log's Parquet folder, as training data.

The predlog writer's folder (``fleetserve predlog --out DIR``) holds the predictions and the
feedback; :func:`fleetserve.predlog.join.labelled_predictions` joins them. A row is usable
when it is the trained model's, has a label within the classes, and carries the sampled input
tensor (columns ``input_<name>_datatype/shape/raw``) with the model's item shape. Usable rows
are kept in time order and split in two: the older part is mixed into training, the most
recent share is held out as "recent production" evaluation data.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fleetserve.predlog.join import labelled_predictions
from fleetserve.protocol.errors import FleetError
from fleetserve.protocol.tensors import from_raw

DEFAULT_EVAL_FRACTION = 0.3


@dataclass(frozen=True)
class Samples:
    """Decoded production samples in time order: images (N x item shape, float32), labels (int64),
    record ids and prediction times (Unix ns)."""

    images: np.ndarray
    labels: np.ndarray
    record_ids: tuple[str, ...]
    times_ns: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, rows: slice) -> Samples:
        """The samples in ``rows`` (a slice of the time order)."""
        return Samples(
            images=self.images[rows],
            labels=self.labels[rows],
            record_ids=self.record_ids[rows],
            times_ns=self.times_ns[rows],
        )


@dataclass(frozen=True)
class ProductionData:
    """The usable rows split into ``train`` (older) and ``evaluation`` (most recent), the
    sha256 of all usable rows, and how many rows were read and why others were skipped."""

    train: Samples
    evaluation: Samples
    sha256: str
    rows_read: int
    skipped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        """What metadata.json records of the production data."""
        return {
            "rows_read": self.rows_read,
            "train_rows": len(self.train),
            "evaluation_rows": len(self.evaluation),
            "skipped": dict(self.skipped),
            "sha256": self.sha256,
            "evaluation_since_ns": int(self.evaluation.times_ns[0]) if len(self.evaluation) else None,
        }


def load_production(
    folder: Path,
    model: str,
    *,
    input_name: str,
    item_shape: tuple[int, ...],
    num_classes: int,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
) -> ProductionData:
    """Read the labelled, sampled predictions of ``model`` under ``folder`` and split them.

    The most recent ``ceil(n * eval_fraction)`` usable rows (at least one when any exist) form
    the evaluation part. Raises FileNotFoundError when ``folder`` is not a folder and
    ValueError for an ``eval_fraction`` outside (0, 1).
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"production evaluation fraction must be in (0, 1), got {eval_fraction}")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"production data folder {folder} does not exist (expected the predlog --out folder)"
        )
    table = labelled_predictions(folder)
    table = table.filter(pc.equal(table.column("model"), model)) if table.num_rows else table
    samples, skipped = _decode(table, input_name, item_shape, num_classes)
    count = len(samples)
    eval_count = min(count, max(1, math.ceil(count * eval_fraction))) if count else 0
    return ProductionData(
        train=samples.take(slice(0, count - eval_count)),
        evaluation=samples.take(slice(count - eval_count, count)),
        sha256=samples_hash(samples),
        rows_read=table.num_rows,
        skipped=skipped,
    )


def _decode(
    table: pa.Table, input_name: str, item_shape: tuple[int, ...], num_classes: int
) -> tuple[Samples, dict[str, int]]:
    skipped: Counter[str] = Counter()
    columns = [f"input_{input_name}_{suffix}" for suffix in ("datatype", "shape", "raw")]
    images: list[np.ndarray] = []
    labels: list[int] = []
    ids: list[str] = []
    times: list[int] = []
    if table.num_rows and all(c in table.column_names for c in columns):
        rows = zip(
            table.column("record_id").to_pylist(),
            table.column("time").cast(pa.int64()).to_pylist(),
            table.column("label").to_pylist(),
            *(table.column(c).to_pylist() for c in columns),
            strict=True,
        )
        for record_id, time_ns, label, datatype, shape, raw in rows:
            reason = _unusable(label, datatype, shape, raw, item_shape, num_classes)
            if reason is None:
                try:
                    image = from_raw(raw, datatype, tuple(shape), input_name).astype(np.float32)
                except FleetError:
                    reason = "undecodable tensor"
                else:
                    if not np.isfinite(image).all():
                        reason = "non-finite values"
            if reason is not None:
                skipped[reason] += 1
                continue
            images.append(image)
            labels.append(int(label))
            ids.append(str(record_id))
            times.append(int(time_ns))
    elif table.num_rows:
        skipped["no sampled input tensor"] += table.num_rows
    stacked = np.stack(images) if images else np.zeros((0, *item_shape), np.float32)
    samples = Samples(
        images=np.ascontiguousarray(stacked, dtype=np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        record_ids=tuple(ids),
        times_ns=np.asarray(times, dtype=np.int64),
    )
    return samples, dict(sorted(skipped.items()))


def _unusable(
    label: object,
    datatype: object,
    shape: object,
    raw: object,
    item_shape: tuple[int, ...],
    num_classes: int,
) -> str | None:
    """Why a row cannot be used, or None."""
    if raw is None or datatype is None or shape is None:
        return "no sampled input tensor"
    if not isinstance(label, int) or not 0 <= label < num_classes:
        return "label out of range"
    if not isinstance(shape, list) or tuple(shape) != item_shape:
        return "other input shape"
    return None


def samples_hash(samples: Samples) -> str:
    """sha256 over the samples' record ids, images and labels, as hex."""
    digest = hashlib.sha256()
    for record_id in samples.record_ids:
        digest.update(record_id.encode())
        digest.update(b"\0")
    for array in (samples.images, samples.labels):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class NotEnoughProductionData(RuntimeError):
    """Fewer usable labelled production rows than the run needs, after waiting for them."""


def wait_for_rows(
    load: Callable[[], ProductionData],
    min_rows: int,
    timeout_s: float,
    *,
    poll_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ProductionData:
    """``load()`` again every ``poll_s`` until it holds ``min_rows`` usable rows; the last read.

    Raises NotEnoughProductionData naming the counts when ``timeout_s`` passes first (a missing
    folder counts as no rows while waiting: the writer creates it with its first file).
    """
    deadline = clock() + timeout_s
    while True:
        try:
            data: ProductionData | None = load()
        except FileNotFoundError:
            data = None
        have = 0 if data is None else len(data.train) + len(data.evaluation)
        if data is not None and have >= min_rows:
            return data
        if clock() >= deadline:
            raise NotEnoughProductionData(
                f"{have} usable labelled production rows, {min_rows} needed "
                f"(waited {timeout_s:g} s; labels come through POST /v2/feedback)"
            )
        sleep(poll_s)
