"""The rollout plan on a real server: sticky canary split, plan changes picked up within a
second, and shadows that fail or are slow leave the primary's answers and latency alone."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetserve.rollout.plan import RolloutPlan
from tests.support import models
from tests.support.server import ServerProcess

ALL_VERSIONS = "version_policy: { all: {} }\n"
CONFIG = (
    'name: "double"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 4\n'
    'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    'output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n' + ALL_VERSIONS
)


def _write_plan(repo: Path, plan: RolloutPlan) -> None:
    path = repo / "double" / "rollout.json"
    tmp = path.with_name(".rollout.json.tmp")
    tmp.write_text(plan.model_dump_json())
    tmp.replace(path)


def _infer(server: ServerProcess, x: list[float], key: str | None = None) -> tuple[str, list[float], float]:
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x}]}).encode()
    headers = {"X-Fleetserve-Route-Key": key} if key else {}
    req = urllib.request.Request(
        f"{server.base}/v2/models/double/infer", data=body, headers=headers, method="POST"
    )
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=10) as r:
        answer = json.loads(r.read())
    return answer["model_version"], answer["outputs"][0]["data"], time.perf_counter() - started


def _metrics(server: ServerProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as r:
        return r.read().decode()


def _value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("rollout") / "models"
    models.double_model(repo, versions=(1, 2), config=CONFIG)
    models.failing_model(repo, "double", 3)
    models.slow_model(repo, "double", 4)
    _write_plan(repo, RolloutPlan(model="double", production=1, canary=2, canary_weight=50.0))
    return repo


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repo, "--repository-poll-secs", "0.5") as proc:
        yield proc


def test_sticky_keys_land_on_one_version_and_the_split_follows_the_weight(server: ServerProcess) -> None:
    first = {f"user-{i}": _infer(server, [1, 1, 1, 1], f"user-{i}")[0] for i in range(200)}
    again = {key: _infer(server, [1, 1, 1, 1], key)[0] for key in list(first)[:50]}
    assert all(first[k] == v for k, v in again.items()), "a sticky key changed version"
    shares = Counter(first.values())
    assert set(shares) == {"1", "2"}
    assert 60 <= shares["2"] <= 140, shares  # 50% of 200 keys, well within binomial bounds
    unkeyed = Counter(_infer(server, [1, 1, 1, 1])[0] for _ in range(200))
    assert 60 <= unkeyed["2"] <= 140, unkeyed
    for version, y, _ in (_infer(server, [1, 2, 3, 4], "k") for _ in range(3)):
        assert y == [2.0 * int(version) * v for v in (1, 2, 3, 4)]


def test_plan_change_applies_within_a_second_and_explicit_version_wins(
    repo: Path, server: ServerProcess
) -> None:
    _write_plan(repo, RolloutPlan(model="double", production=2, revision=5))
    time.sleep(1.0)  # replicas pick a change up within a second
    assert {_infer(server, [1, 1, 1, 1], f"k{i}")[0] for i in range(30)} == {"2"}
    body = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]}]}
    ).encode()
    req = urllib.request.Request(f"{server.base}/v2/models/double/versions/1/infer", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert json.loads(r.read())["model_version"] == "1"
    text = _metrics(server)
    assert _value(text, "fleetserve_route_weight", model="double", version="2", route="production") == 100.0


def test_failing_and_slow_shadows_change_nothing_for_the_primary(repo: Path, server: ServerProcess) -> None:
    _write_plan(repo, RolloutPlan(model="double", production=1, shadows=[2, 3, 4], revision=10))
    time.sleep(1.2)
    before = _metrics(server)
    latencies = []
    for i in range(40):
        # inputs >= 4 make version 3 fail; version 4 burns compute first
        version, y, seconds = _infer(server, [5.0, 6.0, 7.0, float(i)])
        assert version == "1" and y == [10.0, 12.0, 14.0, 2.0 * i]
        latencies.append(seconds)
    time.sleep(1.0)  # let the shadows finish
    after = _metrics(server)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("fleetserve_shadow_compared_total", model="double", version="2", agree="true") == 40
    assert (
        delta(
            "fleetserve_requests_total", model="double", version="3", route="shadow", code="invalid_argument"
        )
        + delta("fleetserve_requests_total", model="double", version="3", route="shadow", code="internal")
        == 40
    )
    assert delta("fleetserve_requests_total", model="double", version="4", route="shadow", code="ok") >= 1
    assert (
        delta("fleetserve_requests_total", model="double", version="1", route="production", code="ok") == 40
    )
    assert server.alive()
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.5  # the primary answered without waiting on shadows
