"""The drift detectors against scipy / numpy computed on the same data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import ks_2samp

from fleetserve.drift import detectors as d
from fleetserve.drift.profile import histogram


def test_bin_counts_follow_the_convention() -> None:
    edges = np.array([0.0, 1.0, 2.0])
    values = np.array([-5.0, -0.0001, 0.0, 0.5, 1.0, 1.9999, 2.0, 7.0])
    # below 0 | [0, 1) | [1, 2) | 2 and above
    assert d.bin_counts(values, edges).tolist() == [2, 2, 2, 2]
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000)
    inner = np.linspace(-1, 1, 9)
    counts = d.bin_counts(x, inner)
    reference, _ = np.histogram(x[(x >= -1) & (x < 1)], bins=inner)
    assert counts[1:-1].tolist() == reference.tolist()
    assert counts[0] == np.sum(x < -1) and counts[-1] == np.sum(x >= 1)
    with pytest.raises(ValueError, match="at least one edge"):
        d.bin_counts(x, np.array([]))


def test_psi_is_the_symmetric_kl_of_floored_shares() -> None:
    rng = np.random.default_rng(1)
    expected = rng.integers(0, 50, 12)
    actual = rng.integers(0, 50, 12)
    expected[3] = 0  # an empty bin on each side: the floor keeps PSI finite
    actual[7] = 0
    eps = 1e-3
    e = np.maximum(expected / expected.sum(), eps)
    a = np.maximum(actual / actual.sum(), eps)
    want = float(np.sum(rel_entr(a, e) + rel_entr(e, a)))
    assert d.psi(expected, actual, eps) == pytest.approx(want, rel=1e-12)
    assert d.psi(expected, expected) == 0.0
    # a smaller floor makes the empty bins weigh more
    assert d.psi(expected, actual, 1e-6) > d.psi(expected, actual, 1e-3)


def test_psi_rejects_mismatched_or_empty_histograms() -> None:
    with pytest.raises(ValueError, match="differ in bins"):
        d.psi(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="positive total"):
        d.psi(np.zeros(3), np.ones(3))


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_ks_matches_scipy_on_the_binned_samples(shift: float) -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(size=1167)
    window = rng.normal(loc=shift, size=300)
    edges = np.asarray(histogram(reference, bins=10)["edges"])
    result = d.ks_test(d.bin_counts(window, edges), d.bin_counts(reference, edges))
    # the same samples, each value replaced by its bin: scipy's two-sample KS
    binned = ks_2samp(
        np.searchsorted(edges, window, side="right"),
        np.searchsorted(edges, reference, side="right"),
        method="asymp",
    )
    assert result.statistic == pytest.approx(binned.statistic, abs=1e-12)
    assert result.pvalue == pytest.approx(binned.pvalue, rel=1e-9, abs=1e-300)


def test_ks_with_fine_bins_approaches_the_raw_statistic() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(size=2000)
    window = rng.normal(loc=0.4, size=400)
    edges = np.asarray(histogram(reference, bins=500)["edges"])
    result = d.ks_test(d.bin_counts(window, edges), d.bin_counts(reference, edges))
    raw = ks_2samp(window, reference, method="asymp")
    assert abs(result.statistic - raw.statistic) < 0.01
    assert result.statistic <= raw.statistic + 1e-12  # binning can only hide gaps


def test_ks_of_a_sample_against_itself_is_zero() -> None:
    counts = np.array([0, 5, 9, 3, 0])
    result = d.ks_test(counts, counts * 4)
    assert result.statistic == 0.0 and result.pvalue == 1.0
    with pytest.raises(ValueError, match="at least one value"):
        d.ks_test(np.zeros(5), counts)


def test_jensen_shannon_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    p = rng.integers(0, 40, 10)
    q = rng.integers(0, 40, 10)
    q[2] = 0
    want = jensenshannon(p / p.sum(), q / q.sum(), base=2) ** 2
    assert d.jensen_shannon(p, q) == pytest.approx(want, rel=1e-9)
    assert d.jensen_shannon(p, p) == pytest.approx(0.0, abs=1e-15)
    assert d.jensen_shannon(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)


def test_confidence_drop_is_the_difference_of_means() -> None:
    rng = np.random.default_rng(5)
    window = rng.uniform(0.3, 1.0, 250)
    assert d.confidence_drop(0.97, window) == pytest.approx(0.97 - float(np.mean(window)), abs=1e-15)
    assert d.confidence_drop(0.5, np.array([0.9, 0.7])) == pytest.approx(-0.3)
    with pytest.raises(ValueError, match="no confidences"):
        d.confidence_drop(0.9, np.array([]))
