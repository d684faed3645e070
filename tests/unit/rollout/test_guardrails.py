"""Guardrail checks (pure), their thresholds and "not enough data", and the PromQL they read."""

from __future__ import annotations

import math

import pytest

from fleetserve.rollout import guardrails as g
from fleetserve.rollout.metrics_source import MetricsUnavailable, sum_result

T = g.Thresholds()


# --- error rate ------------------------------------------------------------------------------


def test_error_rate_passes_within_the_margin() -> None:
    r = g.check_error_rate(1000, 15, 10_000, 100, T)  # 1.5 % vs 1 %: under 1 % + 1 %
    assert r.status == "pass" and r.ok
    assert r.values["canary_error_rate"] == pytest.approx(0.015)
    assert r.values["production_error_rate"] == pytest.approx(0.01)
    assert r.values["allowed_error_rate"] == pytest.approx(0.02)


def test_error_rate_breaches_over_absolute_and_relative_margin() -> None:
    r = g.check_error_rate(1000, 50, 10_000, 100, T)  # 5 % vs 1 %
    assert r.status == "breach" and not r.ok
    assert r.name == g.ERROR_RATE
    assert "0.0500" in r.message and "0.0200" in r.message


def test_error_rate_ratio_tolerates_a_noisy_production() -> None:
    # production errs 20 %: the canary at 35 % is within 2x, though 15 points over
    assert g.check_error_rate(1000, 350, 10_000, 2000, T).status == "pass"
    assert g.check_error_rate(1000, 450, 10_000, 2000, T).status == "breach"


def test_error_rate_without_production_baseline_compares_with_zero() -> None:
    ok = g.check_error_rate(1000, 5, 3, 0, T)
    bad = g.check_error_rate(1000, 20, None, None, T)
    assert ok.status == "pass" and "no production baseline" in ok.message
    assert bad.status == "breach" and bad.values["production_error_rate"] == 0.0


@pytest.mark.parametrize("n", [None, 0, 49])
def test_error_rate_needs_min_requests(n: float | None) -> None:
    r = g.check_error_rate(n, 40, 10_000, 0, T)
    assert r.status == "insufficient" and r.ok
    assert "50 needed" in r.message


def test_error_rate_thresholds_are_configurable() -> None:
    strict = g.Thresholds(max_error_rate_excess=0.001, max_error_rate_ratio=1.0, min_requests=10)
    assert g.check_error_rate(100, 1, 100, 0, strict).status == "breach"
    assert g.check_error_rate(9, 9, 100, 0, strict).status == "insufficient"


# --- latency ---------------------------------------------------------------------------------


def test_latency_passes_and_breaches_on_ratio() -> None:
    assert g.check_latency(500, 0.014, 0.010, T).status == "pass"
    r = g.check_latency(500, 0.016, 0.010, T)
    assert r.status == "breach" and r.name == g.LATENCY
    assert r.values == {
        "canary_p99_s": 0.016,
        "production_p99_s": 0.010,
        "allowed_p99_s": pytest.approx(0.015),
    }


def test_latency_floor_forgives_fast_models() -> None:
    # 4x slower, but under the 5 ms floor
    assert g.check_latency(500, 0.004, 0.001, T).status == "pass"
    assert g.check_latency(500, 0.006, 0.001, T).status == "breach"


def test_latency_insufficient_and_skipped() -> None:
    assert g.check_latency(10, 0.5, 0.01, T).status == "insufficient"
    assert g.check_latency(500, None, 0.01, T).status == "insufficient"
    skipped = g.check_latency(500, 0.5, None, T)
    assert skipped.status == "skipped" and skipped.ok


# --- agreement and drift ---------------------------------------------------------------------


def test_agreement() -> None:
    ok = g.check_agreement(200, 195, 100, T)
    bad = g.check_agreement(200, 180, 100, T)
    assert ok.status == "pass" and ok.values["agreement"] == pytest.approx(0.975)
    assert bad.status == "breach" and bad.values["agreement"] == pytest.approx(0.9)
    assert bad.values["min_agreement"] == 0.95 and bad.values["compared"] == 200


def test_agreement_insufficient_until_min_comparisons() -> None:
    assert g.check_agreement(99, 0, 100, T).status == "insufficient"
    assert g.check_agreement(None, None, 100, T).status == "insufficient"
    assert g.check_agreement(0, 0, 0, T).status == "skipped"
    assert g.check_agreement(5, 0, 0, T).status == "breach"  # none required, but what came disagrees


def test_drift() -> None:
    assert g.check_drift(None, T).status == "skipped"
    assert g.check_drift(0.0, T).status == "pass"
    r = g.check_drift(1.0, T)
    assert r.status == "breach" and r.values == {"drift_alert": 1.0} and "alert is raised" in r.message


def test_accuracy_passes_within_the_allowed_drop_and_breaches_beyond() -> None:
    ok = g.check_accuracy(0.955, 100, 0.97, 1000, T)  # 1.5 points down: within 2
    bad = g.check_accuracy(0.94, 100, 0.97, 1000, T)
    assert ok.status == "pass" and ok.ok
    assert ok.values["accuracy_drop"] == pytest.approx(0.015)
    assert bad.status == "breach" and not bad.ok and bad.name == g.ACCURACY
    assert bad.values == {
        "canary_accuracy": 0.94,
        "production_accuracy": 0.97,
        "accuracy_drop": pytest.approx(0.03),
        "max_accuracy_drop": 0.02,
        "canary_labelled": 100,
        "production_labelled": 1000,
    }
    assert "0.9400" in bad.message and "0.9700" in bad.message
    assert g.check_accuracy(0.99, 100, 0.97, 1000, T).status == "pass"  # better is fine


@pytest.mark.parametrize(
    ("c_acc", "c_n", "p_acc", "p_n", "needed"),
    [
        (None, None, None, None, "0 labelled canary items, 50 needed"),
        (0.1, 49, 0.97, 1000, "49 labelled canary items, 50 needed"),
        (None, 500, 0.97, 1000, "500 labelled canary items, 50 needed"),
        (0.1, 100, 0.97, 10, "10 labelled production items, 50 needed"),
        (0.1, 100, None, None, "0 labelled production items, 50 needed"),
    ],
)
def test_accuracy_is_skipped_without_enough_labels(
    c_acc: float | None, c_n: float | None, p_acc: float | None, p_n: float | None, needed: str
) -> None:
    r = g.check_accuracy(c_acc, c_n, p_acc, p_n, T)
    # skipped, not insufficient: a rollout whose traffic gets no labels proceeds as before
    assert r.status == "skipped" and r.ok and needed in r.message
    assert g.all_judged([r])


def test_accuracy_thresholds_are_configurable() -> None:
    strict = g.Thresholds(min_labelled=5, max_accuracy_drop=0.0)
    assert g.check_accuracy(0.96, 5, 0.97, 5, strict).status == "breach"
    assert g.check_accuracy(0.97, 5, 0.97, 5, strict).status == "pass"
    assert g.check_accuracy(0.5, 4, 0.97, 5, strict).status == "skipped"


def test_quality_queries() -> None:
    assert g.quality_query("accuracy", "digits", 2) == (
        'max(fleetserve_quality_accuracy{model="digits",version="2"})'
    )
    assert g.quality_query("labelled_items", "m", 1) == (
        'max(fleetserve_quality_labelled_items{model="m",version="1"})'
    )


def test_first_breach_and_all_judged() -> None:
    results = [g.check_drift(None, T), g.check_latency(1, 1, 1, T), g.check_drift(1.0, T)]
    breach = g.first_breach(results)
    assert breach is not None and breach.name == g.DRIFT
    assert not g.all_judged(results)
    assert g.all_judged([g.check_drift(0.0, T)])


# --- PromQL ----------------------------------------------------------------------------------


def test_requests_query() -> None:
    assert g.requests_query("digits", 2, "canary", 60) == (
        'sum(increase(fleetserve_requests_total{model="digits",version="2",route="canary"}[60s]))'
    )
    assert g.requests_query("digits", None, "production", 600.4, errors=True) == (
        'sum(increase(fleetserve_requests_total{model="digits",route="production",code!="ok"}[600s]))'
    )


def test_latency_shadow_and_drift_queries() -> None:
    assert g.latency_query("m", 3, 30) == (
        "histogram_quantile(0.99, sum by (le) "
        '(rate(fleetserve_request_duration_seconds_bucket{model="m",version="3"}[30s])))'
    )
    assert g.shadow_query("m", 3, 120, agree=True) == (
        'sum(increase(fleetserve_shadow_compared_total{model="m",version="3",agree="true"}[120s]))'
    )
    assert g.drift_query("m", 3) == 'max(fleetserve_drift_alert{model="m",version="3"})'


def test_label_values_are_escaped() -> None:
    assert 'model="a\\"b\\\\c"' in g.drift_query('a"b\\c', 1)


# --- Prometheus answers ----------------------------------------------------------------------


def test_sum_result_of_vectors_and_scalars() -> None:
    vector = {
        "resultType": "vector",
        "result": [{"metric": {}, "value": [1.0, "2.5"]}, {"value": [1.0, "1"]}],
    }
    assert sum_result(vector) == 3.5
    assert sum_result({"resultType": "vector", "result": []}) is None
    assert sum_result({"resultType": "vector", "result": [{"value": [1, "NaN"]}]}) is None
    assert sum_result({"resultType": "scalar", "result": [1.0, "4"]}) == 4.0
    assert math.isinf(sum_result({"resultType": "vector", "result": [{"value": [1, "+Inf"]}]}) or 0.0)
    with pytest.raises(MetricsUnavailable):
        sum_result({"resultType": "matrix", "result": []})
