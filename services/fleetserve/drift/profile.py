"""A version's reference profile: what its inputs and outputs looked like on its training data.

`reference_profile` computes it (pure; the trainer calls it when exporting a version) and the
version's `metadata.json` stores it under `reference_profile`; `load_reference` reads it back
for the drift monitor. The profile is JSON:

    {"schema_version": 1, "items": N, "bins": B,
     "inputs": {"image[0].mean": {"edges": [...], "counts": [...]}, ...},
     "classes": {"counts": [per class index]},
     "confidence": {"edges": [...], "counts": [...], "mean": m}}

`inputs` holds, for every input, channel and statistic the prediction record carries (mean,
std, min, max: `features.feature_name`), the histogram of that per-item feature; `classes`
the predicted (top-1) class distribution; `confidence` the histogram and mean of the top-1
score. The per-item values come from records built with the prediction log's own code
(`predlog.records.to_records`), so they are computed exactly as the gateway's.

Histograms (`histogram`) have edges at quantiles of the values, about `bins` bins (fewer where
values repeat; a value holding a bin's share or more, a point mass such as min = 0, gets a bin
of its own), from the smallest value to just above the largest, plus a bin below and one above: `counts` has
`len(edges) + 1` entries, the outer two 0 for the reference itself (`detectors` module).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fleetserve.predlog.entry import LogEntry
from fleetserve.predlog.records import to_records

from .detectors import bin_counts
from .features import columns, item_features

SCHEMA_VERSION = 1
DEFAULT_BINS = 10
METADATA = "metadata.json"
KEY = "reference_profile"
_OUTPUT = "probabilities"


def histogram(values: np.ndarray, bins: int = DEFAULT_BINS) -> dict[str, list[float] | list[int]]:
    """The quantile histogram of `values` (module docstring), as JSON-ready lists."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("no values to make a histogram of")
    if not np.all(np.isfinite(v)):
        raise ValueError("values must be finite")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, not {bins}")
    cuts = np.unique(np.quantile(v, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="inverted_cdf"))
    # a value holding a bin's worth of items or more is a point mass: it gets its own bin
    masses = cuts[np.count_nonzero(v[:, np.newaxis] == cuts, axis=0) * bins >= v.size]
    ends = [v.min(), np.nextafter(v.max(), np.inf)]
    edges = np.unique(np.concatenate([ends, cuts, np.nextafter(masses, np.inf)]))
    return {"edges": edges.tolist(), "counts": bin_counts(v, edges).tolist()}


def reference_profile(
    inputs: dict[str, np.ndarray], probabilities: np.ndarray, *, bins: int = DEFAULT_BINS
) -> dict[str, Any]:
    """The reference profile (module docstring) of a model's inputs and its outputs on them.

    `inputs`: the model's input tensors by name, batch first (e.g. "image": (N, 1, 8, 8));
    `probabilities`: its first output on them, (N, K) (class scores, one row per item).
    """
    probs = np.asarray(probabilities)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] == 0:
        raise ValueError(f"probabilities must be (N, K) with N, K > 0, not {probs.shape}")
    n = probs.shape[0]
    for name, array in inputs.items():
        if np.ndim(array) == 0 or np.shape(array)[0] != n:
            raise ValueError(f"input {name!r} must have {n} items along its first axis")
    entry = LogEntry(
        request_id="reference",
        time_ns=0,
        model="",
        version="",
        route="explicit",
        route_key=None,
        protocol="",
        latency_s=0.0,
        inputs={name: np.asarray(array) for name, array in inputs.items()},
        outputs={_OUTPUT: probs},
        batched=True,
        labels=None,
        first_output=_OUTPUT,
    )
    cols = columns([item_features(r) for r in to_records(entry, top_k=1)])
    confidence = histogram(cols.confidence, bins)
    return {
        "schema_version": SCHEMA_VERSION,
        "items": n,
        "bins": bins,
        "inputs": {name: histogram(values, bins) for name, values in sorted(cols.inputs.items())},
        "classes": {"counts": np.bincount(cols.predicted, minlength=probs.shape[1]).tolist()},
        "confidence": {**confidence, "mean": float(cols.confidence.mean())},
    }


@dataclass(frozen=True, slots=True)
class Histogram:
    """A histogram of the `detectors` convention: len(counts) == len(edges) + 1."""

    edges: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference profile."""

    items: int
    inputs: dict[str, Histogram]
    classes: np.ndarray  # predicted items per class index
    confidence: Histogram
    mean_confidence: float


def parse_reference(doc: Mapping[str, Any]) -> Reference:
    """A reference profile from its JSON form (ValueError naming what is wrong)."""
    try:
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"schema_version {doc.get('schema_version')!r} is not {SCHEMA_VERSION}")
        conf = doc["confidence"]
        classes = np.asarray(doc["classes"]["counts"], dtype=np.int64)
        if classes.ndim != 1 or classes.size == 0 or classes.min() < 0 or classes.sum() <= 0:
            raise ValueError("classes.counts must be non-negative counts with a positive total")
        return Reference(
            items=int(doc["items"]),
            inputs={str(name): _histogram(h, f"inputs.{name}") for name, h in doc["inputs"].items()},
            classes=classes,
            confidence=_histogram(conf, "confidence"),
            mean_confidence=float(conf["mean"]),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed reference profile: {type(exc).__name__}: {exc}") from None


def _histogram(doc: Mapping[str, Any], where: str) -> Histogram:
    edges = np.asarray(doc["edges"], dtype=np.float64)
    counts = np.asarray(doc["counts"], dtype=np.int64)
    if edges.ndim != 1 or edges.size == 0 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"{where}: edges must be one or more ascending numbers")
    if counts.shape != (edges.size + 1,) or counts.min() < 0 or counts.sum() <= 0:
        raise ValueError(f"{where}: counts must be len(edges) + 1 non-negative counts, some positive")
    return Histogram(edges, counts)


def load_reference(version_dir: Path) -> Reference | None:
    """The reference profile in a version folder's metadata.json; None where there is none.

    Raises ValueError when the file or the profile is malformed.
    """
    path = Path(version_dir) / METADATA
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    if not isinstance(metadata, dict) or KEY not in metadata:
        return None
    try:
        return parse_reference(metadata[KEY])
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
