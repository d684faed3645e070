"""The rollout controller's state machine with an in-memory plan store, a fake metrics source
and an injected clock: nothing here waits for real time."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fleetserve.common.clock import FakeClock
from fleetserve.rollout import transitions as tr
from fleetserve.rollout.auto import AutoConfig
from fleetserve.rollout.controller import RolloutController
from fleetserve.rollout.guardrails import Thresholds
from fleetserve.rollout.metrics_source import MetricsUnavailable
from fleetserve.rollout.plan import RolloutPlan

MODEL = "digits"
CFG = AutoConfig(shadow_requests=100, dwell_s=60, poll_s=5, timeout_s=120)


class MemoryStore:
    """A PlanStore in a dict."""

    def __init__(self) -> None:
        self.plans: dict[str, RolloutPlan] = {}
        self.puts = 0
        self.fail: Exception | None = None

    def get(self, model: str) -> RolloutPlan | None:
        return self.plans.get(model)

    def models(self) -> list[str]:
        return sorted(self.plans)

    async def put(self, plan: RolloutPlan) -> RolloutPlan:
        if self.fail is not None:
            raise self.fail
        self.puts += 1
        stored = plan.model_copy(update={"revision": plan.revision + 1, "updated_at": 1.0})
        self.plans[plan.model] = stored
        return stored

    async def refresh(self) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


_LABEL = re.compile(r'(\w+)(!?=)"([^"]*)"')


class FakeMetrics:
    """Answers the guardrails' PromQL from per-version figures, which may depend on the plan.

    `canary_error_rate(weight)` gives the canary's error rate at a canary weight; the other
    figures are fixed unless a test changes them.
    """

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.canary_requests = 1000.0
        self.production_requests = 10_000.0
        self.production_error_rate = 0.001
        self.canary_error_rate: Callable[[float], float] = lambda weight: 0.001
        self.p99 = {1: 0.010, 2: 0.011}
        self.shadow_compared = {2: 500.0}
        self.shadow_agreement = {2: 0.99}
        self.drift: dict[int, float] = {}
        # the quality monitor's gauges (none published unless a test sets them)
        self.accuracy: dict[int, float] = {}
        self.labelled: dict[int, float] = {}
        self.unavailable = False
        self.queries: list[str] = []

    def _weight(self) -> float:
        plan = self.store.get(MODEL)
        return plan.canary_weight if plan is not None else 0.0

    async def query(self, promql: str) -> float | None:
        self.queries.append(promql)
        if self.unavailable:
            raise MetricsUnavailable("cannot query Prometheus at http://127.0.0.1:9: connection refused")
        labels = {k: v for k, op, v in _LABEL.findall(promql) if op == "="}
        errors = 'code!="ok"' in promql
        version = int(labels["version"]) if "version" in labels else None
        if "fleetserve_requests_total" in promql:
            if labels.get("route") == "canary":
                n = self.canary_requests
                return n * self.canary_error_rate(self._weight()) if errors else n
            n = self.production_requests
            return n * self.production_error_rate if errors else n
        if "fleetserve_request_duration_seconds_bucket" in promql:
            return self.p99.get(version or 0)
        if "fleetserve_shadow_compared_total" in promql:
            n = self.shadow_compared.get(version or 0)
            if n is None:
                return None
            return n * self.shadow_agreement[version or 0] if labels.get("agree") == "true" else n
        if "fleetserve_drift_alert" in promql:
            return self.drift.get(version or 0)
        if "fleetserve_quality_accuracy" in promql:
            return self.accuracy.get(version or 0)
        if "fleetserve_quality_labelled_items" in promql:
            return self.labelled.get(version or 0)
        raise AssertionError(f"unexpected query {promql}")


class Rig:
    def __init__(self, repo: Path, config: AutoConfig = CFG) -> None:
        self.clock = FakeClock(start=1_700_000_000.0)
        self.store = MemoryStore()
        self.metrics = FakeMetrics(self.store)
        self.registry = CollectorRegistry()
        self.sleeps: list[float] = []
        self.controller = RolloutController(
            self.store,
            repo,
            self.metrics,
            self.registry,
            Thresholds(),
            config,
            clock=self.clock,
            sleep=self.sleep,
        )

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)

    @property
    def plan(self) -> RolloutPlan:
        plan = self.store.get(MODEL)
        assert plan is not None
        return plan

    def count(self, from_stage: str, to_stage: str, reason: str) -> float:
        labels = {"model": MODEL, "from_stage": from_stage, "to_stage": to_stage, "reason": reason}
        return self.registry.get_sample_value("fleetserve_rollout_transitions_total", labels) or 0.0


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    for v in (1, 2, 3):
        (root / MODEL / str(v)).mkdir(parents=True)
    meta = {
        "model": MODEL,
        "version": 2,
        "created": "2026-01-02T03:04:05Z",
        "metrics": {"test_accuracy": 0.97},
    }
    (root / MODEL / "2" / "metadata.json").write_text(json.dumps(meta))
    (root / MODEL / "3" / "metadata.json").write_text("{not json")
    (root / MODEL / "0").mkdir()  # not a version
    (root / MODEL / ".tmp-4").mkdir()
    return root


@pytest.fixture
def rig(repo: Path) -> Rig:
    return Rig(repo)


async def start_auto(rig: Rig, **overrides: Any) -> None:
    await rig.controller.stage(MODEL, 1, actor="test")  # any stage pins production ...
    await rig.controller.promote(MODEL, 1, actor="test")  # ... and v1 becomes it
    await rig.controller.auto(MODEL, 2, overrides, actor="tester")


async def until(condition: Callable[[], bool], tries: int = 500) -> None:
    """Let the event loop run (no real time passes) until `condition` holds."""
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def message(rig: Rig) -> str:
    status = rig.controller.auto_status(MODEL)
    return status.message if status is not None else ""


def stages(plan: RolloutPlan) -> list[tuple[int | None, str, str, str]]:
    return [(t.version, t.from_stage, t.to_stage, t.reason) for t in plan.history]


# --- automated rollout -----------------------------------------------------------------------


async def test_good_candidate_goes_shadow_5_25_50_100_promoted(rig: Rig) -> None:
    await start_auto(rig)
    status = await rig.controller.wait(MODEL)
    assert status is not None and status.phase == "promoted" and not status.running
    plan = rig.plan
    assert plan.production == 2 and plan.canary is None and plan.canary_weight == 0 and plan.shadows == []
    auto = plan.history[2:]
    assert [(t.from_stage, t.to_stage) for t in auto] == [
        ("none", "shadow"),
        ("shadow", "canary"),
        ("canary", "canary"),
        ("canary", "canary"),
        ("canary", "canary"),
        ("canary", "production"),
    ]
    assert [t.detail.get("weight") for t in auto[1:5]] == [5, 25, 50, 100]
    assert all(t.actor == "auto" and t.reason == "auto" for t in auto)
    assert auto[0].detail["requested_by"] == "tester"
    assert auto[-1].detail["previous_production"] == 1
    # each canary step was held for its dwell time (the fake clock only moves in sleeps)
    step_times = [t.time for t in auto[1:]]
    assert all(b - a >= CFG.dwell_s for a, b in itertools.pairwise(step_times))
    assert rig.count("shadow", "canary", "auto") == 1
    assert rig.count("canary", "canary", "auto") == 3
    assert rig.count("canary", "production", "auto") == 1
    assert rig.count("none", "shadow", "auto") == 1


async def test_shadow_waits_for_the_configured_comparisons(rig: Rig) -> None:
    rig.metrics.shadow_compared[2] = 10
    await start_auto(rig)
    await until(lambda: "10 shadow comparisons, 100 needed" in message(rig))
    assert rig.plan.shadows == [2] and rig.plan.canary is None
    status = rig.controller.auto_status(MODEL)
    assert status is not None and status.phase == "shadow" and status.running
    rig.metrics.shadow_compared[2] = 150
    status = await rig.controller.wait(MODEL)
    assert status is not None and status.phase == "promoted"


@pytest.mark.parametrize("bad_weight", [5.0, 25.0, 50.0, 100.0])
async def test_error_rate_breach_at_any_step_rolls_back_at_once(rig: Rig, bad_weight: float) -> None:
    rig.metrics.canary_error_rate = lambda w: 0.2 if w >= bad_weight else 0.0
    await start_auto(rig)
    status = await rig.controller.wait(MODEL)
    assert status is not None and status.phase == "rolled_back"
    plan = rig.plan
    assert plan.production == 1 and plan.canary is None and plan.canary_weight == 0 and plan.shadows == []
    last = plan.history[-1]
    assert (last.version, last.from_stage, last.to_stage) == (2, "canary", "rolled_back")
    assert last.reason == "guardrail:error_rate" and last.actor == "auto"
    assert last.detail["guardrail"] == "error_rate"
    assert last.detail["canary_error_rate"] == pytest.approx(0.2)
    assert last.detail["production_error_rate"] == pytest.approx(0.001)
    assert last.detail["weight"] == bad_weight and last.detail["phase"] == "canary"
    weights = [t.detail.get("weight") for t in plan.history if t.to_stage == "canary"]
    assert weights[-1] == bad_weight  # no step after the bad one
    assert rig.count("canary", "rolled_back", "guardrail:error_rate") == 1
    assert rig.count("canary", "production", "auto") == 0


async def test_latency_breach_rolls_back(rig: Rig) -> None:
    rig.metrics.p99[2] = 0.050
    await start_auto(rig)
    await rig.controller.wait(MODEL)
    last = rig.plan.history[-1]
    assert last.reason == "guardrail:latency_p99"
    assert last.detail["canary_p99_s"] == 0.05 and last.detail["production_p99_s"] == 0.01
    assert last.detail["weight"] == 5  # broken at the first step
    assert rig.plan.production == 1


async def test_shadow_disagreement_rolls_back_before_any_canary(rig: Rig) -> None:
    rig.metrics.shadow_agreement[2] = 0.6
    await start_auto(rig)
    await rig.controller.wait(MODEL)
    plan = rig.plan
    last = plan.history[-1]
    assert (last.from_stage, last.to_stage, last.reason) == (
        "shadow",
        "rolled_back",
        "guardrail:shadow_agreement",
    )
    assert last.detail["agreement"] == pytest.approx(0.6) and last.detail["min_agreement"] == 0.95
    assert not any(t.to_stage == "canary" for t in plan.history)
    assert plan.shadows == [] and plan.production == 1


@pytest.mark.parametrize("phase", ["shadow", "canary"])
async def test_drift_breach_rolls_back(rig: Rig, phase: str) -> None:
    if phase == "shadow":
        rig.metrics.drift[2] = 1.0
    else:
        # drift appears once traffic reaches the canary at 25 %
        rig.metrics.canary_error_rate = lambda w: (
            rig.metrics.drift.update({2: 1.0 if w >= 25 else 0.0}) or 0.0
        )
    await start_auto(rig)
    await rig.controller.wait(MODEL)
    last = rig.plan.history[-1]
    assert last.reason == "guardrail:drift" and last.detail["drift_alert"] == 1.0
    assert last.detail["phase"] == phase
    assert rig.plan.production == 1


async def test_no_drift_published_does_not_block(rig: Rig) -> None:
    rig.metrics.drift.clear()
    await start_auto(rig)
    status = await rig.controller.wait(MODEL)
    assert status is not None and status.phase == "promoted"
    assert any("fleetserve_drift_alert" in q for q in rig.metrics.queries)


async def test_metrics_unavailable_holds_then_rolls_back_never_promotes(rig: Rig) -> None:
    rig.metrics.unavailable = True
    await start_auto(rig)
    await until(lambda: "cannot be read" in message(rig))
    status = rig.controller.auto_status(MODEL)
    assert status is not None and status.running
    assert rig.plan.shadows == [2]  # holding where it was
    status = await rig.controller.wait(MODEL)
    assert status is not None and status.phase == "rolled_back"
    last = rig.plan.history[-1]
    assert last.reason == "guardrails_unavailable" and "connection refused" in str(last.detail["message"])
    assert rig.plan.production == 1
    assert rig.clock.now - 1_700_000_000.0 >= CFG.timeout_s  # it held for the timeout first


async def test_metrics_outage_shorter_than_timeout_only_delays(rig: Rig) -> None:
    state = {"calls": 0}
    real = rig.metrics.query

    async def flaky(promql: str) -> float | None:
        state["calls"] += 1
        rig.metrics.unavailable = state["calls"] < 30
        return await real(promql)

    rig.metrics.query = flaky  # type: ignore[method-assign]
    await start_auto(rig)
    status = await rig.controller.wait(MODEL)
    assert status is not None and status.phase == "promoted"


async def test_too_little_canary_traffic_rolls_back_as_insufficient(rig: Rig) -> None:
    rig.metrics.canary_requests = 3
    await start_auto(rig)
    await rig.controller.wait(MODEL)
    last = rig.plan.history[-1]
    assert last.reason == "insufficient_data" and last.detail["weight"] == 5
    assert "3 canary requests, 50 needed" in str(last.detail["message"])
    assert rig.plan.production == 1


async def test_accuracy_drop_on_labelled_canary_rolls_back(rig: Rig) -> None:
    rig.metrics.accuracy = {1: 0.97, 2: 0.90}
    rig.metrics.labelled = {1: 400.0, 2: 80.0}
    await start_auto(rig)
    status = await rig.controller.wait(MODEL)
    assert status is not None and status.phase == "rolled_back"
    last = rig.plan.history[-1]
    assert last.reason == "guardrail:accuracy" and last.detail["phase"] == "canary"
    assert last.detail["canary_accuracy"] == 0.90 and last.detail["production_accuracy"] == 0.97
    assert last.detail["accuracy_drop"] == pytest.approx(0.07)
    assert last.detail["weight"] == 5
    assert rig.plan.production == 1
    assert 'max(fleetserve_quality_accuracy{model="digits",version="2"})' in rig.metrics.queries


@pytest.mark.parametrize(
    ("accuracy", "labelled"),
    [
        ({}, {}),  # no labels at all: rollouts proceed as before
        ({1: 0.97, 2: 0.5}, {1: 400.0, 2: 49.0}),  # too few canary labels to judge
        ({1: 0.97, 2: 0.5}, {1: 10.0, 2: 400.0}),  # too few production labels to compare
        ({1: 0.97, 2: 0.96}, {1: 400.0, 2: 400.0}),  # within the allowed drop
    ],
)
async def test_accuracy_without_enough_labels_or_within_margin_promotes(
    rig: Rig, accuracy: dict[int, float], labelled: dict[int, float]
) -> None:
    rig.metrics.accuracy, rig.metrics.labelled = accuracy, labelled
    await start_auto(rig)
    status = await rig.controller.wait(MODEL)
    assert status is not None and status.phase == "promoted"
    assert any(r.name == "accuracy" for r in status.results)


async def test_auto_overrides_and_validation(rig: Rig) -> None:
    await start_auto(rig, steps=[10, 100], dwell_s=1, shadow_requests=5)
    status = await rig.controller.wait(MODEL)
    assert status is not None and status.phase == "promoted" and status.config.steps == [10, 100]
    with pytest.raises(tr.Invalid, match="steps"):
        await rig.controller.auto(MODEL, 3, {"steps": [50, 25]})
    with pytest.raises(tr.Invalid):
        await rig.controller.auto(MODEL, 3, {"dwell_s": -1})
    with pytest.raises(tr.Invalid):
        await rig.controller.auto(MODEL, 3, {"bogus": 1})
    with pytest.raises(tr.Conflict, match="already production"):
        await rig.controller.promote(MODEL, 2)


async def test_second_auto_is_refused_and_manual_command_cancels_auto(rig: Rig) -> None:
    rig.metrics.shadow_compared[2] = 0  # keeps the run holding in shadow
    await start_auto(rig)
    await until(lambda: "holding" in message(rig))
    with pytest.raises(tr.Conflict, match="is running"):
        await rig.controller.auto(MODEL, 3)
    # a refused manual command leaves the run alone
    with pytest.raises(tr.NotFound):
        await rig.controller.canary(MODEL, 9, 10)
    status = rig.controller.auto_status(MODEL)
    assert status is not None and status.running
    await rig.controller.canary(MODEL, 2, 30, actor="alice", note="by hand")
    status = rig.controller.auto_status(MODEL)
    assert status is not None and status.phase == "cancelled" and "cancelled by canary" in status.message
    assert rig.plan.canary == 2 and rig.plan.canary_weight == 30
    # nothing more happens: the cancelled run does not move the plan
    revision = rig.plan.revision
    for _ in range(5):
        await asyncio.sleep(0)
    assert rig.plan.revision == revision
    last = rig.plan.history[-1]
    assert (last.actor, last.reason, last.detail["note"]) == ("alice", "manual", "by hand")


async def test_stop_cancels_runs_and_leaves_plan(rig: Rig) -> None:
    rig.metrics.shadow_compared[2] = 0
    await start_auto(rig)
    await until(lambda: "holding" in message(rig))
    await rig.controller.stop()
    status = rig.controller.auto_status(MODEL)
    assert status is not None and status.phase == "cancelled"
    assert rig.plan.shadows == [2]


async def test_store_failure_ends_the_run_as_failed(rig: Rig) -> None:
    await start_auto(rig)
    rig.store.fail = OSError("disk full")
    status = await rig.controller.wait(MODEL)
    assert status is not None and status.phase == "failed" and "disk full" in status.message


# --- manual commands -------------------------------------------------------------------------


async def test_manual_stage_canary_promote(rig: Rig) -> None:
    c = rig.controller
    plan = await c.stage(MODEL, 3, actor="bob", note="try it")
    # no production pinned before: the highest other version is pinned
    assert plan.production == 2 and plan.shadows == [3]
    plan = await c.canary(MODEL, 3, 10, actor="bob")
    assert plan.canary == 3 and plan.canary_weight == 10 and plan.shadows == []
    plan = await c.canary(MODEL, 3, 40, actor="bob")
    assert plan.canary_weight == 40
    plan = await c.promote(MODEL, actor="bob")  # default: the canary
    assert plan.production == 3 and plan.canary is None
    assert stages(plan) == [
        (3, "none", "shadow", "manual"),
        (3, "shadow", "canary", "manual"),
        (3, "canary", "canary", "manual"),
        (3, "canary", "production", "manual"),
    ]
    assert plan.history[0].detail == {"note": "try it", "production": 2}
    assert all(t.actor == "bob" for t in plan.history)
    assert plan.history[-1].detail["previous_production"] == 2
    assert rig.count("canary", "production", "manual") == 1
    assert rig.count("none", "shadow", "manual") == 1


async def test_manual_rollback_clears_canary_and_shadows(rig: Rig) -> None:
    c = rig.controller
    await c.promote(MODEL, 1)
    await c.stage(MODEL, 2)
    await c.canary(MODEL, 3, 5)
    plan = await c.rollback(MODEL, note="looks wrong")
    assert plan.production == 1 and plan.canary is None and plan.shadows == []
    rolled = [(t.version, t.from_stage) for t in plan.history if t.to_stage == "rolled_back"]
    assert rolled == [(3, "canary"), (2, "shadow")]
    assert plan.history[-1].detail["note"] == "looks wrong"
    assert rig.count("canary", "rolled_back", "manual") == 1
    assert rig.count("shadow", "rolled_back", "manual") == 1
    with pytest.raises(tr.Conflict, match="nothing to roll back"):
        await c.rollback(MODEL)


async def test_refused_commands(rig: Rig) -> None:
    c = rig.controller
    with pytest.raises(tr.NotFound):
        await c.stage("nope", 1)
    with pytest.raises(tr.NotFound):
        await c.stage(MODEL, 7)
    with pytest.raises(tr.Invalid):
        await c.stage("../etc", 1)
    with pytest.raises(tr.Conflict, match="nothing to roll back"):
        await c.rollback(MODEL)
    await c.promote(MODEL, 1)
    await c.canary(MODEL, 2, 20)
    with pytest.raises(tr.Conflict, match="2 is the canary"):
        await c.canary(MODEL, 3, 20)
    with pytest.raises(tr.Conflict, match="2 is the canary"):
        await c.promote(MODEL, 3)
    with pytest.raises(tr.Conflict, match="2 is the canary"):
        await c.stage(MODEL, 2)
    with pytest.raises(tr.Conflict, match="1 is production"):
        await c.canary(MODEL, 1, 5)
    with pytest.raises(tr.Conflict, match="1 is production"):
        await c.stage(MODEL, 1)
    with pytest.raises(tr.Conflict, match="not a canary or shadow"):
        await c.rollback(MODEL, 3)
    with pytest.raises(tr.Invalid, match="weight"):
        await c.canary(MODEL, 2, 101)
    await c.stage(MODEL, 3)
    with pytest.raises(tr.Conflict, match="already a shadow"):
        await c.stage(MODEL, 3)
    await c.rollback(MODEL, 2)
    await c.stage(MODEL, 2)  # two shadows, no canary: promote must be told which
    with pytest.raises(tr.Conflict, match="name the version"):
        await c.promote(MODEL)
    assert rig.store.puts == 5  # promote, canary, stage, rollback, stage: nothing refused was stored


async def test_single_version_cannot_be_shadowed(tmp_path: Path) -> None:
    (tmp_path / "solo" / "1").mkdir(parents=True)
    rig = Rig(tmp_path)
    with pytest.raises(tr.Conflict, match="promote version 1 directly"):
        await rig.controller.stage("solo", 1)
    plan = await rig.controller.promote("solo", 1)
    assert plan.production == 1


async def test_store_failure_is_unavailable(rig: Rig) -> None:
    rig.store.fail = ConnectionError("redis down")
    with pytest.raises(tr.Unavailable, match="redis down"):
        await rig.controller.stage(MODEL, 2)
    assert rig.count("none", "shadow", "manual") == 0


# --- listing ---------------------------------------------------------------------------------


async def test_versions_list_metadata_and_stage(rig: Rig) -> None:
    c = rig.controller
    rows = c.versions(MODEL)
    assert [r["version"] for r in rows] == [1, 2, 3]
    assert [r["stage"] for r in rows] == ["none", "none", "production"]  # no plan: the highest serves
    await c.promote(MODEL, 1)
    await c.canary(MODEL, 3, 25)
    await c.stage(MODEL, 2)
    await c.rollback(MODEL, 2)
    rows = {r["version"]: r for r in c.versions(MODEL)}
    assert rows[1]["stage"] == "production" and rows[1]["metadata"] is None
    assert rows[2]["stage"] == "rolled_back"
    assert rows[2]["metadata"]["metrics"] == {"test_accuracy": 0.97}
    assert rows[3]["stage"] == "canary" and rows[3]["weight"] == 25
    assert rows[3]["metadata"] is None and "not valid JSON" in rows[3]["metadata_error"]
    assert rows[3]["last_transition_at"] == rig.clock.now and rows[3]["published_at"] > 0
    status = c.status(MODEL)
    assert status["plan"]["canary"] == 3 and status["auto"] is None and len(status["versions"]) == 3
    assert c.models() == [
        {
            "model": MODEL,
            "production": 1,
            "canary": 3,
            "canary_weight": 25.0,
            "shadows": [],
            "revision": 4,
            "auto": None,
        }
    ]
    with pytest.raises(tr.NotFound):
        c.status("nope")


async def test_plan_changed_elsewhere_stops_the_run(rig: Rig) -> None:
    rig.metrics.shadow_compared[2] = 0
    await start_auto(rig)
    await until(lambda: "holding" in message(rig))
    # another writer (a second controller, a hand edit) takes v2 out of the shadows
    rig.store.plans[MODEL] = rig.plan.model_copy(update={"shadows": []})
    status = await rig.controller.wait(MODEL)
    assert status is not None and status.phase == "cancelled" and "changed elsewhere" in status.message
    assert rig.plan.canary is None and rig.plan.production == 1


# --- candidates expected to disagree (retrained because of drift) ----------------------------


async def test_agreement_not_judged_lets_a_disagreeing_candidate_through_shadow(rig: Rig) -> None:
    # production gets every drifted input wrong, the candidate right: they never agree
    rig.metrics.shadow_agreement[2] = 0.0
    rig.metrics.accuracy = {1: 0.05, 2: 0.97}
    rig.metrics.labelled = {1: 400.0, 2: 400.0}
    await start_auto(rig, judge_agreement=False, require_accuracy=True)
    status = await rig.controller.wait(MODEL)
    assert status is not None and status.phase == "promoted"
    assert rig.plan.production == 2
    # it left shadow for the canary although agreement was 0 (measured: the query was made)
    assert any(t.from_stage == "shadow" and t.to_stage == "canary" for t in rig.plan.history)
    assert any("fleetserve_shadow_compared_total" in q for q in rig.metrics.queries)


async def test_require_accuracy_holds_each_step_until_labels_then_times_out(rig: Rig) -> None:
    rig.metrics.accuracy = {1: 0.97, 2: 0.97}
    rig.metrics.labelled = {1: 400.0, 2: 10.0}  # the canary never gets 50 labels
    await start_auto(rig, require_accuracy=True)
    await until(lambda: "required: waiting for labels" in message(rig))
    status = await rig.controller.wait(MODEL)
    assert status is not None and status.phase == "rolled_back"
    last = rig.plan.history[-1]
    assert last.detail["phase"] == "canary" and last.detail["weight"] == 5
    assert rig.plan.production == 1


async def test_without_require_accuracy_missing_labels_do_not_hold(rig: Rig) -> None:
    rig.metrics.labelled = {1: 400.0, 2: 10.0}
    await start_auto(rig)
    status = await rig.controller.wait(MODEL)
    assert status is not None and status.phase == "promoted"
