"""Model-quality metrics over labelled predictions: pure functions over numpy arrays.

Semantics follow scikit-learn's (the unit tests check them against it): the classes are the
sorted union of the true and predicted labels unless given, and a precision / recall / F1
whose denominator is zero is 0 (sklearn's `zero_division=0`). Empty inputs give NaN where
sklearn would warn (accuracy, calibration, delays) and empty arrays elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

DEFAULT_BINS = 10


@dataclass(frozen=True, slots=True)
class ClassScores:
    """Per-class precision, recall, F1 and support (true items), aligned with `classes`."""

    classes: IntArray
    precision: FloatArray
    recall: FloatArray
    f1: FloatArray
    support: IntArray


@dataclass(frozen=True, slots=True)
class Delay:
    """Seconds between a prediction and its label: mean and quantiles over the labelled items."""

    mean: float
    p50: float
    p95: float
    count: int


def _ints(values: npt.ArrayLike) -> IntArray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


def _floats(values: npt.ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[IntArray, IntArray]:
    t, p = _ints(y_true), _ints(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} items, y_pred {p.size}")
    return t, p


def class_set(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, classes: npt.ArrayLike | None = None) -> IntArray:
    """The classes metrics are reported for: `classes` if given, else the sorted union of both."""
    if classes is not None:
        return _ints(classes)
    t, p = _pair(y_true, y_pred)
    return np.union1d(t, p)


def accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Share of items whose predicted class is the true one (NaN without items)."""
    t, p = _pair(y_true, y_pred)
    if t.size == 0:
        return math.nan
    return float(np.mean(t == p))


def confusion_matrix(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, classes: npt.ArrayLike | None = None
) -> tuple[IntArray, IntArray]:
    """The classes and the matrix whose [i, j] counts items of true class i predicted as j.

    Items whose true or predicted class is not among `classes` are left out (as sklearn's
    `labels=`).
    """
    t, p = _pair(y_true, y_pred)
    cls = class_set(t, p, classes)
    k = cls.size
    matrix = np.zeros((k, k), dtype=np.int64)
    if k == 0 or t.size == 0:
        return cls, matrix
    order = np.argsort(cls, kind="stable")
    sorted_cls = cls[order]
    ti = np.searchsorted(sorted_cls, t)
    pi = np.searchsorted(sorted_cls, p)
    ti_c, pi_c = np.minimum(ti, k - 1), np.minimum(pi, k - 1)
    known = (sorted_cls[ti_c] == t) & (sorted_cls[pi_c] == p)
    np.add.at(matrix, (order[ti_c[known]], order[pi_c[known]]), 1)
    return cls, matrix


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def precision_recall_f1(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, classes: npt.ArrayLike | None = None
) -> ClassScores:
    """Per-class precision, recall and F1 with zero_division=0, and each class's support."""
    cls, matrix = confusion_matrix(y_true, y_pred, classes)
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support.astype(np.float64))
    # F1 from the counts (2tp / (2tp + fp + fn)), as sklearn computes it
    f1 = _ratio(2 * tp, predicted + support.astype(np.float64))
    return ClassScores(cls, precision, recall, f1, support.astype(np.int64))


def expected_calibration_error(
    confidence: npt.ArrayLike, correct: npt.ArrayLike, bins: int = DEFAULT_BINS
) -> float:
    """ECE over `bins` equal-width confidence bins of [0, 1]: the item-weighted mean of
    |accuracy - mean confidence| per bin (NaN without items).

    Bin i holds confidences in (i/bins, (i+1)/bins]; a confidence of 0 falls in the first bin,
    confidences outside [0, 1] in the nearest end bin.
    """
    if bins < 1:
        raise ValueError("bins must be at least 1")
    conf = _floats(confidence)
    hit = np.asarray(correct, dtype=bool).reshape(-1)
    if conf.shape != hit.shape:
        raise ValueError(f"confidence has {conf.size} items, correct {hit.size}")
    n = conf.size
    if n == 0:
        return math.nan
    edges = np.linspace(0.0, 1.0, bins + 1)
    # searchsorted against the same edges as a direct loop over (lo, hi] uses
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    conf_sum = np.bincount(index, weights=conf, minlength=bins)
    hit_sum = np.bincount(index, weights=hit.astype(np.float64), minlength=bins)
    # n_b / n * |acc_b - conf_b| = |hits_b - sum of confidences_b| / n (empty bins add 0)
    return float(np.sum(np.abs(hit_sum - conf_sum)) / n)


def labelled_share(labelled: int, predicted: int) -> float:
    """Share of predicted items that have a label (NaN when nothing was predicted)."""
    if predicted <= 0:
        return math.nan
    return min(1.0, labelled / predicted)


def label_delay(delays_s: npt.ArrayLike) -> Delay:
    """Mean, median and 95th percentile (linear interpolation) of label delays in seconds."""
    d = _floats(delays_s)
    if d.size == 0:
        return Delay(math.nan, math.nan, math.nan, 0)
    p50, p95 = np.percentile(d, [50.0, 95.0])
    return Delay(float(np.mean(d)), float(p50), float(p95), int(d.size))
