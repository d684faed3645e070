"""The drift analyser over a repository with a reference profile: windows per version, scores
when due, alerts, the retrain trigger, and the exported families (through the monitor)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fleetserve.common.clock import FakeClock
from fleetserve.drift.alerts import AlertPolicy
from fleetserve.drift.drift_monitor import DriftAnalyser, WindowPolicy
from fleetserve.drift.monitor import Monitor
from fleetserve.drift.profile import reference_profile
from fleetserve.drift.references import ReferenceStore
from fleetserve.drift.retrain import Retrainer
from fleetserve.drift.scoring import Thresholds
from fleetserve.drift.streams import RecordBatch
from fleetserve.predlog.entry import LogEntry
from fleetserve.predlog.records import to_records
from fleetserve.wire import fleet_pb2

MV = {"model": "m", "version": "1"}


def images(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    return (rng.random((n, 1, 4, 4), dtype=np.float32) + shift).astype(np.float32)


def model(x: np.ndarray) -> np.ndarray:
    """A fixed 'model': 3 classes scored from the image's mean."""
    m = x.reshape(len(x), -1).mean(axis=1)
    logits = np.stack([np.full_like(m, 0.5), m * 2, 1 - m], axis=1) * 4
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def records(x: np.ndarray, version: str = "1", name: str = "m") -> list[fleet_pb2.PredictionRecord]:
    entry = LogEntry(
        request_id="r", time_ns=0, model=name, version=version, route="production", route_key=None,
        protocol="rest", latency_s=0.0, inputs={"image": x}, outputs={"probabilities": model(x)},
        batched=True, labels=None, first_output="probabilities",
    )  # fmt: skip
    return to_records(entry)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Model `m` v1 with a reference profile of 2000 uniform images; v2 without one."""
    x = images(np.random.default_rng(0), 2000)
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "2").mkdir(parents=True)
    meta = {"model": "m", "reference_profile": reference_profile({"image": x}, model(x))}
    (tmp_path / "m" / "1" / "metadata.json").write_text(json.dumps(meta))
    return tmp_path


class FakeProcess:
    def __init__(self) -> None:
        self.code: int | None = None

    def poll(self) -> int | None:
        return self.code


class FakePopen:
    """Records the commands it is asked to start."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, str]]] = []
        self.procs: list[FakeProcess] = []

    def __call__(self, argv: list[str], env: dict[str, str], **_: Any) -> FakeProcess:
        self.calls.append((argv, env))
        self.procs.append(FakeProcess())
        return self.procs[-1]


def rig(
    repo: Path, policy: AlertPolicy | None = None, cooldown_s: float = 0.0
) -> tuple[DriftAnalyser, FakeClock, FakePopen]:
    clock = FakeClock()
    popen = FakePopen()
    analyser = DriftAnalyser(
        ReferenceStore(repo, retry_s=30.0, clock=clock),
        window=WindowPolicy(window_items=200, min_items=100, evaluate_every=10),
        thresholds=Thresholds(),
        policy=policy
        or AlertPolicy(alert_after=2, clear_after=2, retrain_after_evaluations=3, retrain_after_s=5),
        retrainer=Retrainer(["retrain", "--model", "{model}"], cooldown_s, clock, popen),
        clock=clock,
    )
    return analyser, clock, popen


def feed(analyser: DriftAnalyser, recs: Iterable[fleet_pb2.PredictionRecord], each: int = 1) -> None:
    batch = list(recs)
    for i in range(0, len(batch), each):
        analyser.on_predictions(batch[i : i + each])


def sample(analyser: DriftAnalyser, name: str, **labels: str) -> float | None:
    registry = CollectorRegistry()
    registry.register(analyser)
    return registry.get_sample_value(name, labels)


def test_scores_come_once_the_window_has_min_items_then_every_n(repo: Path) -> None:
    analyser, _, _ = rig(repo)
    rng = np.random.default_rng(1)
    feed(analyser, records(images(rng, 99)))
    analyser.refresh()
    assert sample(analyser, "fleetserve_drift_evaluations_total", **MV) == 0
    assert sample(analyser, "fleetserve_drift_score", **MV, feature="image[0].mean", test="psi") is None
    feed(analyser, records(images(rng, 1)))  # the 100th item
    analyser.refresh()
    assert sample(analyser, "fleetserve_drift_evaluations_total", **MV) == 1
    feed(analyser, records(images(rng, 300)), each=7)
    analyser.refresh()
    assert sample(analyser, "fleetserve_drift_records_total", **MV) == 400
    assert sample(analyser, "fleetserve_drift_window_items", **MV) == 200  # count-based window
    assert sample(analyser, "fleetserve_drift_evaluations_total", **MV) == 1 + 300 // 10
    assert sample(analyser, "fleetserve_drift_alert", **MV) == 0
    for feature, tests in [
        *((f"image[0].{s}", ("psi", "ks")) for s in ("mean", "std", "min", "max")),
        ("class", ("psi", "js")),
        ("confidence", ("psi", "ks", "drop")),
    ]:
        for test in tests:
            value = sample(analyser, "fleetserve_drift_score", **MV, feature=feature, test=test)
            assert value is not None and value < Thresholds().limit(test), (feature, test, value)
    pvalue = sample(analyser, "fleetserve_drift_ks_pvalue", **MV, feature="image[0].mean")
    assert pvalue is not None and 0 < pvalue <= 1
    assert sample(analyser, "fleetserve_drift_threshold", test="psi") == Thresholds().psi


def test_versions_without_a_profile_are_counted_not_scored(repo: Path) -> None:
    analyser, clock, _ = rig(repo)
    x = images(np.random.default_rng(2), 150)
    feed(analyser, records(x, version="2"))
    feed(analyser, records(x, version="9", name="../m"))  # never looked up outside the repository
    analyser.refresh()
    assert sample(analyser, "fleetserve_drift_unreferenced_records_total", model="m", version="2") == 150
    assert sample(analyser, "fleetserve_drift_alert", model="m", version="2") is None
    # a profile published later is found after the retry period
    meta = json.loads((repo / "m" / "1" / "metadata.json").read_text())
    (repo / "m" / "2" / "metadata.json").write_text(json.dumps(meta))
    feed(analyser, records(x[:1], version="2"))
    assert sample(analyser, "fleetserve_drift_unreferenced_records_total", model="m", version="2") == 151
    clock.advance(31)
    feed(analyser, records(x, version="2"))
    analyser.refresh()
    assert sample(analyser, "fleetserve_drift_records_total", model="m", version="2") == 150


def test_drift_raises_the_alert_and_retrains_once_per_episode(
    repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    analyser, clock, popen = rig(repo)
    rng = np.random.default_rng(3)
    feed(analyser, records(images(rng, 200)))
    analyser.refresh()
    assert sample(analyser, "fleetserve_drift_alert", **MV) == 0
    caplog.set_level(logging.INFO, logger="fleetserve.drift")
    drifted = records(images(rng, 400, shift=0.5))
    n = 0
    while sample(analyser, "fleetserve_drift_alert", **MV) != 1:
        feed(analyser, drifted[n : n + 10])
        n += 10
        analyser.refresh()
        assert n < 200, "no alert"
    assert sample(analyser, "fleetserve_drift_alerts_total", **MV) == 1
    raised = [r.getMessage() for r in caplog.records if "drift alert raised" in r.getMessage()]
    assert len(raised) == 1 and "m v1 after" in raised[0] and "image[0].mean psi=" in raised[0]
    # due after 3 evaluations over the threshold, and 5 s up
    feed(analyser, drifted[n : n + 30])
    n += 30
    analyser.refresh()
    assert popen.calls == []
    clock.advance(5)
    analyser.refresh()  # the time condition is checked on refresh too
    assert len(popen.calls) == 1
    argv, env = popen.calls[0]
    assert argv == ["retrain", "--model", "m"]
    assert env["FLEETSERVE_DRIFT_VERSION"] == "1" and "image[0].mean:psi" in env["FLEETSERVE_DRIFT_FEATURES"]
    assert sample(analyser, "fleetserve_drift_retrain_triggers_total", **MV, outcome="started") == 1
    assert sample(analyser, "fleetserve_drift_retrain_running", model="m") == 1
    popen.procs[0].code = 0
    feed(analyser, drifted[n:])
    clock.advance(100)
    analyser.refresh()
    assert len(popen.calls) == 1  # once per episode
    assert sample(analyser, "fleetserve_drift_retrain_running", model="m") is None
    # clean again: the alert clears (hysteresis), and a new episode retrains again
    feed(analyser, records(images(rng, 300)))
    analyser.refresh()
    assert sample(analyser, "fleetserve_drift_alert", **MV) == 0
    assert any("drift alert cleared for m v1" in r.getMessage() for r in caplog.records)
    feed(analyser, records(images(rng, 200, shift=0.5)))
    clock.advance(10)
    analyser.refresh()
    assert sample(analyser, "fleetserve_drift_alerts_total", **MV) == 2
    assert len(popen.calls) == 2


def test_cooldown_delays_the_next_episode_s_retraining(repo: Path) -> None:
    policy = AlertPolicy(alert_after=1, clear_after=1, retrain_after_evaluations=1, retrain_after_s=0)
    analyser, clock, popen = rig(repo, policy, cooldown_s=600)
    rng = np.random.default_rng(4)
    feed(analyser, records(images(rng, 200, shift=0.5)))
    assert len(popen.calls) == 1
    popen.procs[0].code = 0
    feed(analyser, records(images(rng, 200)))  # cleared
    feed(analyser, records(images(rng, 200, shift=0.5)))  # a second episode, inside the cooldown
    analyser.refresh()
    assert len(popen.calls) == 1
    clock.advance(601)
    analyser.refresh()
    assert len(popen.calls) == 2


def test_a_failed_retraining_is_asked_for_again_while_drift_persists(repo: Path) -> None:
    policy = AlertPolicy(alert_after=1, clear_after=1, retrain_after_evaluations=1, retrain_after_s=0)
    analyser, clock, popen = rig(repo, policy, cooldown_s=3600)
    analyser.retrainer.retry_s = 60
    rng = np.random.default_rng(6)
    drifted = records(images(rng, 400, shift=0.5))
    feed(analyser, drifted[:200])
    assert len(popen.calls) == 1
    popen.procs[0].code = 3  # e.g. too few labels had come: the trainer exits 3
    clock.advance(30)
    feed(analyser, drifted[200:300])
    analyser.refresh()
    assert len(popen.calls) == 1  # not before retry_s
    clock.advance(31)
    analyser.refresh()
    assert len(popen.calls) == 2  # the same episode, asked again
    assert sample(analyser, "fleetserve_drift_alerts_total", **MV) == 1
    popen.procs[1].code = 0
    clock.advance(600)
    feed(analyser, drifted[300:])
    analyser.refresh()
    assert len(popen.calls) == 2  # succeeded: settled for the episode


async def test_the_monitor_exports_the_drift_families(repo: Path) -> None:
    class Source:
        def __init__(self, batches: list[RecordBatch]) -> None:
            self.batches = batches

        async def read(self) -> RecordBatch:
            return self.batches.pop(0) if self.batches else RecordBatch()

        async def close(self) -> None:
            pass

    analyser, _, _ = rig(repo)
    x = images(np.random.default_rng(5), 150, shift=0.5)
    monitor = Monitor(Source([RecordBatch(predictions=records(x))]), [analyser])
    registry = CollectorRegistry()
    registry.register(monitor)
    assert await monitor.read_once()
    monitor.refresh()
    assert registry.get_sample_value("fleetserve_monitor_records_total", {"stream": "predictions"}) == 150
    assert registry.get_sample_value("fleetserve_drift_alert", MV) == 1
    psi = registry.get_sample_value(
        "fleetserve_drift_score", {**MV, "feature": "image[0].mean", "test": "psi"}
    )
    assert psi is not None and psi > 1.0
