"""End to end: `fleetserve up` with nginx in front of 2 replicas, Redis, Prometheus and the
sidecars, on free loopback ports.

The data plane's tritonclient conformance passes through nginx (the tests that hold per-replica
state, statistics and repository load / unload, stay with a single server); Prometheus has every
replica as an up target; a replica killed under load through nginx costs <= 0.1% failed requests
and takes traffic again once restarted; a 20-second Locust run fails no request; SIGTERM to
`fleetserve up` leaves no process and no port behind.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from prometheus_client.parser import text_string_to_metric_families

from fleetserve.cluster import programs
from loadtests.bench import drop_latency_slo
from tests.integration.test_tritonclient import (  # noqa: F401 - conformance tests and their fixtures
    client,
    images,
    reference,
    test_grpc_health_service,
    test_grpc_large_batch_over_default_message_limit,
    test_grpc_stream_infer,
    test_health_and_metadata,
    test_infer_matches_onnxruntime,
    test_model_config,
)
from tests.support import models
from tests.support.cluster import ClusterProcess, cluster_ports, http_status, listening, pid_alive, require

ROOT = Path(__file__).resolve().parents[2]
REPLICAS = 2


@pytest.fixture(scope="module")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits (without its 10 ms latency SLO), double, and identity_wide for the large batch.

    With its SLO, digits refuses requests that wait over 10 ms (504, by design); on two cores
    shared by the client, nginx, the replicas and the sidecars some do, and this module tests
    the cluster's path, not that policy (the batching tests do).
    """
    repo = tmp_path_factory.mktemp("cluster-repo") / "models"
    repo.mkdir()
    models.digits_model(repo)
    drop_latency_slo(repo / "digits" / "config.pbtxt")
    models.double_model(repo)
    models.identity_model(repo, "FP32", name="identity_wide", width="W")
    return repo


@pytest.fixture(scope="module")
def cluster(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    require(programs.NGINX, programs.REDIS, programs.PROMETHEUS)
    data = tmp_path_factory.mktemp("cluster") / "data"
    with ClusterProcess(model_repo, data, replicas=REPLICAS) as proc:
        yield proc


@pytest.fixture(scope="module")
def server(cluster: ClusterProcess) -> ClusterProcess:
    """The conformance tests' server: the cluster's front (nginx on HTTP and gRPC)."""
    return cluster


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def test_everything_runs_and_nginx_fronts_the_replicas(cluster: ClusterProcess) -> None:
    state = cluster.state()
    names = [p["name"] for p in state["processes"]]
    assert names == ["redis", "prometheus", "replica-0", "replica-1", "nginx", "rollout", "predlog", "drift"]
    assert all(p["alive"] for p in state["processes"]) and state["left_out"] == []
    assert cluster.get("/nginx/health") == b"ok\n"
    out = cluster.output()
    assert f"http://127.0.0.1:{cluster.port(8000)}/v2" in out and f"127.0.0.1:{cluster.port(8001)}" in out
    assert cluster.process("replica-1")["ports"] == {
        "HTTP": cluster.port(18010),
        "gRPC": cluster.port(18011),
        "metrics": cluster.port(18012),
    }


def test_request_id_is_propagated_or_generated_and_logged(cluster: ClusterProcess) -> None:
    body = json.dumps(
        {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 8, 8], "data": [0.5] * 64}]}
    )
    conn = http.client.HTTPConnection("127.0.0.1", cluster.port(8000), timeout=10)
    try:
        conn.request("POST", "/v2/models/digits/infer", body, {"X-Request-ID": "from-the-client-1"})
        given = conn.getresponse()
        given.read()
        conn.request("POST", "/v2/models/digits/infer", body)
        made = conn.getresponse()
        answer = json.loads(made.read())
    finally:
        conn.close()
    assert given.status == 200 and given.getheader("x-request-id") == "from-the-client-1"
    rid = made.getheader("x-request-id") or ""
    assert made.status == 200 and re.fullmatch(r"[0-9a-f]{32}", rid)
    assert answer["parameters"]["request_id"] == rid
    log = cluster.data_dir / "logs" / "nginx-access.log"
    _wait(lambda: f"request_id={rid} " in log.read_text(), 10, "the generated id in nginx's access log")
    line = next(x for x in log.read_text().splitlines() if f"request_id={rid} " in x)
    assert "upstream_response_time=" in line and "upstream=127.0.0.1:" in line
    assert "request_id=from-the-client-1 " in log.read_text()


def test_prometheus_has_every_replica_as_an_up_target(cluster: ClusterProcess) -> None:
    prometheus = cluster.port(9090)

    def replicas_up() -> bool:
        targets = json.loads(cluster.get("/api/v1/targets", port=prometheus))["data"]["activeTargets"]
        mine = {t["labels"]["process"]: t["health"] for t in targets if t["labels"]["job"] == "fleetserve"}
        return mine == {f"replica-{i}": "up" for i in range(REPLICAS)}

    sidecars = {"rollout", "predlog", "drift", "prometheus"}

    def all_scraped() -> bool:
        query = json.loads(cluster.get("/api/v1/query?query=up", port=prometheus))["data"]["result"]
        return set(r["metric"]["process"] for r in query) >= sidecars | {"replica-0", "replica-1"}

    _wait(replicas_up, 30, "both replicas up in Prometheus")
    # each target is scraped on its own schedule: wait until every one has been once
    _wait(all_scraped, 30, "every process scraped by Prometheus")
    query = json.loads(cluster.get("/api/v1/query?query=up", port=prometheus))["data"]["result"]
    up = {r["metric"]["process"]: r["value"][1] for r in query}
    assert {name: up.get(name) for name in ("replica-0", "replica-1")} == {"replica-0": "1", "replica-1": "1"}
    assert {name: up[name] for name in sidecars} == dict.fromkeys(sidecars, "1")


class Load:
    """REST and gRPC infer requests through nginx from a few threads until stopped (bounded to
    120 s and 40000 requests per thread); counts answers and failures.

    A gRPC call in flight on the replica at the moment it dies fails (UNAVAILABLE): nginx sends
    gRPC request bodies unbuffered, so it cannot send them again; REST requests are retried.
    """

    def __init__(self, cluster: ClusterProcess, threads: int = 2) -> None:
        self.cluster = cluster
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failed: list[str] = []
        self.threads = [threading.Thread(target=self._rest, daemon=True) for _ in range(threads)]
        self.threads += [threading.Thread(target=self._grpc, daemon=True) for _ in range(threads)]
        self.x = np.arange(4, dtype=np.float32).reshape(1, 4)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    @property
    def total(self) -> int:
        return self.ok + len(self.failed)

    def _count(self, failure: str | None) -> None:
        with self.lock:
            if failure is None:
                self.ok += 1
            else:
                self.failed.append(failure)

    def _running(self, sent: int, deadline: float) -> bool:
        return not self.stop.is_set() and sent < 40_000 and time.monotonic() < deadline

    def _rest(self) -> None:
        body = json.dumps(
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0, 1, 2, 3]}]}
        )
        conn = http.client.HTTPConnection("127.0.0.1", self.cluster.port(8000), timeout=30)
        sent, deadline = 0, time.monotonic() + 120
        while self._running(sent, deadline):
            sent += 1
            try:
                conn.request("POST", "/v2/models/double/infer", body)
                r = conn.getresponse()
                data = r.read()
                ok = r.status == 200 and json.loads(data)["outputs"][0]["data"] == [0, 2, 4, 6]
                self._count(None if ok else f"REST {r.status}: {data[:200]!r}")
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self._count(f"REST {type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.cluster.port(8000), timeout=30)
        conn.close()

    def _grpc(self) -> None:
        c = tgrpc.InferenceServerClient(self.cluster.grpc_url)
        inp = tgrpc.InferInput("x", [1, 4], "FP32")
        inp.set_data_from_numpy(self.x)
        sent, deadline = 0, time.monotonic() + 120
        while self._running(sent, deadline):
            sent += 1
            try:
                got = c.infer("double", [inp], client_timeout=30).as_numpy("y")
                right = got is not None and got.tolist() == [[0, 2, 4, 6]]
                self._count(None if right else f"gRPC answer {got}")
            except Exception as exc:  # every failure of the client is a failed request here
                self._count(f"gRPC {type(exc).__name__}: {exc}")
        c.close()


def _requests_served(cluster: ClusterProcess, metrics_port: int) -> float:
    text = cluster.get("/metrics", port=metrics_port).decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        if family.name == "fleetserve_requests"
        for s in family.samples
        if s.name == "fleetserve_requests_total" and s.labels.get("model") == "double"
    )


def test_killed_replica_costs_at_most_a_thousandth_and_takes_traffic_again(cluster: ClusterProcess) -> None:
    victim = cluster.process("replica-1")
    metrics = victim["ports"]["metrics"]
    with Load(cluster) as load:
        _wait(lambda: load.ok >= 300, 60, "300 answers through nginx before the kill")
        os.kill(victim["pid"], signal.SIGKILL)
        killed_at = load.total

        def restarted() -> bool:
            now = cluster.process("replica-1")
            return now["pid"] != victim["pid"] and now["alive"] and now["starts"] == victim["starts"] + 1

        _wait(restarted, 60, "replica-1 restarted by fleetserve up")
        ready = f"http://127.0.0.1:{victim['ports']['HTTP']}/v2/health/ready"
        _wait(lambda: http_status(ready) == 200, 60, "the restarted replica-1 ready")
        # a new process counts from zero: whatever it counts came through nginx after the restart
        _wait(lambda: _requests_served(cluster, metrics) >= 50, 60, "the restarted replica-1 serving traffic")
        _wait(lambda: load.total >= max(3000, killed_at + 1000), 60, "3000 requests in all")
    print(f"replica-1 SIGKILLed under load: {len(load.failed)} of {load.total} requests failed")
    assert load.total >= 3000
    assert len(load.failed) <= load.total / 1000, (
        f"{len(load.failed)} of {load.total} failed: {load.failed[:5]}"
    )
    assert "replica-1 (pid" in cluster.output() and "restarting in" in cluster.output()


def _stats(prefix: Path) -> dict[str, dict[str, str]]:
    import csv

    with open(f"{prefix}_stats.csv", newline="") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def test_locust_smoke_through_nginx_fails_nothing(cluster: ClusterProcess, tmp_path: Path) -> None:
    prefix = tmp_path / "smoke"
    cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py")]
    cmd += ["--headless", "-u", "6", "-r", "6", "-t", "20s", "--host", cluster.base]
    cmd += ["--grpc-host", cluster.grpc_url, "--csv", str(prefix), "--html", str(tmp_path / "smoke.html")]
    cmd += ["--only-summary", "--loglevel", "WARNING", "--stop-timeout", "10"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    stats = _stats(prefix)
    total = stats["Aggregated"]
    assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0, run.stdout + run.stderr
    for name in ("rest infer", "grpc infer", "image upload"):
        assert int(stats[name]["Request Count"]) > 0 and int(stats[name]["Failure Count"]) == 0, name
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "smoke.html").stat().st_size > 0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def test_sigterm_stops_everything_and_leaves_no_process_or_port(cluster: ClusterProcess) -> None:
    """Last in this module: it stops the module's cluster."""
    state = cluster.state()
    pids = [p["pid"] for p in state["processes"]]
    nginx = cluster.process("nginx")["pid"]
    pids += _children(nginx)  # nginx's workers
    assert len(pids) > len(state["processes"]) and all(pid_alive(p) for p in pids)
    ports = cluster_ports(cluster.offset, REPLICAS)
    assert cluster.stop() == 0
    assert [p for p in pids if pid_alive(p)] == []
    assert [p for p in ports if listening(p)] == []
    assert cluster.state()["status"] == "stopped"
    out = cluster.output()
    order = [out.index(f"stopped {name} ") for name in ("drift", "nginx", "replica-0", "redis")]
    assert order == sorted(order), out
