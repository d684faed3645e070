"""End to end: two gateway replicas on one repository, a real Prometheus scraping them, and the
rollout controller. `fleetserve rollout auto` promotes a good candidate and rolls back a bad one
(one that errors on a share of requests, and one that answers the wrong classes), recording why.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetserve.rollout.plan import RolloutPlan
from tests.support import models
from tests.support.ports import free_ports
from tests.support.prometheus import PrometheusProcess
from tests.support.server import ServerProcess

CONFIG = (
    'name: "double"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 4\n'
    'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    'output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    "version_policy: { all: {} }\ndynamic_batching { }\n"
)
AUTO = [
    "--steps",
    "50,100",
    "--shadow-requests",
    "20",
    "--dwell-s",
    "3",
    "--poll-s",
    "1",
    "--timeout-s",
    "45",
]
ENV = {
    "FLEETSERVE_GUARDRAILS__MIN_REQUESTS": "15",
    "FLEETSERVE_AUTO__WINDOW_S": "5",
    "FLEETSERVE_AUTO__BASELINE_WINDOW_S": "60",
}


class Traffic:
    """Requests round-robin over the replicas until stopped (bounded to 5 minutes); a share
    of inputs hold values >= 4, which the erroring candidate cannot take."""

    def __init__(self, servers: list[ServerProcess]) -> None:
        self.servers = servers
        self.stop = threading.Event()
        self.answers: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(0)
        deadline = time.monotonic() + 300
        i = 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            server = self.servers[i % len(self.servers)]
            i += 1
            x = [rng.uniform(0, 3.9) for _ in range(4)]
            if rng.random() < 0.3:
                x[rng.randrange(4)] = rng.uniform(4, 9)
            body = json.dumps(
                {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x}]}
            ).encode()
            headers = {"X-Fleetserve-Route-Key": f"user-{rng.randrange(1000)}"}
            req = urllib.request.Request(
                f"{server.base}/v2/models/double/infer", data=body, headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    self.answers.append(json.loads(r.read())["model_version"])
            except urllib.error.HTTPError as e:
                self.answers.append(f"error-{e.code}")
            except (urllib.error.URLError, OSError):
                self.answers.append("unreachable")
            time.sleep(0.005)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("e2e")
    repo = root / "models"
    models.double_model(repo, versions=(1,), config=CONFIG)
    models.scaled_model(repo, "double", 2, 2.0)  # good: same answers as production
    models.failing_model(repo, "double", 3)  # errors on inputs >= 4 (30% of traffic)
    models.scaled_model(repo, "double", 4, -2.0)  # wrong classes
    for v in (1, 2, 3, 4):
        (repo / "double" / str(v) / "metadata.json").write_text(json.dumps({"version": v, "metrics": {}}))
    # production is version 1 before any candidate is staged (without a plan, the highest serves)
    (repo / "double" / "rollout.json").write_text(RolloutPlan(model="double", production=1).model_dump_json())
    with (
        ServerProcess(repo, "--repository-poll-secs", "0.5") as a,
        ServerProcess(repo, "--repository-poll-secs", "0.5") as b,
    ):
        targets = [f"127.0.0.1:{a.metrics_port}", f"127.0.0.1:{b.metrics_port}"]
        with PrometheusProcess(root / "prometheus", targets) as prom:
            port = free_ports(1)[0]
            env = {**os.environ, **ENV}
            env.pop("FLEETSERVE_ADMIN_TOKEN", None)
            cmd = [
                sys.executable,
                "-m",
                "fleetserve.cli",
                "rollout",
                "serve",
                "--model-repository",
                str(repo),
            ]
            cmd += ["--prometheus-url", prom.url, "--port", str(port), "--host", "127.0.0.1"]
            with open(root / "controller.log", "wb") as log:
                controller = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
                url = f"http://127.0.0.1:{port}"
                try:
                    _wait_http(f"{url}/v1/health")
                    with Traffic([a, b]) as traffic:
                        yield repo, url
                    assert a.alive() and b.alive()
                    assert not [x for x in traffic.answers if x == "unreachable"]
                finally:
                    controller.terminate()
                    controller.wait(15)


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def _rollout(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV}
    env.pop("FLEETSERVE_ADMIN_TOKEN", None)
    cmd = [sys.executable, "-m", "fleetserve.cli", "rollout", *args, "--controller", url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def _plan(repo: Path) -> dict:
    return json.loads((repo / "double" / "rollout.json").read_text())


def test_auto_promotes_a_good_candidate(cluster: tuple[Path, str]) -> None:
    repo, url = cluster
    done = _rollout(url, "auto", "double", "2", *AUTO, "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    plan = _plan(repo)
    assert plan["production"] == 2 and plan["canary"] is None and plan["shadows"] == []
    stages = [(t["from_stage"], t["to_stage"]) for t in plan["history"] if t["version"] == 2]
    assert stages[0] == ("none", "shadow") and stages[-1][1] == "production"
    status = _rollout(url, "status", "double")
    assert status.returncode == 0 and "production" in status.stdout


@pytest.mark.parametrize(("version", "guardrail"), [(3, "error_rate"), (4, "shadow_agreement")])
def test_auto_rolls_back_a_bad_candidate_with_the_reason(
    cluster: tuple[Path, str], version: int, guardrail: str
) -> None:
    repo, url = cluster
    done = _rollout(url, "auto", "double", str(version), *AUTO, "--wait")
    print(done.stdout)
    assert done.returncode != 0, done.stdout
    plan = _plan(repo)
    assert plan["production"] == 2 and plan["canary"] is None and version not in plan["shadows"]
    last = plan["history"][-1]
    assert last["version"] == version and last["to_stage"] == "rolled_back"
    assert last["reason"] == f"guardrail:{guardrail}", last
    assert last["detail"], "the guardrail's values are recorded"
