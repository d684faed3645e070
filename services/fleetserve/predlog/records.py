"""Turning a `LogEntry` into its `PredictionRecord`s: input profiles, top-k and samples.

Profiles are per item and per channel: an item's tensor reshaped to (channels, -1), the channel
axis being the first after the batch axis (an item without one is a single channel); mean, std,
min and max over the second axis, in float64. Tensors that are not numbers (BYTES) get a profile
with their name only. Top-k is taken over the first output of each item flattened, best first
(ties: lower index first); the confidence is the top-1 score.
"""

from __future__ import annotations

import random

import numpy as np

from fleetserve.protocol import datatypes
from fleetserve.protocol.tensors import to_raw
from fleetserve.wire import fleet_pb2

from .entry import LogEntry

SCHEMA_VERSION = 1


def record_id(request_id: str, item_index: int) -> str:
    """The id of one item's record: `<request_id>:<item_index>`."""
    return f"{request_id}:{item_index}"


def item_count(entry: LogEntry) -> int:
    """Items in the request: the first axis of its tensors when batched, else one."""
    if not entry.batched:
        return 1
    for tensors in (entry.outputs, entry.inputs):
        for array in tensors.values():
            return int(array.shape[0]) if array.ndim else 1
    return 0


def _numeric(array: np.ndarray) -> bool:
    return array.dtype.kind in "biuf" or array.dtype.name == "bfloat16"


def _profiles(name: str, array: np.ndarray, items: int, batched: bool) -> list[fleet_pb2.TensorProfile]:
    """One profile of `array` per item (batched: items along the first axis)."""
    if not _numeric(array) or array.size == 0:
        return [fleet_pb2.TensorProfile(name=name) for _ in range(items)]
    per_item = array if batched else array[np.newaxis, ...]
    channels = per_item.shape[1] if per_item.ndim > 1 else 1
    x = per_item.reshape(items, channels, -1).astype(np.float64, copy=False)
    mean, std = x.mean(axis=2), x.std(axis=2)
    low, high = x.min(axis=2), x.max(axis=2)
    return [
        fleet_pb2.TensorProfile(
            name=name, mean=mean[i].tolist(), std=std[i].tolist(), min=low[i].tolist(), max=high[i].tolist()
        )
        for i in range(items)
    ]


def _top(
    array: np.ndarray | None, items: int, batched: bool, k: int, labels: list[str] | None
) -> list[list[fleet_pb2.ClassScore]]:
    """The top-k classes of each item, best first."""
    if array is None or not _numeric(array) or array.size == 0 or k <= 0:
        return [[] for _ in range(items)]
    scores = (array if batched else array[np.newaxis, ...]).reshape(items, -1).astype(np.float32)
    k = min(k, scores.shape[1])
    # stable sort of the negated scores: equal scores keep the lower class index first
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, order, axis=1)
    names = labels or []
    out: list[list[fleet_pb2.ClassScore]] = []
    for i in range(items):
        row = []
        for index, score in zip(order[i].tolist(), best[i].tolist(), strict=True):
            label = names[index] if index < len(names) else ""
            row.append(fleet_pb2.ClassScore(index=index, score=score, label=label))
        out.append(row)
    return out


def _sample(name: str, array: np.ndarray, item: int, batched: bool) -> fleet_pb2.SampledTensor | None:
    tensor = array[item] if batched else array
    try:
        datatype = datatypes.from_numpy(tensor.dtype).name
    except ValueError:
        return None
    return fleet_pb2.SampledTensor(name=name, datatype=datatype, shape=list(tensor.shape), raw=to_raw(tensor))


def to_records(
    entry: LogEntry, top_k: int = 5, tensor_sample_rate: float = 0.0, rng: random.Random | None = None
) -> list[fleet_pb2.PredictionRecord]:
    """The records of one answered request, one per item, in item order.

    A share `tensor_sample_rate` of the records (drawn with `rng`) carries the item's input
    tensors themselves in `sample`.
    """
    items = item_count(entry)
    if items == 0:
        return []
    profiles = [_profiles(n, a, items, entry.batched) for n, a in entry.inputs.items()]
    tops = _top(entry.outputs.get(entry.first_output), items, entry.batched, top_k, entry.labels)
    draw = (rng or random).random
    records = []
    for i in range(items):
        top = tops[i]
        record = fleet_pb2.PredictionRecord(
            schema_version=SCHEMA_VERSION,
            record_id=record_id(entry.request_id, i),
            request_id=entry.request_id,
            item_index=i,
            time_unix_ns=entry.time_ns,
            model=entry.model,
            version=entry.version,
            route=entry.route,
            latency_seconds=entry.latency_s,
            route_key=entry.route_key or "",
            protocol=entry.protocol,
            inputs=[p[i] for p in profiles],
            top=top,
            confidence=top[0].score if top else 0.0,
        )
        if tensor_sample_rate > 0 and draw() < tensor_sample_rate:
            samples = [_sample(n, a, i, entry.batched) for n, a in entry.inputs.items()]
            record.sample.extend(s for s in samples if s is not None)
        records.append(record)
    return records
