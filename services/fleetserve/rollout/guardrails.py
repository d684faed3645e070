"""Guardrails of a progressive rollout: the PromQL that reads the evidence (CONTRACT.md metric
names) and pure checks that judge it against thresholds.

Each check answers a `GuardrailResult`: `pass`, `breach` (roll back), `insufficient` (not
enough data yet: hold) or `skipped` (nothing to judge against, e.g. no drift score published).
`ok` is False only on a breach.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["pass", "breach", "insufficient", "skipped"]

ERROR_RATE = "error_rate"
LATENCY = "latency_p99"
AGREEMENT = "shadow_agreement"
DRIFT = "drift"
ACCURACY = "accuracy"


class Thresholds(BaseModel):
    """Limits a candidate must stay within (defaults suit a CPU vision model)."""

    # The canary's error rate breaches only when it exceeds production's by more than the
    # absolute margin AND by more than the ratio: the margin keeps noise at low rates from
    # tripping, the ratio gives proportional tolerance where production errs often.
    max_error_rate_excess: float = Field(default=0.01, ge=0)
    max_error_rate_ratio: float = Field(default=2.0, ge=1)
    # The canary's p99 may reach ratio x production's p99; below the floor it is never judged slow.
    max_latency_ratio: float = Field(default=1.5, ge=1)
    latency_floor_s: float = Field(default=0.005, ge=0)
    latency_quantile: float = Field(default=0.99, gt=0, lt=1)
    min_shadow_agreement: float = Field(default=0.95, ge=0, le=1)
    # canary requests (and production requests for a baseline) needed before judging
    min_requests: int = Field(default=50, ge=0)
    # live accuracy (labels from the feedback API, in the quality monitor's window): judged only
    # when both the canary and production have this many labelled items, else skipped
    min_labelled: int = Field(default=50, ge=1)
    max_accuracy_drop: float = Field(default=0.02, ge=0, le=1)


class GuardrailResult(BaseModel):
    """The verdict of one check, with the values it compared."""

    name: str
    status: Status
    ok: bool
    values: dict[str, float] = Field(default_factory=dict)
    message: str


def _result(name: str, status: Status, message: str, **values: float | None) -> GuardrailResult:
    kept = {k: float(v) for k, v in values.items() if v is not None}
    return GuardrailResult(name=name, status=status, ok=status != "breach", values=kept, message=message)


# --- PromQL ----------------------------------------------------------------------------------


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _selector(**labels: str | None) -> str:
    parts = []
    for key, value in labels.items():
        if value is None:
            continue
        op = "="
        if key == "code_not":
            key, op = "code", "!="
        parts.append(f"{key}{op}{_quote(value)}")
    return "{" + ",".join(parts) + "}"


def _window(seconds: float) -> str:
    return f"[{max(1, round(seconds))}s]"


def requests_query(model: str, version: int | None, route: str, window_s: float, errors: bool = False) -> str:
    """Requests answered on `route` by `version` (any version when None) over the window."""
    sel = _selector(
        model=model,
        version=None if version is None else str(version),
        route=route,
        code_not="ok" if errors else None,
    )
    return f"sum(increase(fleetserve_requests_total{sel}{_window(window_s)}))"


def latency_query(model: str, version: int | None, window_s: float, quantile: float = 0.99) -> str:
    """The latency quantile of a version (any version when None) over the window, in seconds."""
    sel = _selector(model=model, version=None if version is None else str(version))
    return (
        f"histogram_quantile({quantile}, sum by (le) "
        f"(rate(fleetserve_request_duration_seconds_bucket{sel}{_window(window_s)})))"
    )


def shadow_query(model: str, version: int, window_s: float, agree: bool | None = None) -> str:
    """Shadow comparisons of a version with the primary over the window (only agreeing ones if asked)."""
    sel = _selector(model=model, version=str(version), agree=None if agree is None else str(agree).lower())
    return f"sum(increase(fleetserve_shadow_compared_total{sel}{_window(window_s)}))"


def drift_query(model: str, version: int) -> str:
    """Whether the drift monitor's alert is raised for a version (its alert gauge, 0 or 1).

    The monitor owns what drift means (per-test thresholds on PSI, KS, Jensen-Shannon and the
    confidence drop, sustained over evaluations); the raw scores of different tests are on
    different scales, so their maximum is no verdict."""
    return f"max(fleetserve_drift_alert{_selector(model=model, version=str(version))})"


def quality_query(metric: str, model: str, version: int) -> str:
    """A gauge of the quality monitor for a version, e.g. `accuracy` or `labelled_items`."""
    return f"max(fleetserve_quality_{metric}{_selector(model=model, version=str(version))})"


# --- checks ----------------------------------------------------------------------------------


def check_error_rate(
    canary_requests: float | None,
    canary_errors: float | None,
    production_requests: float | None,
    production_errors: float | None,
    t: Thresholds,
) -> GuardrailResult:
    """Canary error rate against production's (production taken as 0 without enough requests)."""
    n = canary_requests or 0.0
    if n < max(1, t.min_requests):
        return _result(
            ERROR_RATE,
            "insufficient",
            f"{n:.0f} canary requests, {t.min_requests} needed",
            canary_requests=n,
        )
    rate = min(1.0, (canary_errors or 0.0) / n)
    p_n = production_requests or 0.0
    baseline = p_n >= max(1, t.min_requests)
    p_rate = min(1.0, (production_errors or 0.0) / p_n) if baseline else 0.0
    allowed = max(p_rate + t.max_error_rate_excess, p_rate * t.max_error_rate_ratio)
    values = {
        "canary_error_rate": rate,
        "production_error_rate": p_rate,
        "allowed_error_rate": allowed,
        "canary_requests": n,
        "production_requests": p_n,
    }
    against = f"production {p_rate:.4f}" if baseline else "no production baseline, taken as 0"
    if rate > allowed:
        return _result(
            ERROR_RATE,
            "breach",
            f"canary error rate {rate:.4f} > allowed {allowed:.4f} ({against})",
            **values,
        )
    return _result(
        ERROR_RATE, "pass", f"canary error rate {rate:.4f} <= allowed {allowed:.4f} ({against})", **values
    )


def check_latency(
    canary_requests: float | None,
    canary_p99: float | None,
    production_p99: float | None,
    t: Thresholds,
) -> GuardrailResult:
    """Canary latency quantile against production's, never judged below the floor."""
    n = canary_requests or 0.0
    if n < max(1, t.min_requests) or canary_p99 is None:
        return _result(
            LATENCY, "insufficient", f"{n:.0f} canary requests, {t.min_requests} needed", canary_requests=n
        )
    if production_p99 is None:
        return _result(
            LATENCY,
            "skipped",
            f"no production latency to compare with (canary p99 {canary_p99 * 1e3:.1f} ms)",
            canary_p99_s=canary_p99,
        )
    allowed = max(production_p99 * t.max_latency_ratio, t.latency_floor_s)
    values = {"canary_p99_s": canary_p99, "production_p99_s": production_p99, "allowed_p99_s": allowed}
    text = (
        f"canary p99 {canary_p99 * 1e3:.1f} ms vs production {production_p99 * 1e3:.1f} ms "
        f"(allowed {allowed * 1e3:.1f} ms)"
    )
    return _result(LATENCY, "breach" if canary_p99 > allowed else "pass", text, **values)


def check_agreement(
    compared: float | None, agreed: float | None, min_compared: float, t: Thresholds
) -> GuardrailResult:
    """Share of shadow comparisons that agreed with the primary (same top-1 class)."""
    n = compared or 0.0
    if n <= 0 and min_compared <= 0:
        return _result(AGREEMENT, "skipped", "no shadow comparisons and none required", compared=n)
    if n < max(1.0, min_compared):
        return _result(
            AGREEMENT, "insufficient", f"{n:.0f} shadow comparisons, {min_compared:.0f} needed", compared=n
        )
    share = min(1.0, (agreed or 0.0) / n)
    values = {"agreement": share, "min_agreement": t.min_shadow_agreement, "compared": n}
    text = f"shadow agreement {share:.4f} over {n:.0f} comparisons (min {t.min_shadow_agreement:.4f})"
    return _result(AGREEMENT, "breach" if share < t.min_shadow_agreement else "pass", text, **values)


def check_drift(alert: float | None, t: Thresholds) -> GuardrailResult:
    """The drift monitor's alert for the version, when it publishes one (breach when raised)."""
    if alert is None:
        return _result(DRIFT, "skipped", "no drift alert published for this version")
    raised = alert >= 1.0
    text = "the drift monitor's alert is raised" if raised else "no drift alert"
    return _result(DRIFT, "breach" if raised else "pass", text, drift_alert=alert)


def check_accuracy(
    canary_accuracy: float | None,
    canary_labelled: float | None,
    production_accuracy: float | None,
    production_labelled: float | None,
    t: Thresholds,
) -> GuardrailResult:
    """Canary accuracy on labelled items against production's; skipped (never held on) while
    either has fewer than `min_labelled` labelled items, as labels may never come."""
    n, p_n = canary_labelled or 0.0, production_labelled or 0.0
    if n < t.min_labelled or canary_accuracy is None:
        return _result(
            ACCURACY,
            "skipped",
            f"{n:.0f} labelled canary items, {t.min_labelled} needed to judge accuracy",
            canary_labelled=n,
        )
    if p_n < t.min_labelled or production_accuracy is None:
        return _result(
            ACCURACY,
            "skipped",
            f"{p_n:.0f} labelled production items, {t.min_labelled} needed to compare accuracy",
            canary_accuracy=canary_accuracy,
            canary_labelled=n,
            production_labelled=p_n,
        )
    drop = production_accuracy - canary_accuracy
    values = {
        "canary_accuracy": canary_accuracy,
        "production_accuracy": production_accuracy,
        "accuracy_drop": drop,
        "max_accuracy_drop": t.max_accuracy_drop,
        "canary_labelled": n,
        "production_labelled": p_n,
    }
    text = (
        f"canary accuracy {canary_accuracy:.4f} vs production {production_accuracy:.4f} "
        f"over {n:.0f} / {p_n:.0f} labelled items (max drop {t.max_accuracy_drop:.4f})"
    )
    return _result(ACCURACY, "breach" if drop > t.max_accuracy_drop else "pass", text, **values)


def first_breach(results: list[GuardrailResult]) -> GuardrailResult | None:
    """The first breached check, if any."""
    return next((r for r in results if r.status == "breach"), None)


def all_judged(results: list[GuardrailResult]) -> bool:
    """True when no check is still waiting for data."""
    return all(r.status != "insufficient" for r in results)
