"""Drift detectors: pure functions of a window of values and a reference histogram.

Histograms follow one convention (see `profile.histogram`): ascending `edges` (at least one)
and `counts` with one more entry than edges; bin 0 holds values below `edges[0]`, bin i values
in `[edges[i-1], edges[i])`, the last bin values at or above `edges[-1]`. Every value lands in
a bin, so a window far outside the reference still has a distribution to compare.

- `psi`: population stability index, sum over bins of (a - e) * ln(a / e) of the window's
  (a) and the reference's (e) proportions, each floored at `eps` so empty bins stay finite.
- `ks_test`: two-sample Kolmogorov-Smirnov of the window against the reference histogram,
  both binned alike: the largest gap between their cumulative proportions at the bin edges,
  and the two-sided p-value of Smirnov's distribution with n = n1 * n2 / (n1 + n2), as scipy's
  `ks_2samp(..., method="asymp")` gives for the binned samples.
- `jensen_shannon`: Jensen-Shannon divergence (base 2: 0 = same, 1 = disjoint) of two class
  distributions given as counts.
- `confidence_drop`: the reference's mean confidence minus the window's (positive: lower).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import kstwo

FloatArray = np.ndarray
DEFAULT_EPS = 1e-3


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """How many values fall in each bin of `edges` (len(edges) + 1 bins, module docstring)."""
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size == 0:
        raise ValueError("a histogram needs at least one edge")
    index = np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="right")
    return np.bincount(index, minlength=edges.size + 1).astype(np.int64)


def proportions(counts: np.ndarray) -> FloatArray:
    """Counts as shares of their total (ValueError when the total is not positive)."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    if not total > 0:
        raise ValueError("a distribution needs a positive total count")
    return c / total


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = DEFAULT_EPS) -> float:
    """Population stability index of `actual` counts against `expected` counts, bin by bin."""
    e, a = _pair(expected, actual)
    e, a = np.maximum(e, eps), np.maximum(a, eps)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True, slots=True)
class KSResult:
    """A two-sample Kolmogorov-Smirnov statistic and its two-sided p-value."""

    statistic: float
    pvalue: float


def ks_statistic(window_counts: np.ndarray, reference_counts: np.ndarray) -> float:
    """The Kolmogorov-Smirnov statistic of two samples binned alike (counts per bin, same bins)."""
    w = np.asarray(window_counts, dtype=np.float64)
    r = np.asarray(reference_counts, dtype=np.float64)
    if w.shape != r.shape:
        raise ValueError(f"histograms differ in bins: {w.shape} and {r.shape}")
    n1, n2 = w.sum(), r.sum()
    if not (n1 > 0 and n2 > 0):
        raise ValueError("both samples need at least one value")
    gap = np.abs(np.cumsum(w) / n1 - np.cumsum(r) / n2)
    return float(np.clip(gap.max(), 0.0, 1.0))


def ks_pvalue(statistic: float, n1: int, n2: int) -> float:
    """The two-sided p-value of a two-sample KS statistic (Smirnov, n = n1 * n2 / (n1 + n2)).

    About a millisecond of scipy: the monitor computes it for export, not for every window.
    """
    big, small = float(max(n1, n2)), float(min(n1, n2))
    en = big * small / (big + small)
    return float(np.clip(kstwo.sf(statistic, np.round(en)), 0.0, 1.0))


def ks_test(window_counts: np.ndarray, reference_counts: np.ndarray) -> KSResult:
    """Kolmogorov-Smirnov of two samples binned alike: the statistic and its p-value."""
    d = ks_statistic(window_counts, reference_counts)
    n1, n2 = int(np.sum(window_counts)), int(np.sum(reference_counts))
    return KSResult(d, ks_pvalue(d, n1, n2))


def jensen_shannon(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two distributions given as counts."""
    p, q = _pair(p_counts, q_counts)
    m = (p + q) / 2

    def kl(x: FloatArray) -> float:
        inside = x > 0
        return float(np.sum(x[inside] * np.log2(x[inside] / m[inside])))

    return float(np.clip((kl(p) + kl(q)) / 2, 0.0, 1.0))


def confidence_drop(reference_mean: float, confidences: np.ndarray) -> float:
    """How much lower the window's mean confidence is than the reference's (negative: higher)."""
    c = np.asarray(confidences, dtype=np.float64)
    if c.size == 0:
        raise ValueError("no confidences in the window")
    return float(reference_mean - c.mean())


def _pair(first: np.ndarray, second: np.ndarray) -> tuple[FloatArray, FloatArray]:
    a, b = np.asarray(first), np.asarray(second)
    if a.shape != b.shape:
        raise ValueError(f"distributions differ in bins: {a.shape} and {b.shape}")
    return proportions(a), proportions(b)
