"""Scores of one window of items against a version's reference profile, and the verdict.

Per input feature: `psi` and `ks` (the KS statistic; its p-value is kept beside it). For the
predicted class: `psi` and `js` (Jensen-Shannon divergence). For the confidence: `psi`, `ks`
and `drop` (mean-confidence drop). Every score grows with drift, so "over its threshold" is
one rule, and the highest score of a version is a fair one-number summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import detectors as d
from .features import CLASS, CONFIDENCE, ItemFeatures, columns
from .profile import Histogram, Reference

PSI, KS, JS, DROP = "psi", "ks", "js", "drop"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """A score above its test's threshold is drift."""

    psi: float = 0.3
    ks: float = 0.25
    js: float = 0.1
    drop: float = 0.1
    eps: float = d.DEFAULT_EPS  # PSI's floor for empty bins

    def limit(self, test: str) -> float:
        """The threshold of one test."""
        return float(getattr(self, test))


@dataclass(frozen=True, slots=True)
class Score:
    """One test of one feature."""

    feature: str
    test: str
    value: float


@dataclass(frozen=True, slots=True)
class WindowScores:
    """Every score of a window, the KS p-values by feature, and the window's size."""

    items: int
    scores: list[Score]
    ks_pvalues: dict[str, float]

    def over(self, thresholds: Thresholds, factor: float = 1.0) -> list[Score]:
        """The scores above `factor` times their threshold."""
        return [s for s in self.scores if s.value > factor * thresholds.limit(s.test)]

    def highest(self) -> float:
        """The highest score (0 when there is none)."""
        return max((s.value for s in self.scores), default=0.0)


def score_window(
    items: Sequence[ItemFeatures], reference: Reference, eps: float = d.DEFAULT_EPS
) -> WindowScores:
    """Score a window of items against the reference (features the reference lacks are skipped)."""
    cols = columns(items)
    scores: list[Score] = []
    pvalues: dict[str, float] = {}
    for name, hist in sorted(reference.inputs.items()):
        values = cols.inputs.get(name)
        if values is None or values.size == 0:
            continue
        psi, ks = _continuous(values, hist, eps)
        scores += [Score(name, PSI, psi), Score(name, KS, ks.statistic)]
        pvalues[name] = ks.pvalue
    predicted = cols.predicted[cols.predicted >= 0]
    if predicted.size:
        window, ref = _class_counts(predicted, reference.classes)
        scores += [
            Score(CLASS, PSI, d.psi(ref, window, eps)),
            Score(CLASS, JS, d.jensen_shannon(ref, window)),
        ]
        psi, ks = _continuous(cols.confidence, reference.confidence, eps)
        drop = d.confidence_drop(reference.mean_confidence, cols.confidence)
        scores += [
            Score(CONFIDENCE, PSI, psi),
            Score(CONFIDENCE, KS, ks.statistic),
            Score(CONFIDENCE, DROP, drop),
        ]
        pvalues[CONFIDENCE] = ks.pvalue
    return WindowScores(len(items), scores, pvalues)


def _continuous(values: np.ndarray, hist: Histogram, eps: float) -> tuple[float, d.KSResult]:
    counts = d.bin_counts(values, hist.edges)
    return d.psi(hist.counts, counts, eps), d.ks_test(counts, hist.counts)


def _class_counts(predicted: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Window and reference counts over the same classes (indices past the reference's add bins)."""
    k = max(reference.size, int(predicted.max()) + 1)
    window = np.bincount(predicted, minlength=k)
    ref = np.zeros(k, dtype=np.int64)
    ref[: reference.size] = reference
    return window, ref
