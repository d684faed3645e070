"""Pure statistics of the benchmark: percentiles, rates, CPU share, served/raw ratio.

No I/O, no clock: every function takes the numbers it needs, so that the unit tests pin the
arithmetic down exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(values: Iterable[float], q: float) -> float:
    """Return the ``q``-th percentile (0..100) of ``values`` with linear interpolation.

    Same definition as ``numpy.percentile(values, q)`` (method "linear"): the value at rank
    ``q / 100 * (n - 1)`` of the sorted values, interpolated between its two neighbours.
    Raises ``ValueError`` on an empty input or a ``q`` outside 0..100.
    """
    if not 0.0 <= q <= 100.0 or math.isnan(q):
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of an empty sequence")
    rank = q / 100.0 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    fraction = rank - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def rate(count: int, seconds: float) -> float:
    """Return ``count / seconds`` (events per second); 0.0 when ``seconds`` is not positive."""
    if seconds <= 0.0:
        return 0.0
    return count / seconds


def cpu_percent(cpu_seconds: float, wall_seconds: float) -> float:
    """Return CPU time as a percentage of wall time (100 = one core fully busy)."""
    if wall_seconds <= 0.0:
        return 0.0
    return 100.0 * cpu_seconds / wall_seconds


def ratio(served: float, raw: float | None) -> float | None:
    """Return ``served / raw``, or ``None`` when there is no positive raw rate to compare with."""
    if raw is None or raw <= 0.0 or math.isnan(raw):
        return None
    return served / raw


@dataclass(frozen=True)
class PointStats:
    """The summary of one measured point (a raw run, or one protocol at one concurrency)."""

    requests: int
    errors: int
    seconds: float
    req_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    cpu_percent: float | None

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


def summarize(
    latencies_s: Sequence[float],
    errors: int,
    seconds: float,
    cpu_seconds: float | None = None,
) -> PointStats:
    """Summarize the successful requests' latencies (in seconds) measured over ``seconds``.

    ``req_per_s`` counts successful answers only; errors are reported apart. Percentiles are
    in milliseconds and ``None`` when nothing succeeded. ``cpu_percent`` is ``None`` when
    ``cpu_seconds`` is not given.
    """
    count = len(latencies_s)
    if count:
        p50: float | None = percentile(latencies_s, 50.0) * 1000.0
        p99: float | None = percentile(latencies_s, 99.0) * 1000.0
        mean: float | None = sum(latencies_s) / count * 1000.0
    else:
        p50 = p99 = mean = None
    return PointStats(
        requests=count,
        errors=errors,
        seconds=seconds,
        req_per_s=rate(count, seconds),
        p50_ms=p50,
        p99_ms=p99,
        mean_ms=mean,
        cpu_percent=None if cpu_seconds is None else cpu_percent(cpu_seconds, seconds),
    )


def in_window(ends: Sequence[float], start: float, stop: float) -> list[int]:
    """Return the indices of the events whose end time lies in ``[start, stop]``."""
    return [i for i, end in enumerate(ends) if start <= end <= stop]
