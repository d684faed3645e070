"""`fleetserve drift` against a real redis-server: predictions, then feedback for a known share
of them, go onto the streams with XADD; the monitor's exported `fleetserve_quality_*` values
equal the metrics computed here directly from the labels (scikit-learn), and the labelled
ratio equals the share. Redis stopped and restarted: the last values stay served, and reading
resumes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.metrics import confusion_matrix as sk_confusion

from fleetserve.wire import fleet_pb2
from tests.support.ports import free_ports
from tests.support.processes import terminate
from tests.support.redis_server import RedisServer
from tests.support.redis_server import redis_server as start_redis

PREDICTIONS, FEEDBACK = "fleetserve:predictions", "fleetserve:feedback"
NS = 1_000_000_000
K = 10  # classes
TOL = 1e-9

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """redis-server with CONTRACT.md's append-only file (a restart keeps the streams)."""
    with start_redis(tmp_path / "redis") as server:
        yield server


class DriftProcess:
    """`fleetserve drift` on a free metrics port, stopped by its pid."""

    def __init__(self, repo: Path, redis_url: str, log_path: Path, *args: str) -> None:
        self.port = free_ports(1)[0]
        cmd = [sys.executable, "-m", "fleetserve.cli", "drift", "--model-repository", str(repo)]
        cmd += ["--redis-url", redis_url, "--metrics-port", str(self.port), "--host", "127.0.0.1", *args]
        self.log_path = log_path
        self._log = log_path.open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETSERVE_")}
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def samples(self) -> Samples:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
            text = r.read().decode()
        out: Samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def wait(self, condition: Callable[[Samples], bool], within: float = 30.0) -> Samples:
        deadline = time.monotonic() + within
        last: Samples = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"fleetserve drift exited with {self.proc.returncode}:\n{self.log()}")
            try:
                last = self.samples()
                if condition(last):
                    return last
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        pytest.fail(f"not within {within} s; last samples: {sorted(last.items())[:40]}\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        terminate(self.proc)
        self._log.close()
        return self.proc.returncode


def get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@dataclass
class Version:
    """What was sent for one model version, to compute the expected metrics from."""

    model: str
    version: str
    predicted: int = 0
    truth: list[int] = field(default_factory=list)
    preds: list[int] = field(default_factory=list)
    conf: list[float] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)


def send(
    client: redis.Redis,
    v: Version,
    n: int,
    share: float,
    seed: int,
    replaced_every: int = 0,
) -> list[bytes]:
    """XADD n predictions of `v`, then (returned, to XADD later) labels for `share` of them.

    Every `replaced_every`-th labelled item first gets a wrong label, then the right one
    (replaced=True); the delay counts from the first.
    """
    rng = np.random.default_rng(seed)
    base = time.time_ns() - 3600 * NS
    labels: list[bytes] = []
    chosen = set(rng.choice(n, size=round(n * share), replace=False).tolist())
    for i in range(n):
        rid = f"{v.model}-{v.version}-{seed}-{i:05d}:0"
        truth = int(rng.integers(0, K))
        pred = truth if rng.random() < 0.8 else int(rng.integers(0, K))
        conf = float(np.float32(rng.uniform(0.05, 1.0)))  # what float32 keeps
        t_pred = base + i * 1_000_000
        record = fleet_pb2.PredictionRecord(
            schema_version=1,
            record_id=rid,
            request_id=rid[:-2],
            model=v.model,
            version=v.version,
            route="production",
            time_unix_ns=t_pred,
            top=[fleet_pb2.ClassScore(index=pred, score=conf), fleet_pb2.ClassScore(index=(pred + 1) % K)],
            confidence=conf,
        )
        client.xadd(PREDICTIONS, {"record": record.SerializeToString()})
        v.predicted += 1
        if i not in chosen:
            continue
        t_label = t_pred + int(rng.integers(1, 3 * 86400)) * 1_000_000  # up to 3 days, in ms
        common = {"record_id": rid, "request_id": rid[:-2], "model": v.model, "version": v.version}
        if replaced_every and len(v.truth) % replaced_every == 0:
            wrong = fleet_pb2.FeedbackRecord(**common, label=(truth + 3) % K, time_unix_ns=t_label)
            labels.append(wrong.SerializeToString())
            fixed = fleet_pb2.FeedbackRecord(**common, label=truth, time_unix_ns=t_label + NS, replaced=True)
            labels.append(fixed.SerializeToString())
        else:
            labels.append(
                fleet_pb2.FeedbackRecord(**common, label=truth, time_unix_ns=t_label).SerializeToString()
            )
        v.truth.append(truth)
        v.preds.append(pred)
        v.conf.append(conf)
        v.delays.append((t_label - t_pred) / 1e9)
    return labels


def reference_ece(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for i in range(bins):
        inside = (confidence > edges[i]) & (confidence <= edges[i + 1])
        if i == 0:
            inside |= confidence <= edges[0]
        if inside.any():
            gap = abs(float(np.mean(correct[inside])) - float(np.mean(confidence[inside])))
            total += inside.sum() / confidence.size * gap
    return total


def check(samples: Samples, v: Version, share: float) -> None:
    """The exported figures of `v` against those computed from what was sent."""
    mv = {"model": v.model, "version": v.version}
    truth, preds = np.array(v.truth), np.array(v.preds)
    assert get(samples, "fleetserve_quality_labelled_items", **mv) == len(v.truth)
    assert get(samples, "fleetserve_quality_predicted_items", **mv) == v.predicted
    ratio = get(samples, "fleetserve_quality_labelled_ratio", **mv)
    assert ratio == pytest.approx(share, abs=TOL)
    assert get(samples, "fleetserve_quality_accuracy", **mv) == pytest.approx(
        accuracy_score(truth, preds), abs=TOL
    )
    classes = np.union1d(truth, preds)
    p, r, f, _ = precision_recall_fscore_support(truth, preds, labels=classes, average=None, zero_division=0)
    matrix = sk_confusion(truth, preds, labels=classes)
    for i, c in enumerate(classes.tolist()):
        cl = {**mv, "class": str(c)}
        assert get(samples, "fleetserve_quality_precision", **cl) == pytest.approx(p[i], abs=TOL)
        assert get(samples, "fleetserve_quality_recall", **cl) == pytest.approx(r[i], abs=TOL)
        assert get(samples, "fleetserve_quality_f1", **cl) == pytest.approx(f[i], abs=TOL)
        for j, d in enumerate(classes.tolist()):
            cell = get(samples, "fleetserve_quality_confusion", **mv, true=str(c), predicted=str(d))
            assert cell == matrix[i, j]
    ece = reference_ece(np.array(v.conf), truth == preds)
    assert get(samples, "fleetserve_quality_ece", **mv) == pytest.approx(ece, abs=TOL)
    delays = np.array(v.delays)
    mean = get(samples, "fleetserve_quality_label_delay_mean_seconds", **mv)
    assert mean == pytest.approx(float(np.mean(delays)), rel=TOL)
    for quantile, pct in (("0.5", 50), ("0.95", 95)):
        got = get(samples, "fleetserve_quality_label_delay_seconds", **mv, quantile=quantile)
        assert got == pytest.approx(float(np.percentile(delays, pct)), rel=TOL)


def labelled(v: Version) -> Callable[[Samples], bool]:
    mv = {"model": v.model, "version": v.version}
    return lambda s: (
        get(s, "fleetserve_quality_labelled_items", **mv) == len(v.truth)
        and (get(s, "fleetserve_quality_predicted_items", **mv) == v.predicted)
    )


def test_exported_quality_equals_the_metrics_of_the_labels(redis_server: RedisServer, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_server.url)
    old = Version("old", "1")
    client.xadd(FEEDBACK, {"record": b"\xff not a record"})
    for label in send(client, old, 20, 0.5, seed=9):  # before the monitor: '$' skips them
        client.xadd(FEEDBACK, {"record": label})
    (tmp_path / "repo").mkdir()
    drift = DriftProcess(tmp_path / "repo", redis_server.url, tmp_path / "drift.log")
    try:
        drift.wait(lambda s: get(s, "fleetserve_monitor_stream_up") == 1)
        production, canary = Version("digits", "1"), Version("digits", "2")
        labels = send(client, production, 600, 0.45, seed=1, replaced_every=7)
        labels += send(client, canary, 300, 1 / 3, seed=2)
        for label in labels:
            client.xadd(FEEDBACK, {"record": label})
        unknown = fleet_pb2.FeedbackRecord(record_id="never-logged:0", label=1, time_unix_ns=time.time_ns())
        client.xadd(FEEDBACK, {"record": unknown.SerializeToString()})
        client.xadd(PREDICTIONS, {"record": b"\x00\x01garbage"})
        samples = drift.wait(
            lambda s: (
                labelled(production)(s)
                and labelled(canary)(s)
                and get(s, "fleetserve_quality_waiting_labels") == 1
            )
        )
        check(samples, production, 0.45)
        check(samples, canary, 1 / 3)
        assert get(samples, "fleetserve_quality_replaced_labels_total") == len(range(0, 270, 7))
        assert get(samples, "fleetserve_monitor_undecodable_records_total", stream="predictions") == 1
        assert get(samples, "fleetserve_monitor_undecodable_records_total", stream="feedback") == 0
        assert get(samples, "fleetserve_monitor_records_total", stream="predictions") == 900
        assert all(dict(lbls).get("model") != "old" for _, lbls in samples)  # read from '$' on
    finally:
        assert drift.stop() == 0, drift.log()
        client.close()


def test_given_start_id_and_a_redis_restart(redis_server: RedisServer, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_server.url)
    first = Version("digits", "1")
    for label in send(client, first, 200, 0.25, seed=3):  # before the monitor, read from 0
        client.xadd(FEEDBACK, {"record": label})
    (tmp_path / "repo").mkdir()
    drift = DriftProcess(tmp_path / "repo", redis_server.url, tmp_path / "drift.log", "--stream-start", "0")
    try:
        samples = drift.wait(labelled(first))
        check(samples, first, 0.25)
        redis_server.stop()
        down = drift.wait(lambda s: get(s, "fleetserve_monitor_stream_up") == 0)
        check(down, first, 0.25)  # the last values stay served
        time.sleep(1.5)  # refreshes would have happened
        check(drift.samples(), first, 0.25)
        redis_server.start()
        client = redis.Redis.from_url(redis_server.url)
        later = Version("digits", "3")
        for label in send(client, later, 100, 0.5, seed=4):
            client.xadd(FEEDBACK, {"record": label})
        samples = drift.wait(labelled(later))
        check(samples, later, 0.5)
        check(samples, first, 0.25)
    finally:
        assert drift.stop() == 0, drift.log()
        client.close()


def test_without_redis_or_repository_exits_with_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETSERVE_")}
    cmd = [sys.executable, "-m", "fleetserve.cli", "drift", "--model-repository"]
    missing = subprocess.run([*cmd, str(tmp_path / "nope")], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
    no_redis = subprocess.run([*cmd, str(tmp_path)], capture_output=True, text=True, env=env)
    assert no_redis.returncode == 2 and "--redis-url" in no_redis.stderr
    bad = subprocess.run(
        [*cmd, str(tmp_path), "--redis-url", "redis://127.0.0.1:1", "--stream-start", "later"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and "stream start" in bad.stderr
