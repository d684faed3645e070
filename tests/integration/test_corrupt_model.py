"""Models that cannot load: the server starts, the good model serves, each bad one is
UNAVAILABLE with its reason over REST and gRPC."""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from tests.support import models
from tests.support.server import ServerProcess

DOUBLE_CONFIG = """
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 4
input [ {{ name: "{input}" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [ 4 ] }} ]
"""

# model -> a word the reason must contain (any case)
BAD = {
    "corrupt": "protobuf|onnx|pars|load",
    "badconfig": "config.pbtxt",
    "wronginput": "nope",
    "nofile": "model.onnx",
}
POLL_SECS = 0.5


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corrupt") / "models"
    root.mkdir()
    models.double_model(root)
    corrupt = root / "corrupt" / "1"
    corrupt.mkdir(parents=True)
    (corrupt / "model.onnx").write_bytes(b"\x08\xff this is not an ONNX model \x00\x13" * 64)
    models.double_model(
        root, "badconfig", config='name: "badconfig"\nmax_batch_size: [[ this { does not parse\n'
    )
    models.double_model(root, "wronginput", config=DOUBLE_CONFIG.format(name="wronginput", input="nope"))
    (root / "nofile" / "1").mkdir(parents=True)
    return root


@pytest.fixture(scope="module")
def srv(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repo, "--repository-poll-secs", str(POLL_SECS)) as proc:
        yield proc


def call(srv: ServerProcess, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=10)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def error_of(body: bytes) -> str:
    parsed = json.loads(body)
    assert isinstance(parsed, dict) and isinstance(parsed.get("error"), str) and parsed["error"], parsed
    return parsed["error"]


def index(srv: ServerProcess, ready: bool | None = None) -> list[dict[str, str]]:
    body = b"" if ready is None else json.dumps({"ready": ready}).encode()
    status, answer = call(srv, "POST", "/v2/repository/index", body)
    assert status == 200, answer
    return json.loads(answer)


def reason_of(srv: ServerProcess, name: str) -> str:
    rows = [r for r in index(srv) if r["name"] == name]
    assert rows and all(r["state"] == "UNAVAILABLE" for r in rows), rows
    reasons = [r["reason"] for r in rows if r["reason"]]
    assert reasons, rows
    return reasons[0]


INFER_BODY = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
).encode()


def test_server_is_live_and_the_good_model_serves(srv: ServerProcess) -> None:
    assert call(srv, "GET", "/v2/health/live")[0] == 200
    assert call(srv, "GET", "/v2/models/double/ready")[0] == 200
    status, body = call(srv, "POST", "/v2/models/double/infer", INFER_BODY)
    assert status == 200, body
    assert json.loads(body)["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_model_is_listed_unavailable_with_a_reason(srv: ServerProcess, name: str) -> None:
    reason = reason_of(srv, name)
    assert re.search(BAD[name], reason, re.IGNORECASE), reason
    assert name not in {r["name"] for r in index(srv, ready=True)}


def test_index_lists_the_good_model_ready(srv: ServerProcess) -> None:
    assert {"name": "double", "version": "1", "state": "READY", "reason": ""} in index(srv)
    assert [r["name"] for r in index(srv, ready=True)] == ["double"]


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_model_is_not_ready(srv: ServerProcess, name: str) -> None:
    status, _ = call(srv, "GET", f"/v2/models/{name}/ready")
    assert status != 200
    client = thttp.InferenceServerClient(srv.http_url)
    try:
        assert client.is_model_ready(name) is False
    finally:
        client.close()


@pytest.mark.parametrize("name", sorted(BAD))
@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("GET", "", b""), ("GET", "/config", b""), ("POST", "/infer", INFER_BODY)],
    ids=["metadata", "config", "infer"],
)
def test_bad_model_answers_503_with_the_reason(
    srv: ServerProcess, name: str, method: str, suffix: str, body: bytes
) -> None:
    status, answer = call(srv, method, f"/v2/models/{name}{suffix}", body)
    assert status == 503, answer
    message = error_of(answer)
    assert name in message
    assert reason_of(srv, name) in message


def test_grpc_repository_index(srv: ServerProcess) -> None:
    client = tgrpc.InferenceServerClient(srv.grpc_url)
    try:
        rows = client.get_model_repository_index(as_json=True)["models"]
    finally:
        client.close()
    by_name: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_name.setdefault(row["name"], []).append(row)
    assert [r.get("state") for r in by_name["double"]] == ["READY"]
    for name in BAD:
        assert by_name[name], name
        assert all(r.get("state") == "UNAVAILABLE" for r in by_name[name]), by_name[name]
        assert any(r.get("reason") for r in by_name[name]), by_name[name]


@pytest.mark.parametrize("name", sorted(BAD))
def test_grpc_infer_of_bad_model_is_unavailable(srv: ServerProcess, name: str) -> None:
    client = tgrpc.InferenceServerClient(srv.grpc_url)
    try:
        assert client.is_model_ready(name) is False
        i = tgrpc.InferInput("x", [1, 4], "FP32")
        i.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        with pytest.raises(InferenceServerException) as info:
            client.infer(name, [i])
        assert info.value.status() == "StatusCode.UNAVAILABLE", str(info.value)
        assert reason_of(srv, name) in (info.value.message() or "")
        with pytest.raises(InferenceServerException) as info:
            client.get_model_metadata(name)
        assert info.value.status() == "StatusCode.UNAVAILABLE", str(info.value)
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        i = tgrpc.InferInput("x", [2, 4], "FP32")
        i.set_data_from_numpy(x)
        y = client.infer("double", [i]).as_numpy("y")
        assert y is not None and np.array_equal(y, x * 2)
    finally:
        client.close()


def test_polls_leave_bad_models_unavailable_and_the_good_one_serving(srv: ServerProcess) -> None:
    time.sleep(POLL_SECS * 3)
    assert srv.alive(), srv.log()[-3000:]
    for name in BAD:
        reason_of(srv, name)
        assert call(srv, "POST", f"/v2/models/{name}/infer", INFER_BODY)[0] == 503
    assert call(srv, "POST", "/v2/models/double/infer", INFER_BODY)[0] == 200
