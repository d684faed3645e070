"""End to end: `fleetserve up` where nginx, Redis and Prometheus are missing (their programs
pointed at paths that do not exist) still serves: one replica directly on the front ports
(HTTP, gRPC, metrics 8002 shifted), predictions in the local file sink, the rollout controller on
files; it says what it left out and the command that would add each. A taken port is an error
naming the port and the process that wanted it, and nothing is started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from prometheus_client.parser import text_string_to_metric_families

from tests.support import models
from tests.support.cluster import ClusterProcess, cluster_ports, free_offset, listening, pid_alive

MISSING = {
    "FLEETSERVE_NGINX_BIN": "/nonexistent/nginx",
    "FLEETSERVE_REDIS_BIN": "/nonexistent/redis-server",
    "FLEETSERVE_PROMETHEUS_BIN": "/nonexistent/prometheus",
}


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "models"
    repo.mkdir()
    models.double_model(repo)
    return repo


def test_without_nginx_redis_prometheus_one_replica_serves_on_the_front_ports(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cluster = ClusterProcess(_repo(tmp_path), data, replicas=3, env=MISSING)
    with cluster:
        state = cluster.state()
        assert [p["name"] for p in state["processes"]] == ["replica-0", "rollout"]
        assert state["left_out"] == ["nginx", "redis-server", "prometheus"]
        assert cluster.process("replica-0")["ports"] == {
            "HTTP": cluster.port(8000),
            "gRPC": cluster.port(8001),
            "metrics": cluster.port(8002),
        }
        out = cluster.output()
        for command in ("sudo apt-get install nginx", "sudo apt-get install redis-server"):
            assert command in out
        assert "sudo apt-get install prometheus" in out and "(--replicas 3 needs nginx)" in out

        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        h = thttp.InferenceServerClient(cluster.http_url)
        inp = thttp.InferInput("x", [1, 4], "FP32")
        inp.set_data_from_numpy(x)
        np.testing.assert_array_equal(h.infer("double", [inp]).as_numpy("y"), 2 * x)
        h.close()
        g = tgrpc.InferenceServerClient(cluster.grpc_url)
        ginp = tgrpc.InferInput("x", [1, 4], "FP32")
        ginp.set_data_from_numpy(x)
        np.testing.assert_array_equal(g.infer("double", [ginp]).as_numpy("y"), 2 * x)
        g.close()
        metrics = cluster.get("/metrics", port=cluster.port(8002)).decode()
        served = {
            s.labels["protocol"]: s.value
            for family in text_string_to_metric_families(metrics)
            for s in family.samples
            if s.name == "fleetserve_requests_total" and s.labels.get("model") == "double"
        }
        assert served == {"rest": 1.0, "grpc": 1.0}
        assert (data / "logs" / "replica-0.log").is_file() and (data / "logs" / "rollout.log").is_file()
        pids = [p["pid"] for p in state["processes"]]
    assert cluster.proc is not None and cluster.proc.returncode == 0
    assert [p for p in pids if pid_alive(p)] == []
    assert [p for p in cluster_ports(cluster.offset, 1) if listening(p)] == []
    # no Redis: the replica's prediction log is the file sink in its own data dir
    assert list((data / "replicas" / "0").glob("predictions-*.bin")), "no file sink in the replica's data dir"


def test_a_taken_port_is_an_error_naming_it_and_who_wanted_it(tmp_path: Path) -> None:
    offset = free_offset(1)
    taken = 8000 + offset
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen(1)
        cmd = [sys.executable, "-m", "fleetserve.cli", "up", "--model-repository", str(_repo(tmp_path))]
        cmd += ["--data-dir", str(tmp_path / "data"), "--port-offset", str(offset)]
        env = {**os.environ, **MISSING}
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 1
    assert f"port {taken} on 127.0.0.1 (HTTP of replica-0) is taken" in run.stdout
    assert not (tmp_path / "data" / "logs" / "replica-0.log").exists()


def test_a_missing_repository_is_an_error(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "fleetserve.cli", "up", "--model-repository", str(tmp_path / "nope")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "is not a folder" in run.stdout
