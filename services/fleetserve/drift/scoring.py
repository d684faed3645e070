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
    """Every score of a window, what the KS p-values need by feature (statistic, window and
    reference sizes), and the window's size."""

    items: int
    scores: list[Score]
    ks: dict[str, tuple[float, int, int]]

    def ks_pvalues(self) -> dict[str, float]:
        """The KS p-value of each feature (computed now: about a millisecond each)."""
        return {feature: d.ks_pvalue(*args) for feature, args in self.ks.items()}

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
    ks: dict[str, tuple[float, int, int]] = {}
    for name, hist in sorted(reference.inputs.items()):
        values = cols.inputs.get(name)
        if values is None or values.size == 0:
            continue
        psi, ks[name] = _continuous(values, hist, eps)
        scores += [Score(name, PSI, psi), Score(name, KS, ks[name][0])]
    predicted = cols.predicted[cols.predicted >= 0]
    if predicted.size:
        window, ref = _class_counts(predicted, reference.classes)
        scores.append(Score(CLASS, PSI, d.psi(ref, window, eps)))
        scores.append(Score(CLASS, JS, d.jensen_shannon(ref, window)))
        psi, ks[CONFIDENCE] = _continuous(cols.confidence, reference.confidence, eps)
        drop = d.confidence_drop(reference.mean_confidence, cols.confidence)
        scores.append(Score(CONFIDENCE, PSI, psi))
        scores.append(Score(CONFIDENCE, KS, ks[CONFIDENCE][0]))
        scores.append(Score(CONFIDENCE, DROP, drop))
    return WindowScores(len(items), scores, ks)


def _continuous(values: np.ndarray, hist: Histogram, eps: float) -> tuple[float, tuple[float, int, int]]:
    """PSI, and (KS statistic, window size, reference size), of values against a histogram."""
    counts = d.bin_counts(values, hist.edges)
    ks = (d.ks_statistic(counts, hist.counts), int(counts.sum()), int(hist.counts.sum()))
    return d.psi(hist.counts, counts, eps), ks


def _class_counts(predicted: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Window and reference counts over the same classes (indices past the reference's add bins)."""
    k = max(reference.size, int(predicted.max()) + 1)
    window = np.bincount(predicted, minlength=k)
    ref = np.zeros(k, dtype=np.int64)
    ref[: reference.size] = reference
    return window, ref
