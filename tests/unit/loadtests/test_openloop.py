"""Unit tests of the open-loop generator and the batching benchmark's pure parts:
the Poisson schedule, the "driven" judgement, answer classification, a point's summary, the
generator against a fake call, the per-policy config and the issue's acceptance checks."""

from __future__ import annotations

import asyncio
import itertools
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[3]
if str(PROJECT_ROOT) not in sys.path:  # loadtests/ is a folder of the project, not an installed package
    sys.path.insert(0, str(PROJECT_ROOT))

from loadtests import batching, openloop  # noqa: E402
from loadtests.openloop import ERROR, OK, REJECTED, Record  # noqa: E402

# --------------------------------------------------------------------------------------------
# Schedule


@pytest.mark.parametrize(("rate", "duration"), [(10.0, 8.0), (250.0, 4.0), (3000.0, 2.0)])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_poisson_count_is_rate_times_duration_within_tolerance(
    rate: float, duration: float, seed: int
) -> None:
    schedule = openloop.poisson_schedule(rate, duration, np.random.default_rng(seed))
    expected = rate * duration
    # Poisson count: standard deviation sqrt(expected); 4 sigma is never hit by these seeds.
    assert abs(len(schedule) - expected) <= 4 * math.sqrt(expected)


def test_poisson_schedule_is_increasing_bounded_and_reproducible() -> None:
    schedule = openloop.poisson_schedule(500.0, 3.0, np.random.default_rng(42))
    assert all(b > a for a, b in itertools.pairwise(schedule))
    assert schedule[0] >= 0.0 and schedule[-1] < 3.0
    assert schedule == openloop.poisson_schedule(500.0, 3.0, np.random.default_rng(42))
    assert schedule != openloop.poisson_schedule(500.0, 3.0, np.random.default_rng(43))


def test_poisson_gaps_are_exponential() -> None:
    schedule = openloop.poisson_schedule(1000.0, 20.0, np.random.default_rng(3))
    gaps = np.diff(schedule)
    assert gaps.mean() == pytest.approx(1e-3, rel=0.03)
    assert gaps.std() == pytest.approx(1e-3, rel=0.05)  # exponential: std = mean


def test_poisson_schedule_edges() -> None:
    rng = np.random.default_rng(0)
    assert openloop.poisson_schedule(0.0, 5.0, rng) == []
    assert openloop.poisson_schedule(5.0, 0.0, rng) == []
    assert len(openloop.poisson_schedule(1e6, 10.0, rng, max_arrivals=100)) == 100
    with pytest.raises(ValueError):
        openloop.poisson_schedule(-1.0, 1.0, rng)
    with pytest.raises(ValueError):
        openloop.poisson_schedule(float("nan"), 1.0, rng)


def test_phased_schedule_follows_each_phase() -> None:
    schedule = openloop.phased_schedule([(400.0, 2.0), (100.0, 3.0)], np.random.default_rng(5))
    first = [t for t in schedule if t < 2.0]
    second = [t for t in schedule if t >= 2.0]
    assert abs(len(first) - 800) <= 4 * math.sqrt(800)
    assert abs(len(second) - 300) <= 4 * math.sqrt(300)
    assert all(b > a for a, b in itertools.pairwise(schedule))
    assert schedule[-1] < 5.0


# --------------------------------------------------------------------------------------------
# Driven?


def test_on_time_arrivals_are_driven() -> None:
    drive = openloop.judge_driven([0.001] * 1000, 10.0)
    assert drive.driven and drive.reason == ""
    assert drive.offered_rate == 100.0 and drive.achieved_rate == 100.0
    assert drive.max_lateness_ms == pytest.approx(1.0)


def test_late_arrivals_over_one_percent_are_not_driven() -> None:
    exactly_one_percent = [0.0] * 990 + [0.006] * 10
    assert openloop.judge_driven(exactly_one_percent, 10.0).driven
    two_percent = [0.0] * 980 + [0.006] * 20
    drive = openloop.judge_driven(two_percent, 10.0)
    assert not drive.driven
    assert drive.late_fraction == pytest.approx(0.02)
    assert "late" in drive.reason


def test_tolerance_is_inclusive() -> None:
    assert openloop.judge_driven([openloop.SEND_TOLERANCE_S] * 100, 1.0).driven
    assert not openloop.judge_driven([openloop.SEND_TOLERANCE_S + 1e-4] * 100, 1.0).driven


def test_achieved_below_95_percent_is_not_driven() -> None:
    # 6 % never sent (inf): the late share and the achieved rate both say so.
    drive = openloop.judge_driven([0.0] * 94 + [math.inf] * 6, 1.0)
    assert not drive.driven
    assert drive.achieved_rate == 94.0 and drive.offered_rate == 100.0
    assert "achieved" in drive.reason
    assert drive.max_lateness_ms == 0.0
    # The achieved rule alone: a looser late limit still fails on it.
    drive = openloop.judge_driven([0.0] * 94 + [0.01] * 6, 1.0, max_late_fraction=0.5)
    assert not drive.driven and "achieved" in drive.reason and "late" not in drive.reason


def test_no_arrivals_is_not_driven() -> None:
    drive = openloop.judge_driven([], 5.0)
    assert not drive.driven and drive.reason == "no arrivals"


# --------------------------------------------------------------------------------------------
# Classification


class FakeServerError(Exception):
    """Looks like tritonclient's InferenceServerException: a status() method."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self._status = status

    def status(self) -> str:
        return self._status


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        ("StatusCode.UNAVAILABLE", "model 'm' version 1: the deadline cannot be met", REJECTED),
        ("StatusCode.DEADLINE_EXCEEDED", "model 'm' version 1: deadline passed after 9.9 ms", REJECTED),
        ("503", "unavailable", REJECTED),
        ("StatusCode.INTERNAL", "boom", ERROR),
        ("StatusCode.INVALID_ARGUMENT", "bad shape", ERROR),
        ("StatusCode.UNAVAILABLE", "failed to connect to all addresses", ERROR),
        ("StatusCode.UNAVAILABLE", "Socket closed", ERROR),
    ],
)
def test_classify_exception(status: str, message: str, kind: str) -> None:
    assert openloop.classify_exception(FakeServerError(status, message), 0.01, 2.0)[0] == kind


def test_client_timeout_and_other_failures_are_errors() -> None:
    exc = FakeServerError("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded")
    kind, detail = openloop.classify_exception(exc, 2.0, 2.0)
    assert kind == ERROR and "client timeout" in detail
    assert openloop.classify_exception(TimeoutError(), 0.5, 2.0)[0] == ERROR
    assert openloop.classify_exception(ValueError("output missing"), 0.01, 2.0)[0] == ERROR
    assert openloop.classify_status(None) == ERROR


# --------------------------------------------------------------------------------------------
# A point's summary


def test_summarize_records_window_shares_and_percentiles() -> None:
    records = [Record(0.5, 0.0, 0.6, OK)]  # warm-up arrival: its answer lands in the window
    records += [Record(1.0 + i * 0.01, 0.0, 0.001 * (i + 1), OK) for i in range(90)]
    records += [Record(2.0 + i * 0.01, 0.0, 0.002, REJECTED) for i in range(8)]
    records += [Record(2.5, 0.0, 0.05, ERROR, "boom"), Record(2.6, 0.0, 0.07, REJECTED)]
    summary = openloop.summarize_records(records, 1.0, 3.0)
    assert summary["requests"] == 100 and summary["ok"] == 90
    assert summary["rejected"] == 9 and summary["errors"] == 1
    assert summary["rejected_pct"] == 9.0 and summary["error_pct"] == 1.0
    assert summary["throughput"] == pytest.approx(91 / 2.0)  # the warm-up answer counts
    assert summary["p50_ms"] == pytest.approx(45.5)
    assert summary["max_ok_ms"] == pytest.approx(90.0)
    assert summary["max_rejected_ms"] == pytest.approx(70.0)
    assert summary["rejected_p50_ms"] == pytest.approx(2.0)
    assert summary["first_error"] == "boom"
    assert summary["driven"]


def test_summarize_records_without_answers() -> None:
    summary = openloop.summarize_records([Record(1.5, 0.0, 0.2, REJECTED)], 1.0, 2.0)
    assert summary["p50_ms"] is None and summary["p99_ms"] is None and summary["max_ok_ms"] is None
    assert summary["throughput"] == 0.0 and summary["rejected_pct"] == 100.0


def test_summarize_rounds_pools_the_windows_of_a_point_run_in_rounds() -> None:
    first = [Record(1.0 + i * 0.1, 0.0, 0.01, OK) for i in range(10)]  # 10 ok in [1, 2)
    first.append(Record(0.5, 0.0, 0.001, OK))  # warm-up, answered before the window
    second = [Record(1.0 + i * 0.25, 0.0, 0.03, OK) for i in range(4)]  # 4 ok in [1, 2)
    second += [Record(1.1, 0.0, 0.002, REJECTED), Record(2.5, 0.0, 0.001, OK)]  # one after stop
    pooled = openloop.summarize_rounds([(first, 1.0, 2.0), (second, 1.0, 2.0)])
    assert pooled["seconds"] == 2.0 and pooled["requests"] == 15 and pooled["ok"] == 14
    assert pooled["throughput"] == pytest.approx(14 / 2.0)
    assert pooled["rejected_pct"] == pytest.approx(100 / 15)
    assert pooled["max_ok_ms"] == pytest.approx(30.0)
    # each round's seconds count: the same arrivals as one window of 1 s deliver twice the rate
    assert openloop.summarize_records(first + second, 1.0, 2.0)["throughput"] == pytest.approx(14.0)
    alone = openloop.summarize_records(first, 1.0, 2.0)
    assert alone["throughput"] == pytest.approx(10.0) and alone["requests"] == 10


def test_timeline_bins_by_scheduled_time() -> None:
    records = [Record(0.1, 0.0, 0.01, OK), Record(0.5, 0.0, 0.03, REJECTED), Record(1.2, 0.0, 0.02, OK)]
    records.append(Record(2.9, 0.0, 0.5, ERROR))
    bins = openloop.timeline(records, 0.0, 3.0, 1.0)
    assert [b["start"] for b in bins] == [0.0, 1.0, 2.0]
    assert [(b["requests"], b["ok"], b["rejected"]) for b in bins] == [(2, 1, 1), (1, 1, 0), (1, 0, 0)]
    assert bins[0]["rejected_pct"] == 50.0 and bins[0]["p99_ms"] == pytest.approx(10.0)
    assert bins[2]["p99_ms"] is None
    assert openloop.timeline(records, 0.0, 2.5, 1.0)[-1]["requests"] == 0  # a last, shorter bin
    assert openloop.timeline(records, 1.0, 1.0) == []


# --------------------------------------------------------------------------------------------
# The generator, against a fake call


async def test_drive_fires_on_schedule_without_waiting_for_answers() -> None:
    calls = 0
    in_flight = peak = 0

    async def call() -> None:
        nonlocal calls, in_flight, peak
        calls += 1
        mine = calls
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.05)  # slower than the gaps: the generator must not wait
            if mine % 10 == 0:
                raise FakeServerError("StatusCode.UNAVAILABLE", "model 'm': the deadline cannot be met")
        finally:
            in_flight -= 1

    schedule = [i * 0.005 for i in range(40)]  # 40 arrivals over 0.2 s
    started = time.perf_counter()
    records = await openloop.drive(call, schedule, client_timeout=1.0)
    assert time.perf_counter() - started < 5.0
    assert len(records) == 40 and calls == 40
    assert peak > 1  # overlapping requests: open loop
    assert [r.scheduled for r in records] == pytest.approx(schedule)
    assert sum(r.kind == REJECTED for r in records) == 4
    assert all(r.latency >= 0.049 for r in records)  # from the scheduled send time
    assert all(r.lateness < 1.0 for r in records)


async def test_drive_bounds_outstanding_requests_and_times_out() -> None:
    in_flight = peak = 0

    async def call() -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(10.0)  # never answers: cut by asyncio.timeout(client_timeout + 1)
        finally:
            in_flight -= 1

    records = await openloop.drive(call, [0.0, 0.0, 0.0, 0.0], client_timeout=0.05, max_outstanding=2)
    assert peak == 2
    assert [r.kind for r in records] == [ERROR] * 4
    assert all("client timeout" in r.detail for r in records)
    # The last two waited for a free slot: sent late, and the latency counts that wait.
    assert min(r.lateness for r in records[2:]) >= 1.0


# --------------------------------------------------------------------------------------------
# Per-policy config and metrics


DIGITS_CONFIG = """
name: "digits"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [ { name: "image" data_type: TYPE_FP32 dims: [ 1, 8, 8 ] } ]
output [ { name: "probabilities" data_type: TYPE_FP32 dims: [ 10 ] } ]
parameters { key: "latency_slo_ms" value: { string_value: "50" } }
parameters { key: "image_size" value: { string_value: "8,8" } }
"""


def test_policy_config_sets_batching_policy_and_slo(tmp_path: Path) -> None:
    from google.protobuf import text_format

    path = tmp_path / "config.pbtxt"
    path.write_text(DIGITS_CONFIG)
    base = batching.read_config(path)
    window = batching.policy_config(
        base, batching.Policy("window-5ms", "window", 5000), batching.MODELS["digits"]
    )
    reparsed = batching.read_config(_write(tmp_path / "w.pbtxt", text_format.MessageToString(window)))
    assert reparsed.max_batch_size == 64
    assert reparsed.HasField("dynamic_batching")
    assert reparsed.dynamic_batching.max_queue_delay_microseconds == 5000
    assert reparsed.parameters["batch_policy"].string_value == "window"
    assert reparsed.parameters["latency_slo_ms"].string_value == "10"
    assert reparsed.parameters["image_size"].string_value == "8,8"  # the rest is kept
    adaptive = batching.policy_config(
        base, batching.Policy("adaptive", "adaptive", 0), batching.MODELS["resnet18"]
    )
    assert (
        adaptive.HasField("dynamic_batching") and adaptive.dynamic_batching.max_queue_delay_microseconds == 0
    )
    assert adaptive.max_batch_size == 32 and adaptive.parameters["latency_slo_ms"].string_value == "100"
    assert base.max_batch_size == 16 and not base.HasField("dynamic_batching")  # a copy, not an edit


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_metrics_delta() -> None:
    before = {
        "wall": 100.0,
        "cpu": 10.0,
        "fleetserve_batch_size_sum": 10.0,
        "fleetserve_batch_size_count": 10.0,
        "fleetserve_request_duration_seconds_sum": 1.0,
        "fleetserve_request_duration_seconds_count": 100.0,
        "rejected:deadline": 2.0,
        "within_slo": 90.0,
    }
    after = {
        "wall": 102.0,
        "cpu": 11.5,
        "fleetserve_batch_size_sum": 50.0,
        "fleetserve_batch_size_count": 20.0,
        "fleetserve_request_duration_seconds_sum": 1.5,
        "fleetserve_request_duration_seconds_count": 200.0,
        "rejected:deadline": 5.0,
        "rejected:queue_full": 0.0,
        "within_slo": 180.0,
    }
    delta = batching.metrics_delta(before, after)
    assert delta["batches"] == 10 and delta["mean_batch"] == 4.0
    assert delta["server_mean_ms"] == pytest.approx(5.0)
    assert delta["server_cpu_pct"] == pytest.approx(75.0)
    assert delta["server_over_slo_pct"] == pytest.approx(10.0)
    assert delta["rejected_by_reason"] == {"deadline": 3.0}
    empty = batching.metrics_delta({}, {})
    assert empty["mean_batch"] is None and empty["server_mean_ms"] is None and empty["server_cpu_pct"] is None


# --------------------------------------------------------------------------------------------
# Acceptance checks


def point(policy: str, load: int, p99: float | None, throughput: float, **extra: Any) -> dict[str, Any]:
    base = {
        "policy": policy,
        "load_pct": load,
        "driven": True,
        "p50_ms": None if p99 is None else p99 / 2,
        "p99_ms": p99,
        "throughput": throughput,
    }
    return {**base, **extra}


def sweep(adaptive_p99: float, adaptive_thr: float, load: int = 50) -> list[dict[str, Any]]:
    return [
        point("none", load, 80.0, 100.0),
        point("window-1ms", load, 90.0, 100.0),
        point("window-5ms", load, 150.0, 110.0),
        point("adaptive", load, adaptive_p99, adaptive_thr),
    ]


def test_slo_and_throughput_passes_and_fails() -> None:
    assert batching.check_slo_and_throughput(sweep(95.0, 105.0), 100.0)["passed"] is True
    result = batching.check_slo_and_throughput(sweep(101.0, 105.0), 100.0)
    assert result["passed"] is False and "p99" in result["failures"][0]
    result = batching.check_slo_and_throughput(sweep(95.0, 104.0), 100.0)  # < 0.95 * 110
    assert result["passed"] is False and "window-5ms" in result["failures"][0]


def test_slo_rule_applies_only_where_some_policy_meets_it() -> None:
    points = [point(p, 120, 300.0, 50.0) for p in ("none", "window-1ms", "window-5ms")]
    points.append(point("adaptive", 120, 250.0, 50.0))
    assert batching.check_slo_and_throughput(points, 100.0)["passed"] is True


def test_slo_and_throughput_ignores_points_that_were_not_driven() -> None:
    points = [
        *sweep(95.0, 105.0),
        point("adaptive", 100, 500.0, 10.0, driven=False),
        point("none", 100, 50.0, 100.0),
    ]
    result = batching.check_slo_and_throughput(points, 100.0)
    assert result["passed"] is True and result["not_judged"] == [100] and result["judged_loads"] == [50]
    # A window that was not driven is not the bar.
    points = sweep(95.0, 90.0)
    points[2]["driven"] = False
    points[1]["throughput"] = 94.0
    assert batching.check_slo_and_throughput(points, 100.0)["passed"] is True
    only = [point("adaptive", 25, 10.0, 5.0, driven=False)]
    assert batching.check_slo_and_throughput(only, 100.0)["passed"] is None


def test_low_load_latency() -> None:
    def at(adaptive: float, none: float) -> list[dict[str, Any]]:
        return [point("none", 25, None, 1.0, p50_ms=none), point("adaptive", 25, None, 1.0, p50_ms=adaptive)]

    assert batching.check_low_load_latency(at(44.0, 40.0))["passed"] is True  # +10 %
    assert batching.check_low_load_latency(at(44.5, 40.0))["passed"] is False
    assert batching.check_low_load_latency(at(0.69, 0.6))["passed"] is True  # 0.1 ms floor
    assert batching.check_low_load_latency(at(0.71, 0.6))["passed"] is False
    assert batching.check_low_load_latency(at(30.0, 40.0))["passed"] is True  # faster is fine
    missing = batching.check_low_load_latency([point("adaptive", 25, None, 1.0, p50_ms=1.0)])
    assert missing["passed"] is None
    not_driven = at(1.0, 1.0)
    not_driven[0]["driven"] = False
    assert batching.check_low_load_latency(not_driven)["passed"] is None


def test_closed_loop_ratio() -> None:
    closed = {
        "none": [{"concurrency": 1, "req_per_s": 900.0}, {"concurrency": 64, "req_per_s": 1000.0}],
        "adaptive": [{"concurrency": 64, "req_per_s": 1500.0}],
    }
    result = batching.check_closed_loop_ratio(closed)
    assert result["passed"] is True and result["ratio"] == 1.5
    closed["adaptive"][0]["req_per_s"] = 1499.0
    assert batching.check_closed_loop_ratio(closed)["passed"] is False
    assert batching.check_closed_loop_ratio({"none": closed["none"]})["passed"] is None


def test_closed_loop_ratio_is_judged_on_the_rounds_when_measured() -> None:
    sweep = {
        "none": [{"concurrency": 64, "req_per_s": 1000.0}],
        "adaptive": [{"concurrency": 64, "req_per_s": 2000.0}],
    }
    rounds = {
        "none": [{"concurrency": 64, "req_per_s": 1400.0, "rounds": [1300.0, 1500.0]}],
        "adaptive": [{"concurrency": 64, "req_per_s": 1960.0, "rounds": [1900.0, 2020.0]}],
    }
    result = {"slo_ms": 10.0, "open": [], "closed": sweep, "closed_rounds": rounds}
    c = batching.acceptance("digits", result)["c"]
    assert c["passed"] is False and c["ratio"] == pytest.approx(1.4)
    del result["closed_rounds"]
    assert batching.acceptance("digits", result)["c"]["ratio"] == pytest.approx(2.0)


def overload_point(**extra: Any) -> dict[str, Any]:
    base = {
        "driven": True,
        "p99_ms": 90.0,
        "errors": 0,
        "rejected": 20,
        "rejected_p50_ms": 3.0,
        "max_rejected_ms": 101.0,
        "max_ok_ms": 120.0,
        "rejected_pct": 20.0,
    }
    return {**base, **extra}


def overload_run(**recovery: Any) -> dict[str, Any]:
    phase2 = {"driven": True, "p99_ms": 70.0, "rejected_pct": 0.5, "errors": 0, "max_ok_ms": 80.0}
    return {
        "overload": overload_point(),
        "recovery": {**phase2, **recovery},
        "all": overload_point(max_ok_ms=130.0),
    }


def test_overload_passes() -> None:
    result = batching.check_overload(overload_point(), overload_run(), 100.0, True)
    assert result["passed"] is True
    assert all(item["passed"] for item in result["items"].values())


@pytest.mark.parametrize(
    ("point_extra", "recovery", "up", "failing"),
    [
        ({}, {}, False, "server stays up"),
        ({"p99_ms": 101.0}, {}, True, "admitted meet SLO"),
        ({"errors": 1}, {}, True, "admitted meet SLO"),
        ({"rejected_p50_ms": 11.0}, {}, True, "excess rejected quickly"),
        ({"max_rejected_ms": 151.0}, {}, True, "excess rejected quickly"),
        ({}, {"rejected_pct": 1.5}, True, "recovers"),
        ({}, {"p99_ms": 120.0}, True, "recovers"),
        ({"max_ok_ms": 150.5}, {}, True, "no wait past deadline + 50 ms"),
    ],
)
def test_overload_failures(
    point_extra: dict[str, Any], recovery: dict[str, Any], up: bool, failing: str
) -> None:
    result = batching.check_overload(overload_point(**point_extra), overload_run(**recovery), 100.0, up)
    assert result["passed"] is False
    assert [k for k, item in result["items"].items() if item["passed"] is False] == [failing]


def test_a_recovery_excess_within_chance_passes_and_a_real_one_fails() -> None:
    # a full run: 13 of 148 refused in the recovery against 18 of the steady state's 294
    steady = {"driven": True, "p99_ms": 91.5, "rejected_pct": 6.12, "rejected": 18, "requests": 294}
    run = overload_run(rejected_pct=8.78, rejected=13, requests=148, p99_ms=90.5)
    recovers = batching.check_overload(overload_point(), run, 100.0, True, steady)["items"]["recovers"]
    assert recovers["passed"] is True and "z = 1.03" in recovers["detail"]
    run = overload_run(rejected_pct=18.9, rejected=28, requests=148, p99_ms=90.5)
    real = batching.check_overload(overload_point(), run, 100.0, True, steady)["items"]["recovers"]
    assert real["passed"] is False
    assert batching.excess_z(13, 148, 18, 294) == pytest.approx(1.03, abs=0.01)
    assert batching.excess_z(0, 100, 0, 100) == 0.0
    assert batching.excess_z(5, 0, 1, 10) == float("inf")


def test_recovery_is_judged_against_the_steady_state_at_the_same_load() -> None:
    steady = {"driven": True, "p99_ms": 105.0, "rejected_pct": 5.0}
    run = overload_run(rejected_pct=6.5, p99_ms=110.0)
    result = batching.check_overload(overload_point(), run, 100.0, True, steady)
    assert result["items"]["recovers"]["passed"] is True  # <= 5 + 2 points, <= 1.1 * 105 ms
    assert "steady state" in result["items"]["recovers"]["detail"]
    run = overload_run(rejected_pct=7.5, p99_ms=110.0)
    assert (
        batching.check_overload(overload_point(), run, 100.0, True, steady)["items"]["recovers"]["passed"]
        is False
    )
    run = overload_run(rejected_pct=0.0, p99_ms=116.0)
    assert (
        batching.check_overload(overload_point(), run, 100.0, True, steady)["items"]["recovers"]["passed"]
        is False
    )
    # A steady state better than the SLO still allows p99 up to 1.1 x SLO and 1 % rejected.
    quiet = {"driven": True, "p99_ms": 50.0, "rejected_pct": 0.0}
    run = overload_run(rejected_pct=0.9, p99_ms=109.0)
    assert (
        batching.check_overload(overload_point(), run, 100.0, True, quiet)["items"]["recovers"]["passed"]
        is True
    )
    # A steady state that was not driven is no baseline: the absolute rule applies.
    run = overload_run(rejected_pct=1.5)
    not_driven = {**steady, "driven": False}
    result = batching.check_overload(overload_point(), run, 100.0, True, not_driven)
    assert result["items"]["recovers"]["passed"] is False


def test_admitted_detail_names_the_server_side_share() -> None:
    result = batching.check_overload(overload_point(server_over_slo_pct=0.5), overload_run(), 100.0, True)
    assert "0.50% of its requests" in result["items"]["admitted meet SLO"]["detail"]


def test_the_overload_runs_split_is_named_but_does_not_change_the_verdict(tmp_path: Path) -> None:
    from fleetserve.predlog.framing import frames
    from fleetserve.wire import fleet_pb2

    ms = 1_000_000
    logged = [("late-in", 200 * ms, 0.040), ("slow-server", 170 * ms, 0.160), ("fine", 60 * ms, 0.050)]
    (tmp_path / "predictions-20261201.bin").write_bytes(
        frames(
            fleet_pb2.PredictionRecord(request_id=r, time_unix_ns=t, latency_seconds=sec).SerializeToString()
            for r, t, sec in logged
        )
    )
    traced = [
        ("late-in", 0, 201 * ms, True),  # 160 ms before the data plane, 40 in it
        ("slow-server", 0, 171 * ms, True),  # 10 ms before, 160 in it
        ("fine", 0, 61 * ms, True),
        ("refused", 0, 2 * ms, False),
    ]
    split = batching.split_summary(traced, tmp_path, 150.0)
    assert (split["answered"], split["joined"], split["over_limit"]) == (3, 3, 2)
    assert split["over_limit_within_in_data_plane"] == 1
    assert split["slowest"][0] == {"total": 201.0, "before": 160.0, "server": 40.0, "after": 1.0}
    (line,) = batching.format_split(split)
    assert "over 150 ms 2, of them within it in the data plane 1" in line
    assert "201.0 = 160.0 + 40.0 + 1.0" in line
    assert batching.format_split(None) == []
    assert batching.split_summary(traced, None, 150.0)["joined"] == 0

    run = {**overload_run(), "split": split, "all": overload_point(max_ok_ms=201.0)}
    items = batching.check_overload(overload_point(), run, 100.0, True)["items"]
    wait = items["no wait past deadline + 50 ms"]
    assert wait["passed"] is False  # judged on the client's view, whatever the split says
    assert "2 answers over it, of them within it in the data plane 1" in wait["detail"]


def test_overload_not_judged_without_data() -> None:
    result = batching.check_overload(None, None, 100.0, True)
    assert result["passed"] is None
    assert result["items"]["server stays up"]["passed"] is True
    assert result["items"]["recovers"]["passed"] is None
    assert batching.verdict(None) == "NOT JUDGED" and batching.verdict(True) == "PASS"


def test_open_loop_seconds_are_per_model_unless_given() -> None:
    default = batching.parse_args([])
    resnet, digits = batching.durations_for("resnet18", default), batching.durations_for("digits", default)
    assert (resnet.open, digits.open) == (24.0, 8.0)
    assert (resnet.overload, resnet.recovery) == (8.0, 12.0)  # the overload run grows with the points
    assert (digits.overload, digits.recovery) == (4.0, 6.0)  # never under 4 + 6 s
    given = batching.parse_args(["--duration", "3"])
    assert {batching.durations_for(m, given).open for m in ("resnet18", "digits")} == {3.0}
    assert batching.durations_for("resnet18", batching.parse_args(["--quick"])).open == 2.0
    both = batching.estimated_seconds(default)
    assert both > batching.estimated_seconds(batching.parse_args(["--models", "digits"])) > 0
    with pytest.raises(SystemExit):
        batching.parse_args(["--duration", "0"])
