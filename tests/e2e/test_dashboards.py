"""End to end: every PromQL query of every Grafana dashboard in k8s/grafana/dashboards returns data.

Real parts: Redis, a gateway (prediction log to Redis, rollout plans from Redis), the rollout
controller, the predlog writer, the drift / quality monitor, and Prometheus scraping all four.
A rollout plan with a canary and a shadow is set through the controller, then bounded load runs:
digits requests (labelled afterwards through the feedback API, so the quality panels have data,
and enough items for a drift evaluation against digits v1's reference profile), `double`
requests over production / canary / shadow, malformed requests (errors by code) and requests
with a deadline they cannot meet (rejections). Each target of each panel, with the dashboard's
variables substituted as Grafana would ("All" models, a rate interval), is then evaluated by
Prometheus at the end of the load.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits

from tests.support import models
from tests.support.ports import free_ports
from tests.support.prometheus import PrometheusProcess
from tests.support.redis_server import redis_server
from tests.support.server import ServerProcess
from tests.support.sidecar import SidecarProcess

DASHBOARDS = Path(__file__).resolve().parents[2] / "k8s" / "grafana" / "dashboards"
DOUBLE = (
    'name: "double"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n'
    'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    'output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    "version_policy: { all: {} }\ndynamic_batching { }\n"
)
RATE_WINDOW = "30s"  # what $__rate_interval stands for: a few dozen 1 s scrapes
# Grafana's "All" for a multi-value variable with allValue ".+"
VARIABLES = {"$__rate_interval": RATE_WINDOW, "$model": ".+", "${model}": ".+"}
ENV = {
    # a drift evaluation after 80 digits items instead of 200 (the load stays short)
    "FLEETSERVE_DRIFT_WINDOW_ITEMS": "120",
    "FLEETSERVE_DRIFT_MIN_ITEMS": "80",
    "FLEETSERVE_DRIFT_EVALUATE_EVERY": "10",
}


@dataclass
class Query:
    dashboard: str
    panel: str
    ref: str
    expr: str


def _queries() -> list[Query]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        dashboard = json.loads(path.read_text())
        names = {v["name"] for v in dashboard.get("templating", {}).get("list", [])}
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for var, value in VARIABLES.items():
                    expr = expr.replace(var, value)
                left = re.findall(r"\$\{?(\w+)", expr)
                assert not left, f"{path.name} / {panel['title']}: unknown variables {left}"
                used = set(re.findall(r"\$\{?(\w+)", target["expr"])) - {"__rate_interval"}
                assert used <= names, f"{path.name} / {panel['title']}: {used - names} not defined"
                found.append(Query(path.name, panel["title"], target["refId"], expr))
    return found


def _post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _prometheus(url: str, path: str, **params: str) -> Any:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}{path}?{query}", timeout=10) as r:
        answer = json.loads(r.read())
    assert answer["status"] == "success", answer
    return answer["data"]


def _rollout(controller: str, *args: str) -> None:
    cmd = [sys.executable, "-m", "fleetserve.cli", "rollout", *args, "--controller", controller]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _digits_images() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    rng = np.random.default_rng(7)  # a little noise: some answers are wrong, as in production
    images = np.clip(data.images[:160] / 16 + rng.normal(0, 0.2, (160, 8, 8)), 0, 1).astype(np.float32)
    return images.reshape(160, 1, 8, 8), data.target[:160]


def _load(gateway: ServerProcess) -> dict[str, int]:
    """Bounded load (a fixed number of requests): returns the count per kind of answer."""
    counts: dict[str, int] = {}

    def count(kind: str, status: int) -> None:
        counts[f"{kind}:{status}"] = counts.get(f"{kind}:{status}", 0) + 1

    images, truth = _digits_images()
    feedback = []
    rng = random.Random(0)
    for n in range(300):
        if n % 7 == 0 and n // 7 < len(images) // 4:  # 40 digits batches of 4, spread over the load
            i = 4 * (n // 7)
            batch = images[i : i + 4]
            body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": list(batch.shape)}]}
            body["inputs"][0]["data"] = batch.reshape(-1).tolist()
            status, answer = _post(f"{gateway.base}/v2/models/digits/infer", body)
            count("digits", status)
            if status == 200:
                rid = answer["parameters"]["request_id"]
                feedback += [
                    {"request_id": rid, "index": k, "label": int(truth[i + k])} for k in range(len(batch))
                ]
        x = [rng.uniform(0, 4) for _ in range(4)]
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x}]}
        key = {"X-Fleetserve-Route-Key": f"user-{rng.randrange(500)}"}
        status, _ = _post(f"{gateway.base}/v2/models/double/infer", body, key)
        count("double", status)
        time.sleep(0.02)  # the load spans several scrapes, so rates see it grow
        if n % 20 == 0:  # wrong shape: invalid_argument
            bad = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": x[:3]}]}
            status, _ = _post(f"{gateway.base}/v2/models/double/infer", bad)
            count("bad", status)
        if n % 25 == 0:  # a 1 microsecond deadline: refused before compute
            late = {**body, "parameters": {"timeout": 1}}
            status, _ = _post(f"{gateway.base}/v2/models/double/infer", late)
            count("late", status)
    # labels for 3 of every 4 items (the quality panels)
    status, answer = _post(f"{gateway.base}/v2/feedback", {"feedback": feedback[: len(feedback) * 3 // 4]})
    count("feedback", status)
    return counts


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, float, dict[str, int]]]:
    """(Prometheus URL, the time the load ended, answers per kind) with every part running."""
    root = tmp_path_factory.mktemp("dashboards")
    repo = root / "models"
    repo.mkdir()
    models.digits_model(repo)
    models.double_model(repo, versions=(1, 2, 3), config=DOUBLE)
    with redis_server(root / "redis") as redis:
        env = {**ENV, "FLEETSERVE_REDIS_URL": redis.url}
        controller_port, predlog_port, drift_port = free_ports(3)
        controller = f"http://127.0.0.1:{controller_port}"
        gateway = ServerProcess(repo, "--repository-poll-secs", "0.5", env=env, log_path=root / "gateway.log")
        rollout = SidecarProcess(
            [
                *("rollout", "serve", "--model-repository", str(repo), "--redis-url", redis.url),
                *("--port", str(controller_port), "--host", "127.0.0.1"),
            ],
            f"{controller}/v1/health",
            root / "rollout.log",
            env,
        )
        predlog = SidecarProcess(
            [
                *("predlog", "--out", str(root / "predlog"), "--redis-url", redis.url),
                *("--metrics-port", str(predlog_port), "--host", "127.0.0.1"),
            ],
            f"http://127.0.0.1:{predlog_port}/metrics",
            root / "predlog.log",
            {**env, "FLEETSERVE_FLUSH_S": "1"},
        )
        drift = SidecarProcess(
            [
                *("drift", "--model-repository", str(repo), "--redis-url", redis.url, "--stream-start", "0"),
                *("--metrics-port", str(drift_port), "--host", "127.0.0.1"),
            ],
            f"http://127.0.0.1:{drift_port}/metrics",
            root / "drift.log",
            env,
        )
        with gateway, rollout, predlog, drift:
            targets = [
                f"127.0.0.1:{p}" for p in (gateway.metrics_port, controller_port, predlog_port, drift_port)
            ]
            with PrometheusProcess(root / "prometheus", targets) as prom:
                _rollout(controller, "promote", "double", "1")
                _rollout(controller, "stage", "double", "3")
                _rollout(controller, "canary", "double", "2", "--weight", "50")
                time.sleep(1.5)  # the gateway applies the plan from Redis (refreshed every 0.5 s)
                counts = _load(gateway)
                ended = time.time()
                _wait_scraped(prom.url, len(targets), ended + 2)
                yield prom.url, ended, counts
                for process in (gateway, rollout, predlog, drift):
                    assert process.proc is not None and process.proc.poll() is None, process.log()


def _wait_scraped(url: str, targets: int, after: float, timeout: float = 60) -> None:
    """Until every target has been scraped, successfully, after `after` (unix seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        up = _prometheus(url, "/api/v1/query", query="up")["result"]
        if len(up) == targets and all(float(s["value"][0]) >= after and s["value"][1] == "1" for s in up):
            return
        time.sleep(0.5)
    raise AssertionError(f"targets not scraped after {after}: {up}")


def test_the_load_reached_every_route_and_error(evaluated: tuple[str, float, dict[str, int]]) -> None:
    _, _, counts = evaluated
    assert counts["digits:200"] == 40 and counts["feedback:200"] == 1
    assert counts["double:200"] == 300
    assert counts["bad:400"] == 15
    refused = sum(v for k, v in counts.items() if k in ("late:503", "late:504"))
    assert refused == 12, counts


def test_every_dashboard_has_panels_with_queries() -> None:
    queries = _queries()
    dashboards = {q.dashboard for q in queries}
    assert {"fleetserve-serving.json", "fleetserve-rollout.json", "fleetserve-data.json"} <= dashboards
    assert "fleetserve-quality.json" in dashboards
    for path in DASHBOARDS.glob("*.json"):
        dashboard = json.loads(path.read_text())
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)) and all(p["title"] for p in dashboard["panels"]), path.name


def _finite(result: list[dict[str, Any]]) -> bool:
    return any(np.isfinite(float(s["value"][1])) for s in result)


@pytest.mark.parametrize("query", _queries(), ids=lambda q: f"{q.dashboard}:{q.panel}:{q.ref}")
def test_every_panel_query_returns_data(evaluated: tuple[str, float, dict[str, int]], query: Query) -> None:
    """Evaluated as Grafana would right after the load; a sidecar's gauges may come a little later."""
    url, ended, _ = evaluated
    at = ended + 2
    deadline = time.monotonic() + 30
    while True:
        result = _prometheus(url, "/api/v1/query", query=query.expr, time=f"{at:.3f}")["result"]
        if _finite(result) or time.monotonic() > deadline:
            break
        time.sleep(1)
        at = time.time() - 1
    assert _finite(result), (
        f"{query.dashboard} / {query.panel} [{query.ref}]: no data for {query.expr}: {result}"
    )
