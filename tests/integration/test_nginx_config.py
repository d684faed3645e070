"""The nginx config of `fleetserve up`, rendered from its template: `nginx -t` accepts it, a broken
one is refused with nginx's own words, and a real nginx on it sends a request that a dead replica
cannot take (a POST included) to the next one, over HTTP and gRPC, with request ids."""

from __future__ import annotations

import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tgrpc

from fleetserve.cluster import nginx, programs
from fleetserve.cluster.layout import PortPlan, ReplicaPorts
from tests.support import models
from tests.support.cluster import require
from tests.support.ports import free_ports
from tests.support.server import ServerProcess


def _plan(replicas: list[ReplicaPorts], http: int = 8000, grpc: int = 8001) -> PortPlan:
    return PortPlan("127.0.0.1", http, grpc, tuple(replicas), 6380, 9090, 8010, 8011, 8012)


def _binary() -> str:
    require(programs.NGINX)
    found = programs.find(programs.NGINX, None)
    assert found is not None
    return found


@pytest.mark.parametrize("count", [1, 4])
def test_rendered_config_passes_nginx_t(tmp_path: Path, count: int) -> None:
    binary = _binary()
    replicas = [ReplicaPorts(18000 + 10 * i, 18001 + 10 * i, 18002 + 10 * i) for i in range(count)]
    files = nginx.NginxFiles(tmp_path / "nginx", tmp_path / "logs")
    config = nginx.write(_plan(replicas), files, binary, programs.nginx_version(binary))
    text = config.read_text()
    servers = re.findall(r"server 127\.0\.0\.1:(\d+) max_fails=3 fail_timeout=5s;", text)
    assert servers == [str(r.http) for r in replicas] + [str(r.grpc) for r in replicas]
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in text
    assert "grpc_next_upstream error timeout http_502 http_503 non_idempotent;" in text
    assert text.count("least_conn;") == 2 and "grpc_pass grpc://fleetserve_grpc;" in text
    # nginx -t ran inside write(); run it once more here, visibly
    run = subprocess.run([*nginx.command(binary, files), "-t"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and "test is successful" in run.stderr


def test_newer_nginx_gets_the_http2_directive(tmp_path: Path) -> None:
    files = nginx.NginxFiles(tmp_path, tmp_path)
    plan = _plan([ReplicaPorts(18000, 18001, 18002)])
    old = nginx.render(plan, files, version=(1, 22, 1))
    new = nginx.render(plan, files, version=(1, 26, 0))
    assert "listen 127.0.0.1:8001 backlog=4096 http2;" in old and "http2 on;" not in old
    assert "listen 127.0.0.1:8001 backlog=4096;" in new and "http2 on;" in new


def test_a_broken_config_is_refused_with_nginx_words(tmp_path: Path) -> None:
    binary = _binary()
    files = nginx.NginxFiles(tmp_path / "nginx", tmp_path / "logs")
    nginx.write(_plan([ReplicaPorts(18000, 18001, 18002)]), files, binary, programs.nginx_version(binary))
    files.config.write_text(files.config.read_text().replace("least_conn;", "least_conn", 1))
    with pytest.raises(nginx.NginxConfigError, match=r"emerg"):
        nginx.check(binary, files)


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[ServerProcess]:
    repo = tmp_path / "models"
    repo.mkdir()
    models.double_model(repo)
    with ServerProcess(repo) as server:
        yield server


def test_nginx_sends_what_a_dead_replica_cannot_take_to_the_next(
    tmp_path: Path, replica: ServerProcess
) -> None:
    binary = _binary()
    dead_http, dead_grpc, dead_metrics, front_http, front_grpc = free_ports(5)  # nothing listens on them
    live = ReplicaPorts(replica.http_port, replica.grpc_port, replica.metrics_port)
    plan = _plan([ReplicaPorts(dead_http, dead_grpc, dead_metrics), live], front_http, front_grpc)
    files = nginx.NginxFiles(tmp_path / "nginx", tmp_path / "logs")
    nginx.write(plan, files, binary, programs.nginx_version(binary))
    with open(tmp_path / "nginx.out", "wb") as out:
        proc = subprocess.Popen(nginx.command(binary, files), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{front_http}/nginx/health", timeout=1):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "nginx.out"
                ).read_text()
                time.sleep(0.1)
        body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}'
        ids = []
        for i in range(10):
            headers = {"X-Request-ID": f"mine-{i}"} if i % 2 else {}
            request = urllib.request.Request(
                f"http://127.0.0.1:{front_http}/v2/models/double/infer", body, headers, method="POST"
            )
            with urllib.request.urlopen(request, timeout=10) as r:
                assert r.status == 200 and b"[2.0,4.0,6.0,8.0]" in r.read().replace(b" ", b"")
                ids.append(r.headers["X-Request-ID"])
        assert ids[1::2] == [f"mine-{i}" for i in range(1, 10, 2)]
        assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in ids[0::2])
        client = tgrpc.InferenceServerClient(f"127.0.0.1:{front_grpc}")
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        inp = tgrpc.InferInput("x", [1, 4], "FP32")
        inp.set_data_from_numpy(x)
        for _ in range(10):
            np.testing.assert_array_equal(client.infer("double", [inp]).as_numpy("y"), 2 * x)
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    access = (tmp_path / "logs" / "nginx-access.log").read_text()
    # the first attempt at the dead replica shows as "dead, live" in the upstream list
    assert f"upstream=127.0.0.1:{dead_http}, 127.0.0.1:{live.http} " in access
    assert f"upstream=127.0.0.1:{dead_grpc}, 127.0.0.1:{live.grpc} " in access
    assert proc.returncode == 0
