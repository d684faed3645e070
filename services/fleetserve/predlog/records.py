"""Turning `LogEntry`s into `PredictionRecord`s: input profiles, top-k and samples.

Profiles are per item and per channel: an item's tensor reshaped to (channels, -1), the channel
axis being the first after the batch axis (an item without one is a single channel); mean, std,
min and max over the second axis, in float64. Tensors that are not numbers (BYTES) get a profile
with their name only. Top-k is taken over the first output of each item flattened, best first
(ties: lower index first); the confidence is the top-1 score. `records_of` stacks the entries
of a batch whose tensors have the same names, types and item shapes, so numpy runs once per
group rather than once per request.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence

import numpy as np

from fleetserve.protocol import datatypes
from fleetserve.protocol.tensors import to_raw
from fleetserve.wire import fleet_pb2

from .entry import LogEntry, Logged

SCHEMA_VERSION = 1
Stats = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None  # mean, std, min, max: (items, C)
Top = tuple[np.ndarray, np.ndarray] | None  # class indices and scores: (items, k)


def record_id(request_id: str, item_index: int) -> str:
    """The id of one item's record: `<request_id>:<item_index>`."""
    return f"{request_id}:{item_index}"


def feedback_record(
    request_id: str, item_index: int, label: int, logged: Logged, time_ns: int
) -> fleet_pb2.FeedbackRecord:
    """The feedback record of a label for one item of a logged request (`replaced` when the
    index already held a label for that item)."""
    return fleet_pb2.FeedbackRecord(
        schema_version=SCHEMA_VERSION,
        record_id=record_id(request_id, item_index),
        request_id=request_id,
        item_index=item_index,
        label=label,
        time_unix_ns=time_ns,
        replaced=item_index in logged.labels,
        model=logged.model,
        version=logged.version,
    )


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


def _batch(entry: LogEntry, array: np.ndarray) -> np.ndarray:
    """The array with the items along its first axis."""
    return array if entry.batched else array[np.newaxis, ...]


def _stats(array: np.ndarray) -> Stats:
    """Per item and channel statistics of a batch-first array."""
    if not _numeric(array) or array.size == 0:
        return None
    channels = array.shape[1] if array.ndim > 1 else 1
    x = array.reshape(array.shape[0], channels, -1).astype(np.float64, copy=False)
    return x.mean(axis=2), x.std(axis=2), x.min(axis=2), x.max(axis=2)


def _top(array: np.ndarray | None, k: int) -> Top:
    """The k best classes of each item of a batch-first array, and their scores."""
    if array is None or not _numeric(array) or array.size == 0 or k <= 0:
        return None
    scores = array.reshape(array.shape[0], -1).astype(np.float32, copy=False)
    # stable sort of the negated scores: equal scores keep the lower class index first
    order = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])]
    return order, scores[np.arange(scores.shape[0])[:, np.newaxis], order]


def _sample(name: str, tensor: np.ndarray) -> fleet_pb2.SampledTensor | None:
    try:
        datatype = datatypes.from_numpy(tensor.dtype).name
    except ValueError:
        return None
    return fleet_pb2.SampledTensor(name=name, datatype=datatype, shape=list(tensor.shape), raw=to_raw(tensor))


def _build(
    entry: LogEntry,
    start: int,
    stats: list[tuple[str, Stats]],
    top: Top,
    tensor_sample_rate: float,
    draw: random.Random,
) -> list[fleet_pb2.PredictionRecord]:
    """The records of one entry, whose items are rows start.. of the stacked arrays."""
    names = entry.labels or []
    records = []
    for i in range(item_count(entry)):
        row = start + i
        profiles = [
            fleet_pb2.TensorProfile(name=n)
            if s is None
            else fleet_pb2.TensorProfile(
                name=n,
                mean=s[0][row].tolist(),
                std=s[1][row].tolist(),
                min=s[2][row].tolist(),
                max=s[3][row].tolist(),
            )
            for n, s in stats
        ]
        classes: list[fleet_pb2.ClassScore] = []
        if top is not None:
            for index, score in zip(top[0][row].tolist(), top[1][row].tolist(), strict=True):
                label = names[index] if index < len(names) else ""
                classes.append(fleet_pb2.ClassScore(index=index, score=score, label=label))
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
            inputs=profiles,
            top=classes,
            confidence=classes[0].score if classes else 0.0,
        )
        if tensor_sample_rate > 0 and draw.random() < tensor_sample_rate:
            samples = [_sample(n, _batch(entry, a)[i]) for n, a in entry.inputs.items()]
            record.sample.extend(s for s in samples if s is not None)
        records.append(record)
    return records


def to_records(
    entry: LogEntry, top_k: int = 5, tensor_sample_rate: float = 0.0, rng: random.Random | None = None
) -> list[fleet_pb2.PredictionRecord]:
    """The records of one answered request, one per item, in item order.

    A share `tensor_sample_rate` of the records (drawn with `rng`) carries the item's input
    tensors themselves in `sample`.
    """
    if item_count(entry) == 0:
        return []
    stats = [(n, _stats(_batch(entry, a))) for n, a in entry.inputs.items()]
    output = entry.outputs.get(entry.first_output)
    top = _top(None if output is None else _batch(entry, output), top_k)
    _check_rows(stats, top, item_count(entry))
    return _build(entry, 0, stats, top, tensor_sample_rate, rng or random.Random())


def _signature(entry: LogEntry) -> Hashable:
    """Entries with the same signature have tensors that stack along the item axis."""

    def shapes(tensors: dict[str, np.ndarray]) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
        return tuple((n, a.dtype.str, _batch(entry, a).shape[1:]) for n, a in tensors.items())

    output = entry.outputs.get(entry.first_output)
    first = None if output is None else (output.dtype.str, _batch(entry, output).shape[1:])
    return shapes(entry.inputs), first


def records_of(
    entries: Sequence[LogEntry],
    top_k: int = 5,
    tensor_sample_rate: float = 0.0,
    rng: random.Random | None = None,
) -> tuple[list[fleet_pb2.PredictionRecord], list[LogEntry]]:
    """The records of many entries, in entry order, and the entries that gave none (malformed)."""
    draw = rng or random.Random()
    groups: dict[Hashable, list[int]] = {}
    failed: list[LogEntry] = []
    for i, entry in enumerate(entries):
        try:
            groups.setdefault(_signature(entry), []).append(i)
        except (AttributeError, IndexError, TypeError, ValueError):
            failed.append(entry)
    built: dict[int, list[fleet_pb2.PredictionRecord]] = {}
    for members in groups.values():
        try:
            built.update(_stacked([entries[i] for i in members], members, top_k, tensor_sample_rate, draw))
        except (IndexError, TypeError, ValueError):  # one bad entry: the group's entries one by one
            for i in members:
                try:
                    built[i] = to_records(entries[i], top_k, tensor_sample_rate, draw)
                except (IndexError, TypeError, ValueError):
                    failed.append(entries[i])
    return [r for i in sorted(built) for r in built[i]], failed


def _stacked(
    group: list[LogEntry], members: list[int], top_k: int, tensor_sample_rate: float, draw: random.Random
) -> dict[int, list[fleet_pb2.PredictionRecord]]:
    first = group[0]
    counts = [item_count(e) for e in group]
    if len(group) == 1:
        return {members[0]: to_records(first, top_k, tensor_sample_rate, draw)}
    stats = [(n, _stats(np.concatenate([_batch(e, e.inputs[n]) for e in group]))) for n in first.inputs]
    top: Top = None
    if first.first_output in first.outputs:
        top = _top(np.concatenate([_batch(e, e.outputs[e.first_output]) for e in group]), top_k)
    _check_rows(stats, top, sum(counts))
    out: dict[int, list[fleet_pb2.PredictionRecord]] = {}
    start = 0
    for i, entry, count in zip(members, group, counts, strict=True):
        out[i] = _build(entry, start, stats, top, tensor_sample_rate, draw)
        start += count
    return out


def _check_rows(stats: list[tuple[str, Stats]], top: Top, items: int) -> None:
    """Every tensor must have one row per item."""
    for name, s in stats:
        if s is not None and s[0].shape[0] != items:
            raise ValueError(f"input {name} has {s[0].shape[0]} rows for {items} items")
    if top is not None and top[0].shape[0] != items:
        raise ValueError(f"the first output has {top[0].shape[0]} rows for {items} items")
