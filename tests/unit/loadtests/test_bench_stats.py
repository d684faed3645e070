"""Unit tests of the benchmark's pure statistics helpers (loadtests/stats.py)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[3]
if str(PROJECT_ROOT) not in sys.path:  # loadtests/ is a folder of the project, not an installed package
    sys.path.insert(0, str(PROJECT_ROOT))

from loadtests.stats import (  # noqa: E402
    PointStats,
    cpu_percent,
    in_window,
    percentile,
    rate,
    ratio,
    summarize,
)


@pytest.mark.parametrize("q", [0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 100.0])
@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 1000])
def test_percentile_matches_numpy_linear(q: float, n: int) -> None:
    values = np.random.default_rng(n).exponential(0.01, size=n).tolist()
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12, abs=1e-15)


def test_percentile_interpolates_and_ignores_order() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50.0) == 2.5
    assert percentile([10.0, 20.0], 25.0) == 12.5
    assert percentile([7.0], 99.0) == 7.0
    assert percentile(iter([3.0, 1.0, 2.0]), 100.0) == 3.0
    assert percentile([3.0, 1.0, 2.0], 0.0) == 1.0


def test_percentile_p99_of_100_values_is_near_the_top() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 99.0) == pytest.approx(99.01)
    assert percentile(values, 50.0) == pytest.approx(50.5)


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50.0)
    for q in (-0.1, 100.1, math.nan):
        with pytest.raises(ValueError):
            percentile([1.0], q)


def test_rate() -> None:
    assert rate(100, 4.0) == 25.0
    assert rate(0, 2.0) == 0.0
    assert rate(10, 0.0) == 0.0
    assert rate(10, -1.0) == 0.0


def test_cpu_percent() -> None:
    assert cpu_percent(0.5, 1.0) == 50.0
    assert cpu_percent(3.0, 2.0) == 150.0  # more than one core busy
    assert cpu_percent(1.0, 0.0) == 0.0


def test_ratio() -> None:
    assert ratio(50.0, 100.0) == 0.5
    assert ratio(120.0, 100.0) == 1.2
    assert ratio(10.0, None) is None
    assert ratio(10.0, 0.0) is None
    assert ratio(10.0, math.nan) is None


def test_summarize_converts_to_milliseconds() -> None:
    latencies = [0.001, 0.002, 0.003, 0.004]
    point = summarize(latencies, errors=2, seconds=2.0, cpu_seconds=0.5)
    assert point == PointStats(
        requests=4,
        errors=2,
        seconds=2.0,
        req_per_s=2.0,
        p50_ms=pytest.approx(2.5),
        p99_ms=pytest.approx(3.97),
        mean_ms=pytest.approx(2.5),
        cpu_percent=25.0,
    )
    assert point.as_dict()["req_per_s"] == 2.0


def test_summarize_errors_are_not_answers() -> None:
    point = summarize([], errors=7, seconds=1.0)
    assert point.requests == 0
    assert point.req_per_s == 0.0
    assert point.errors == 7
    assert point.p50_ms is None and point.p99_ms is None and point.mean_ms is None
    assert point.cpu_percent is None


def test_in_window_is_inclusive() -> None:
    ends = [0.5, 1.0, 1.5, 2.0, 2.5]
    assert in_window(ends, 1.0, 2.0) == [1, 2, 3]
    assert in_window(ends, 3.0, 4.0) == []
    assert in_window([], 0.0, 1.0) == []
