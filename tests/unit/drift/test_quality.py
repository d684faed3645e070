"""The quality metrics against scikit-learn's implementations (and direct reference
computations where sklearn has none) on the same random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.metrics import confusion_matrix as sk_confusion

from fleetserve.drift import quality as q

CASES = [(seed, n, k) for seed in range(4) for n, k in ((1, 3), (37, 3), (500, 10), (2000, 7))]


def data(seed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, predictions right ~70 % of the time, and confidences; some classes absent."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    wrong = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < 0.7, y_true, wrong)
    if n > 10:
        y_pred[y_pred == k - 1] = 0  # a class never predicted: precision's zero division
        y_true[y_true == 1] = 2  # a class never true: recall's zero division
    confidence = rng.random(n).astype(np.float32).astype(np.float64)
    return y_true, y_pred, confidence


@pytest.mark.parametrize(("seed", "n", "k"), CASES)
def test_accuracy_matches_sklearn(seed: int, n: int, k: int) -> None:
    y_true, y_pred, _ = data(seed, n, k)
    assert q.accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)


@pytest.mark.parametrize(("seed", "n", "k"), CASES)
def test_precision_recall_f1_match_sklearn_with_zero_division_0(seed: int, n: int, k: int) -> None:
    y_true, y_pred, _ = data(seed, n, k)
    for classes in (None, np.arange(k + 1)):  # the union, then classes that never occur too
        scores = q.precision_recall_f1(y_true, y_pred, classes)
        labels = np.union1d(y_true, y_pred) if classes is None else classes
        p, r, f, s = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=None, zero_division=0
        )
        np.testing.assert_array_equal(scores.classes, labels)
        np.testing.assert_allclose(scores.precision, p, rtol=0, atol=1e-12)
        np.testing.assert_allclose(scores.recall, r, rtol=0, atol=1e-12)
        np.testing.assert_allclose(scores.f1, f, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(scores.support, s)


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")
@pytest.mark.parametrize(("seed", "n", "k"), CASES)
def test_confusion_matrix_matches_sklearn(seed: int, n: int, k: int) -> None:
    y_true, y_pred, _ = data(seed, n, k)
    classes, matrix = q.confusion_matrix(y_true, y_pred)
    np.testing.assert_array_equal(classes, np.union1d(y_true, y_pred))
    np.testing.assert_array_equal(matrix, sk_confusion(y_true, y_pred))
    if n < 10:
        return
    # given classes, in any order, some absent and some left out (their items are dropped)
    chosen = np.array([2, 0, k + 3])
    classes, matrix = q.confusion_matrix(y_true, y_pred, chosen)
    np.testing.assert_array_equal(classes, chosen)
    np.testing.assert_array_equal(matrix, sk_confusion(y_true, y_pred, labels=chosen))


def reference_ece(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    """ECE written out: for each bin (lo, hi] (the first also takes 0), weight |acc - conf|."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for i in range(bins):
        lo, hi = edges[i], edges[i + 1]
        inside = (confidence > lo) & (confidence <= hi)
        if i == 0:
            inside |= confidence <= lo
        if i == bins - 1:
            inside |= confidence > hi
        if inside.any():
            acc = float(np.mean(correct[inside]))
            conf = float(np.mean(confidence[inside]))
            total += inside.sum() / confidence.size * abs(acc - conf)
    return total


@pytest.mark.parametrize(("seed", "n", "k"), CASES)
@pytest.mark.parametrize("bins", [1, 10, 15])
def test_ece_matches_a_direct_computation(seed: int, n: int, k: int, bins: int) -> None:
    y_true, y_pred, confidence = data(seed, n, k)
    correct = y_true == y_pred
    got = q.expected_calibration_error(confidence, correct, bins)
    assert got == pytest.approx(reference_ece(confidence, correct, bins), abs=1e-12)


def test_ece_bin_edges_and_known_values() -> None:
    # confidences on the edges: 0.3 belongs to (0.2, 0.3], 0 to the first bin, 1 to the last
    conf = np.array([0.0, 0.3, 0.3, 1.0, 0.35])
    correct = np.array([False, True, False, True, True])
    assert q.expected_calibration_error(conf, correct) == pytest.approx(reference_ece(conf, correct, 10))
    # perfectly calibrated: confidence 1 and always right
    assert q.expected_calibration_error([1.0, 1.0], [True, True]) == 0.0
    # always 0.9 confident, half right: ECE = 0.4
    assert q.expected_calibration_error([0.9] * 4, [True, False, True, False]) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="bins"):
        q.expected_calibration_error([0.5], [True], bins=0)
    with pytest.raises(ValueError, match="items"):
        q.expected_calibration_error([0.5, 0.2], [True])


def test_labelled_share() -> None:
    assert q.labelled_share(30, 120) == 0.25
    assert q.labelled_share(0, 5) == 0.0
    assert q.labelled_share(7, 5) == 1.0  # never above 1
    assert math.isnan(q.labelled_share(0, 0))


def reference_percentile(values: list[float], pct: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default method)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * pct / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [1, 2, 19, 1000])
def test_label_delay(seed: int, n: int) -> None:
    delays = np.random.default_rng(seed).exponential(3600.0, n).tolist()
    d = q.label_delay(delays)
    assert d.count == n
    assert d.mean == pytest.approx(math.fsum(delays) / n, rel=1e-12)
    assert d.p50 == pytest.approx(reference_percentile(delays, 50), rel=1e-12)
    assert d.p95 == pytest.approx(reference_percentile(delays, 95), rel=1e-12)


def test_empty_inputs() -> None:
    assert math.isnan(q.accuracy([], []))
    assert math.isnan(q.expected_calibration_error([], []))
    d = q.label_delay([])
    assert d.count == 0 and math.isnan(d.mean) and math.isnan(d.p95)
    scores = q.precision_recall_f1([], [])
    assert scores.classes.size == 0 and scores.f1.size == 0
    _, matrix = q.confusion_matrix([], [], [0, 1])
    assert matrix.tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="items"):
        q.accuracy([1, 2], [1])
