"""Predictions through a real gateway, then feedback for a known share of them through the
feedback API, then the quality metrics that `fleetserve drift` exports equal those computed
directly from the labels. Unknown ids and malformed feedback get clear answers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score

from tests.support import models
from tests.support.ports import free_ports
from tests.support.redis_server import RedisServer
from tests.support.redis_server import redis_server as start_redis
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, redis: RedisServer) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("fb") / "models"
    repo.mkdir()
    models.digits_model(repo)
    with ServerProcess(repo, "--model-control-mode", "none", env={"FLEETSERVE_REDIS_URL": redis.url}) as proc:
        yield proc


def _post(url: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _predict(gateway: ServerProcess, images: np.ndarray) -> list[tuple[str, list[int]]]:
    answers = []
    for i in range(0, len(images), 4):  # batch requests of 4 items: labels go per (request_id, index)
        batch = images[i : i + 4]
        body = {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "FP32",
                    "shape": list(batch.shape),
                    "data": batch.reshape(-1).tolist(),
                }
            ]
        }
        status, answer = _post(f"{gateway.base}/v2/models/digits/infer", body)
        assert status == 200, answer
        probs = np.asarray(answer["outputs"][0]["data"]).reshape(len(batch), 10)
        answers.append((answer["parameters"]["request_id"], probs.argmax(axis=1).tolist()))
    return answers


def _quality(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("model") == "digits" and s.labels.get("version") == "1" and len(s.labels) == 2:
                out[s.name] = s.value
    return out


def test_live_accuracy_equals_the_labels(tmp_path: Path, gateway: ServerProcess, redis: RedisServer) -> None:
    data = load_digits()
    # photos of a different hand: add noise so the model makes some mistakes
    rng = np.random.default_rng(3)
    images = np.clip(data.images[:160] / 16 + rng.normal(0, 0.35, (160, 8, 8)), 0, 1).astype(np.float32)
    truth = data.target[:160]
    port = free_ports(1)[0]
    cmd = [sys.executable, "-m", "fleetserve.cli", "drift", "--model-repository", str(gateway.repository)]
    cmd += [
        "--redis-url",
        redis.url,
        "--metrics-port",
        str(port),
        "--host",
        "127.0.0.1",
        "--stream-start",
        "0",
    ]
    with open(tmp_path / "drift.log", "wb") as log:
        drift = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            answers = _predict(gateway, images.reshape(160, 1, 8, 8))
            predicted = np.array([p for _, ps in answers for p in ps])
            # labels for 3 of every 4 requests (a known share: 75%), by class index and by label name
            feedback, labelled = [], []
            for n, (rid, _) in enumerate(answers):
                if n % 4 == 3:
                    continue
                for index in range(4):
                    item = 4 * n + index
                    label = int(truth[item]) if index % 2 else str(truth[item])
                    feedback.append({"request_id": rid, "index": index, "label": label})
                    labelled.append(item)
            status, result = _post(f"{gateway.base}/v2/feedback", {"feedback": feedback})
            assert status == 200 and result["accepted"] == len(feedback) and not result["unknown"], result
            expected_accuracy = accuracy_score(truth[labelled], predicted[labelled])
            assert 0.3 < expected_accuracy < 1.0  # the noise makes mistakes to count
            deadline = time.monotonic() + 30
            got: dict[str, float] = {}
            while time.monotonic() < deadline:
                try:
                    got = _quality(port)
                except (urllib.error.URLError, ConnectionError):
                    got = {}
                if got.get("fleetserve_quality_labelled_items") == len(labelled):
                    break
                time.sleep(0.2)
            assert got.get("fleetserve_quality_labelled_items") == len(labelled), got
            assert got["fleetserve_quality_accuracy"] == pytest.approx(expected_accuracy, abs=1e-9)
            assert got["fleetserve_quality_labelled_ratio"] == pytest.approx(0.75, abs=1e-9)
        finally:
            drift.terminate()
            drift.wait(15)


def test_unknown_ids_replaced_labels_and_malformed_feedback(gateway: ServerProcess) -> None:
    ((rid, _),) = _predict(gateway, np.zeros((4, 1, 8, 8), dtype=np.float32))
    status, result = _post(
        f"{gateway.base}/v2/feedback", [{"request_id": rid, "label": 1}, {"request_id": "nope", "label": 2}]
    )
    assert status == 200 and result["accepted"] == 1 and result["unknown"] == ["nope"]
    status, result = _post(f"{gateway.base}/v2/feedback", {"request_id": rid, "label": "3"})
    assert status == 200 and result["replaced"] == [
        {"request_id": rid, "index": 0, "previous": 1, "label": 3}
    ]
    status, result = _post(f"{gateway.base}/v2/feedback", {"request_id": rid, "index": 9, "label": 1})
    assert status == 200 and result["accepted"] == 0 and "item" in result["errors"][0]["error"]
    status, result = _post(f"{gateway.base}/v2/feedback", [{"label": 1}])
    assert status == 400 and "request_id" in result["error"]
    req = urllib.request.Request(f"{gateway.base}/v2/feedback", data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 400


def test_feedback_cli(tmp_path: Path, gateway: ServerProcess) -> None:
    ((rid, _),) = _predict(gateway, np.zeros((4, 1, 8, 8), dtype=np.float32))
    path = tmp_path / "labels.jsonl"
    path.write_text(
        "\n".join(json.dumps({"request_id": rid, "index": i, "label": i}) for i in range(4)) + "\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "fleetserve.cli", "feedback", str(path), "--url", gateway.base],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "accepted 4 label(s)" in done.stdout
    path.write_text(json.dumps({"request_id": "missing-id", "label": 1}) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "fleetserve.cli", "feedback", str(path), "--url", gateway.base],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "unknown request ids (1): missing-id" in done.stdout
