"""The data plane's tritonclient conformance and JSON cases against `fleetserve serve --engine ray`.

One real single-node Ray cluster for the module, started by the server process itself on free
ports (Ray picks its own GCS and worker ports; HTTP and gRPC are Serve's proxies on the ports
ServerProcess chose), every model version a Ray Serve deployment of its own. The tests of
test_tritonclient.py and test_cases_both_transports.py run unchanged against it: this module's
`server` fixture is the Ray engine.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray  # noqa: F401 - the engine's dependency: missing, this module fails, it does not skip
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

from tests.integration.test_cases_both_transports import channel, test_case_same_on_every_transport
from tests.integration.test_tritonclient import (
    _inputs,
    client,
    images,
    reference,
    test_aio_clients,
    test_grpc_health_service,
    test_grpc_large_batch_over_default_message_limit,
    test_grpc_stream_infer,
    test_health_and_metadata,
    test_model_config,
    test_repository_index_load_unload,
    test_statistics,
)
from tests.support import models
from tests.support.server import ServerProcess

__all__ = [
    "channel",
    "client",
    "images",
    "reference",
    "test_aio_clients",
    "test_case_same_on_every_transport",
    "test_grpc_health_service",
    "test_grpc_large_batch_over_default_message_limit",
    "test_grpc_stream_infer",
    "test_health_and_metadata",
    "test_model_config",
    "test_repository_index_load_unload",
    "test_statistics",
]

# The models the imported tests use (each one a deployment: fewer start faster).
MODELS = ("BOOL", "BYTES", "FP16", "FP32", "INT8", "INT32", "UINT64")
RAY_ENV = {
    "FLEETSERVE_RAY_NUM_CPUS": "2",
    "FLEETSERVE_RAY_REPLICA_CPUS": "0.1",
    "FLEETSERVE_RAY_INGRESS_CPUS": "0.1",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


@pytest.fixture(scope="module")
def ray_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("ray") / "models"
    repo.mkdir()
    models.digits_model(repo)
    models.double_model(repo)
    for datatype in MODELS:
        models.identity_model(repo, datatype)
    models.identity_model(repo, "FP32", name="identity_wide", width="W")
    return repo


@pytest.fixture(scope="module")
def model_repo(ray_repo: Path) -> Path:
    """The imported tests' repository (their `reference` reads digits from it)."""
    return ray_repo


@pytest.fixture(scope="module")
def server(ray_repo: Path) -> Iterator[ServerProcess]:
    """`fleetserve serve --engine ray`; stopped by pid, and nothing of Ray's may outlive it."""
    proc = ServerProcess(ray_repo, "--engine", "ray", env=RAY_ENV, ready_timeout=240).start()
    assert proc.proc is not None
    ray_pids: set[int] = set()
    try:
        yield proc
    finally:
        ray_pids = _descendants(proc.proc.pid)
        code = proc.stop()
        deadline = time.monotonic() + 15
        while _alive(ray_pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = _alive(ray_pids)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert code == 0, proc.log()[-3000:]
    assert ray_pids and not left, f"Ray processes outlived the server: {sorted(left)}"


def test_every_version_is_its_own_deployment(server: ServerProcess) -> None:
    """The ingress deploys one Serve application per loaded model version."""
    with urllib.request.urlopen(f"{server.base}/v2/repository/index", data=b"{}", timeout=10) as r:
        ready = {row["name"] for row in json.loads(r.read()) if row["state"] == "READY"}
    assert {"digits", "double", "identity_wide"} <= ready
    log = server.log()
    for name in ready:
        assert f"Deploying new version of Deployment(name='{name}-v1', app='fleetserve-{name}-v1-" in log


@pytest.mark.parametrize(("kind", "binary"), [("http", True), ("http", False), ("grpc", True)])
@pytest.mark.parametrize("batch_size", [1, 8])
def test_infer_matches_onnxruntime(
    server: ServerProcess, images: np.ndarray, reference: np.ndarray, kind: str, batch_size: int, binary: bool
) -> None:
    """As test_tritonclient's, but over REST the request id is the one Ray's HTTP proxy sets when
    the client sends none (a UUID, as a front proxy may: CONTRACT.md), returned in the header."""
    mod = thttp if kind == "http" else tgrpc
    c = mod.InferenceServerClient(server.http_url if kind == "http" else server.grpc_url)
    inputs, outputs = _inputs(mod, kind, images[:batch_size], binary)
    result = c.infer("digits", inputs, outputs=outputs, request_id="client-id-7")
    c.close()
    got = result.as_numpy("probabilities")
    assert got.shape == (batch_size, 10)
    np.testing.assert_allclose(got, reference[:batch_size], rtol=1e-6, atol=1e-7)
    response = result.get_response(as_json=True) if kind == "grpc" else result.get_response()
    assert response["id"] == "client-id-7" and response["model_version"] == "1"
    rid = response["parameters"]["request_id"]
    rid = rid["string_param"] if isinstance(rid, dict) else rid
    if kind == "grpc":
        assert len(rid) == 32 and int(rid, 16) >= 0
    else:
        assert len(rid) == 36 and int(rid.replace("-", ""), 16) >= 0


def test_rest_request_id_given_is_kept_once(server: ServerProcess) -> None:
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
    req = urllib.request.Request(
        f"{server.base}/v2/models/double/infer",
        data=body.encode(),
        headers={"Content-Type": "application/json", "X-Request-ID": "mine-42"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers.get_all("x-request-id") == ["mine-42"]
        answer = json.loads(r.read())
    assert answer["parameters"]["request_id"] == "mine-42"
    assert answer["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]


def _config(text: str) -> Any:
    from google.protobuf import text_format

    from fleetserve.wire import model_config_pb2 as mc

    return text_format.Parse(text, mc.ModelConfig())


def test_deployment_options_from_config() -> None:
    """Replicas from instance_group, resources and autoscaling from the ray_* parameters."""
    from fleetserve.engines.ray_version import deployment_options

    plain = deployment_options(None, 0.5)
    assert plain["num_replicas"] == 1 and plain["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 0.0}
    two = deployment_options(_config("instance_group { count: 2 kind: KIND_GPU }"), 1.0)
    assert two["num_replicas"] == 2 and two["ray_actor_options"]["num_gpus"] == 1.0
    scaled = deployment_options(
        _config(
            'instance_group { count: 2 } parameters { key: "ray_max_replicas" value { string_value: "6" } }'
            ' parameters { key: "ray_num_cpus" value { string_value: "2" } }'
        ),
        1.0,
    )
    assert "num_replicas" not in scaled and scaled["ray_actor_options"]["num_cpus"] == 2.0
    assert scaled["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 6,
        "initial_replicas": 2,
        "target_ongoing_requests": 1.0,
    }
    with pytest.raises(ValueError, match="ray_num_cpus must be a number"):
        deployment_options(_config('parameters { key: "ray_num_cpus" value { string_value: "many" } }'), 1.0)
