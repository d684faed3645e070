"""Reading a candidate's evidence from a `MetricsSource` and judging it with the guardrails.

`MetricsUnavailable` from the source propagates: the caller decides what "cannot read" means
(the controller holds, then rolls back; it never promotes on missing evidence).
"""

from __future__ import annotations

import asyncio

from . import guardrails as g
from .metrics_source import MetricsSource, MetricsUnavailable


async def _query_all(source: MetricsSource, queries: list[str]) -> list[float | None]:
    answers = await asyncio.gather(*(source.query(q) for q in queries), return_exceptions=True)
    values: list[float | None] = []
    for answer in answers:
        if isinstance(answer, MetricsUnavailable):
            raise answer
        if isinstance(answer, BaseException):
            raise MetricsUnavailable(f"metrics query failed: {answer!r}") from answer
        values.append(answer)
    return values


async def judge_shadow(
    source: MetricsSource,
    model: str,
    version: int,
    window_s: float,
    min_compared: float,
    t: g.Thresholds,
) -> tuple[float, list[g.GuardrailResult]]:
    """Shadow comparisons over the window, and the agreement and drift verdicts."""
    compared, agreed, drift = await _query_all(
        source,
        [
            g.shadow_query(model, version, window_s),
            g.shadow_query(model, version, window_s, agree=True),
            g.drift_query(model, version),
        ],
    )
    results = [g.check_agreement(compared, agreed, min_compared, t), g.check_drift(drift, t)]
    return compared or 0.0, results


async def judge_canary(
    source: MetricsSource,
    model: str,
    canary: int,
    production: int | None,
    window_s: float,
    baseline_window_s: float,
    t: g.Thresholds,
) -> list[g.GuardrailResult]:
    """Error rate, latency and live accuracy (where labels exist) of the canary against
    production's, and the canary's drift.

    Production's figures are read over the longer baseline window: at high canary weights
    (100 %) production gets little or no traffic of its own. Accuracy is the quality
    monitor's, over its own window of labelled items.
    """
    baseline = max(window_s, baseline_window_s)
    c_n, c_err, p_n, p_err, c_p99, p_p99, drift = await _query_all(
        source,
        [
            g.requests_query(model, canary, "canary", window_s),
            g.requests_query(model, canary, "canary", window_s, errors=True),
            g.requests_query(model, production, "production", baseline),
            g.requests_query(model, production, "production", baseline, errors=True),
            g.latency_query(model, canary, window_s, t.latency_quantile),
            g.latency_query(model, production, baseline, t.latency_quantile),
            g.drift_query(model, canary),
        ],
    )
    results = [
        g.check_error_rate(c_n, c_err, p_n, p_err, t),
        g.check_latency(c_n, c_p99, p_p99, t),
        g.check_drift(drift, t),
    ]
    return [*results, await judge_accuracy(source, model, canary, production, t)]


async def judge_accuracy(
    source: MetricsSource, model: str, canary: int, production: int | None, t: g.Thresholds
) -> g.GuardrailResult:
    """Canary vs production accuracy from the quality monitor (skipped without enough labels)."""
    versions = [canary] if production is None else [canary, production]
    queries = [g.quality_query(m, model, v) for v in versions for m in ("accuracy", "labelled_items")]
    values = await _query_all(source, queries)
    c_acc, c_n = values[0], values[1]
    p_acc, p_n = (values[2], values[3]) if production is not None else (None, None)
    return g.check_accuracy(c_acc, c_n, p_acc, p_n, t)
