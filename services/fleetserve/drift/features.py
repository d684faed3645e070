"""The per-item features drift is measured on, read from prediction records.

Both sides of the comparison come through here: the reference profile (records built from the
training split with the prediction log's own code, `predlog.records.to_records`) and the live
windows (records read from the stream), so a feature means exactly the same on both.

Input features are the record's `TensorProfile` statistics, one per input, channel and
statistic, named `<input>[<channel>].<stat>` (e.g. `image[0].mean`). Output features are the
top-1 class index and the confidence (the top-1 score).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from fleetserve.wire import fleet_pb2

STATS = ("mean", "std", "min", "max")
CLASS = "class"
CONFIDENCE = "confidence"


def feature_name(tensor: str, channel: int, stat: str) -> str:
    """The name of one input feature: `<input>[<channel>].<stat>`."""
    return f"{tensor}[{channel}].{stat}"


@dataclass(frozen=True, slots=True)
class ItemFeatures:
    """The features of one predicted item (`predicted` / `confidence` None without a top class)."""

    inputs: dict[str, float]
    predicted: int | None
    confidence: float | None


def input_features(profiles: Sequence[fleet_pb2.TensorProfile]) -> Iterator[tuple[str, float]]:
    """(feature name, value) of every channel statistic of the profiles (non-numeric ones have none)."""
    for profile in profiles:
        for stat in STATS:
            for channel, value in enumerate(getattr(profile, stat)):
                yield feature_name(profile.name, channel, stat), float(value)


def item_features(record: fleet_pb2.PredictionRecord) -> ItemFeatures:
    """The features of one prediction record."""
    inputs = dict(input_features(record.inputs))
    if not record.top:
        return ItemFeatures(inputs, None, None)
    best = record.top[0]
    confidence = record.confidence if record.confidence or not best.score else best.score
    return ItemFeatures(inputs, int(best.index), float(confidence))


@dataclass(frozen=True, slots=True)
class FeatureColumns:
    """The features of many items as arrays: one per input feature, the predicted classes and
    the confidences (items without a top class are left out of those two)."""

    inputs: dict[str, np.ndarray]
    predicted: np.ndarray
    confidence: np.ndarray


def columns(items: Sequence[ItemFeatures]) -> FeatureColumns:
    """Stack item features into columns (a feature missing from some items has fewer values)."""
    values: dict[str, list[float]] = {}
    for item in items:
        for name, value in item.inputs.items():
            values.setdefault(name, []).append(value)
    scored = [i for i in items if i.predicted is not None and i.confidence is not None]
    return FeatureColumns(
        inputs={name: np.asarray(v, dtype=np.float64) for name, v in values.items()},
        predicted=np.fromiter((i.predicted for i in scored), dtype=np.int64, count=len(scored)),
        confidence=np.fromiter((i.confidence for i in scored), dtype=np.float64, count=len(scored)),
    )
