"""Issue 6's drift acceptance, with the default settings of `fleetserve drift`:

- no alarm over 5,000 requests of undrifted traffic: clean digits of the held-out split
  (validation + test), records built with the prediction log's own code from the committed
  digits v1 model's answers, fed to the drift analyser directly (three orders of traffic);
- a drift alarm within 500 drifted requests, for inverted, shifted and noisy digits, both
  after a window of clean traffic and from a cold start;
- over the network: a real `fleetserve serve` on digits logging to a real Redis, and a real
  `fleetserve drift` reading the stream: clean requests raise nothing, inverted ones raise
  the alarm within 500, and the retrain command runs once with the drifting version in its
  environment; and the same without Redis, the monitor reading the gateway's local files.

The number of requests to the alarm is printed (`pytest -s`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fleetserve.drift.drift_monitor import DriftAnalyser
from fleetserve.drift.reference_build import onnx_probabilities
from fleetserve.drift.references import ReferenceStore
from fleetserve.drift.retrain import Retrainer
from fleetserve.drift.settings import DriftSettings
from fleetserve.predlog.entry import LogEntry
from fleetserve.predlog.records import to_records
from fleetserve.trainer.data import load
from fleetserve.wire import fleet_pb2
from tests.support import models
from tests.support.ports import free_ports
from tests.support.processes import terminate
from tests.support.redis_server import RedisServer
from tests.support.redis_server import redis_server as start_redis
from tests.support.server import ServerProcess

REPO = models.DIGITS.parent
MV = {"model": "digits", "version": "1"}
CLEAN_REQUESTS = 5000
DRIFT_BUDGET = 500  # the alarm must come within this many drifted requests

# --- traffic ---------------------------------------------------------------------------------


def held_out() -> np.ndarray:
    """The digits v1 never trained on: validation and test splits, (630, 1, 8, 8) ink 0..1."""
    data = load(seed=0)
    return np.concatenate([data.validation.images, data.test.images])


def shifted(x: np.ndarray, pixels: int = 2) -> np.ndarray:
    """Moved right by `pixels`, blank on the left."""
    out = np.zeros_like(x)
    out[..., pixels:] = x[..., :-pixels]
    return out


def noisy(x: np.ndarray, sigma: float = 0.2, seed: int = 7) -> np.ndarray:
    """Gaussian noise, clipped to the ink range."""
    rng = np.random.default_rng(seed)
    return np.clip(x + rng.normal(0.0, sigma, x.shape), 0.0, 1.0).astype(np.float32)


DRIFTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "inverted": lambda x: (1.0 - x).astype(np.float32),
    "shifted": shifted,
    "noisy": noisy,
}


def records_of(images: np.ndarray) -> list[fleet_pb2.PredictionRecord]:
    """One record per image, as the gateway logs digits v1's answer (one request per image)."""
    probs = onnx_probabilities(REPO / "digits" / "1" / "model.onnx", {"image": images})
    entry = LogEntry(
        request_id="r", time_ns=0, model="digits", version="1", route="production", route_key=None,
        protocol="rest", latency_s=0.0, inputs={"image": images}, outputs={"probabilities": probs},
        batched=True, labels=[str(i) for i in range(10)], first_output="probabilities",
    )  # fmt: skip
    return to_records(entry)


@pytest.fixture(scope="module")
def clean() -> list[fleet_pb2.PredictionRecord]:
    return records_of(held_out())


def analyser() -> DriftAnalyser:
    """The drift analyser `fleetserve drift` builds from its default settings."""
    s = DriftSettings(model_repository=REPO)
    return DriftAnalyser(
        ReferenceStore(REPO),
        window=s.drift_window(),
        thresholds=s.drift_thresholds(),
        policy=s.drift_alerts(),
        retrainer=Retrainer(None),
    )


class Tracker:
    """Feeds records one request at a time; notes the highest score / threshold seen."""

    def __init__(self) -> None:
        self.analyser = analyser()
        self.highest = 0.0
        self.worst = ""
        self._evaluations = 0

    def feed(self, record: fleet_pb2.PredictionRecord) -> bool:
        """Feed one record; True while the alert is up."""
        a = self.analyser
        a.on_predictions([record])
        v = a._versions[("digits", "1")]
        if v.evaluations != self._evaluations and v.scores is not None:
            self._evaluations = v.evaluations
            for s in v.scores.scores:
                ratio = s.value / a.thresholds.limit(s.test)
                if ratio > self.highest:
                    self.highest, self.worst = ratio, f"{s.feature} {s.test}={s.value:.3f}"
        return v.alert.active

    @property
    def evaluations(self) -> int:
        return self._evaluations


# --- fed directly ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_alarm_over_5000_clean_requests(clean: list[fleet_pb2.PredictionRecord], seed: int) -> None:
    order = np.random.default_rng(seed).integers(0, len(clean), CLEAN_REQUESTS)
    tracker = Tracker()
    alarms = [i for i, j in enumerate(order) if tracker.feed(clean[j])]
    print(
        f"\nclean traffic (order {seed}): {CLEAN_REQUESTS} requests, {tracker.evaluations} evaluations, "
        f"highest score / threshold {tracker.highest:.2f} ({tracker.worst})"
    )
    assert alarms == [], f"alarm at request {alarms[0] + 1}"
    w = tracker.analyser.window  # scored throughout: from min_items on, every evaluate_every
    assert tracker.evaluations == (CLEAN_REQUESTS - w.min_items) // w.evaluate_every + 1
    assert tracker.highest < 1.0  # not one evaluation went over a threshold


@pytest.mark.parametrize("kind", sorted(DRIFTS))
@pytest.mark.parametrize("warm", [True, False], ids=["after-clean", "cold-start"])
def test_alarm_within_500_drifted_requests(
    clean: list[fleet_pb2.PredictionRecord], kind: str, warm: bool
) -> None:
    rng = np.random.default_rng(11)
    drifted = records_of(DRIFTS[kind](held_out()))
    tracker = Tracker()
    if warm:  # a full window of clean traffic first, as in production before the drift
        for j in rng.integers(0, len(clean), 400):
            assert not tracker.feed(clean[j])
    at = next(
        (
            n + 1
            for n, j in enumerate(rng.integers(0, len(drifted), DRIFT_BUDGET))
            if tracker.feed(drifted[j])
        ),
        None,
    )
    when = "after clean traffic" if warm else "cold start"
    print(f"\n{kind} digits ({when}): alarm after {at} drifted requests")
    assert at is not None, f"no alarm within {DRIFT_BUDGET} {kind} requests"


# --- over the network -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


class DriftProcess:
    """`fleetserve drift` on a free metrics port, stopped by its pid."""

    def __init__(self, log_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_ports(1)[0]
        cmd = [sys.executable, "-m", "fleetserve.cli", "drift", "--metrics-port", str(self.port)]
        cmd += ["--host", "127.0.0.1", *args]
        self.log_path = log_path
        self._log = log_path.open("wb")
        base = {k: v for k, v in os.environ.items() if not k.startswith("FLEETSERVE_")}
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**base, "FLEETSERVE_REFRESH_S": "0.1", **(env or {})},
        )

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            text = r.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples().get((name, tuple(sorted(labels.items()))))

    def wait_records(self, n: int, within: float = 30.0) -> None:
        """Until the monitor has taken n digits v1 records into its window, and refreshed."""
        deadline = time.monotonic() + within
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"fleetserve drift exited with {self.proc.returncode}:\n{self.log()}")
            try:
                last = self.value("fleetserve_drift_records_total", **MV)
                if last == n:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        pytest.fail(f"the monitor has {last} records, not {n}, after {within} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        terminate(self.proc)
        self._log.close()


def infer(gateway: ServerProcess, image: np.ndarray) -> None:
    """One REST request of one image."""
    body = {
        "inputs": [
            {"name": "image", "datatype": "FP32", "shape": [1, 1, 8, 8], "data": image.reshape(-1).tolist()}
        ]
    }
    req = urllib.request.Request(
        f"{gateway.base}/v2/models/digits/infer", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def drive(
    gateway: ServerProcess, monitor: DriftProcess, clean_n: int, drifted: np.ndarray, already: int = 0
) -> int:
    """Send clean_n clean requests (no alarm), then drifted ones in steps of 10 until the alarm;
    the number of drifted requests sent by then (`already`: records the monitor had before)."""
    rng = np.random.default_rng(5)
    images = held_out()
    for j in rng.integers(0, len(images), clean_n):
        infer(gateway, images[j])
    clean_n += already
    monitor.wait_records(clean_n)
    assert monitor.value("fleetserve_drift_alert", **MV) == 0
    assert monitor.value("fleetserve_drift_alerts_total", **MV) == 0
    sent = 0
    order = rng.integers(0, len(drifted), DRIFT_BUDGET)
    while sent < DRIFT_BUDGET:
        for j in order[sent : sent + 10]:
            infer(gateway, drifted[j])
        sent += 10
        monitor.wait_records(clean_n + sent)
        if monitor.value("fleetserve_drift_alert", **MV) == 1:
            return sent
    pytest.fail(f"no drift alarm within {DRIFT_BUDGET} drifted requests:\n{monitor.log()}")


def test_drift_alarm_and_retraining_through_serve_redis_and_drift(tmp_path: Path, redis: RedisServer) -> None:
    repo = tmp_path / "models"
    repo.mkdir()
    models.digits_model(repo)
    out = tmp_path / "retrain.json"
    script = (
        "import json, os, sys; json.dump({'argv': sys.argv[1:], 'env': {k: v for k, v in os.environ.items() "
        "if k.startswith('FLEETSERVE_DRIFT_')}}, open(os.environ['OUT'], 'w'))"
    )
    command = json.dumps([sys.executable, "-c", script, "--model", "{model}", "--reason", "drift"])
    env = {"OUT": str(out), "FLEETSERVE_DRIFT_RETRAIN_AFTER_EVALUATIONS": "3"}
    with ServerProcess(
        repo, "--model-control-mode", "none", env={"FLEETSERVE_REDIS_URL": redis.url}
    ) as gateway:
        monitor = DriftProcess(
            tmp_path / "drift.log",
            "--model-repository", str(repo), "--redis-url", redis.url, "--stream-start", "0",
            "--drift-retrain-command", command, "--drift-retrain-after-s", "0.5",
            env=env,
        )  # fmt: skip
        try:
            at = drive(gateway, monitor, 300, DRIFTS["inverted"](held_out()))
            print(f"\nover the network (Redis): alarm after {at} inverted requests")
            deadline = time.monotonic() + 30
            while not out.exists() and time.monotonic() < deadline:
                for image in DRIFTS["inverted"](held_out()[:10]):  # drift goes on
                    infer(gateway, image)
                time.sleep(0.2)
            assert out.exists(), f"the retrain command did not run:\n{monitor.log()}"
            time.sleep(0.5)  # the command has written its file; let the monitor reap it
            seen = json.loads(out.read_text())
            assert seen["argv"] == ["--model", "digits", "--reason", "drift"]
            assert seen["env"]["FLEETSERVE_DRIFT_MODEL"] == "digits"
            assert seen["env"]["FLEETSERVE_DRIFT_VERSION"] == "1"
            assert seen["env"]["FLEETSERVE_DRIFT_REASON"] == "drift"
            assert "image[0].mean:psi" in seen["env"]["FLEETSERVE_DRIFT_FEATURES"]
            started = monitor.value("fleetserve_drift_retrain_triggers_total", **MV, outcome="started")
            assert started == 1
            assert "drift alert raised for digits v1" in monitor.log()
        finally:
            monitor.stop()
    assert monitor.proc.returncode == 0


def test_drift_alarm_from_the_gateway_s_local_files(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    repo.mkdir()
    models.digits_model(repo)
    data = tmp_path / "data"
    env = {"FLEETSERVE_DATA_DIR": str(data), "FLEETSERVE_REDIS_URL": ""}
    with ServerProcess(repo, "--model-control-mode", "none", env=env) as gateway:
        infer(gateway, held_out()[0])  # the file sink's folder and first file exist
        monitor = DriftProcess(
            tmp_path / "drift.log",
            "--model-repository",
            str(repo),
            "--records-dir",
            str(data),
            "--stream-start",
            "0",
        )
        try:
            monitor.wait_records(1)
            at = drive(gateway, monitor, 299, DRIFTS["noisy"](held_out()), already=1)
            print(f"\nover the network (file sink): alarm after {at} noisy requests")
        finally:
            monitor.stop()
    assert monitor.proc.returncode == 0
