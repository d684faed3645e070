"""Model names that try to leave the repository are refused; the server keeps serving.

Next to the repository lie folders `etc` and `outside` holding valid models: a name that
escaped would load and serve them, so "never served" is the observable proof of "never read".
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import grpc
import pytest

from fleetserve.wire import inference_pb2 as pb
from tests.support import models
from tests.support.server import ServerProcess

SERVICE = "/inference.GRPCInferenceService"
INFER_BODY = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
).encode()
OUTSIDE = ("etc", "outside")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("names")
    repo = root / "models"
    repo.mkdir()
    models.double_model(repo)
    for name in OUTSIDE:
        models.double_model(root, name)
    # a nested model folder inside the repository: "a/b" must not name it either
    (repo / "a").mkdir()
    models.double_model(repo / "a", "b")
    with ServerProcess(repo, "--model-control-mode", "explicit", "--load-model", "double") as proc:
        yield proc


@pytest.fixture(scope="module")
def channel(srv: ServerProcess) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(srv.grpc_url)
    grpc.channel_ready_future(ch).result(timeout=10)
    yield ch
    ch.close()


def call(srv: ServerProcess, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=10)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def assert_nothing_outside_served(srv: ServerProcess) -> None:
    status, body = call(srv, "POST", "/v2/repository/index")
    assert status == 200, body
    names = {row["name"] for row in json.loads(body)}
    assert names <= {"double", "a"}, names
    ready = [row for row in json.loads(body) if row["state"] == "READY"]
    assert [row["name"] for row in ready] == ["double"], ready
    for name in (*OUTSIDE, "b"):
        assert call(srv, "POST", f"/v2/models/{name}/infer", INFER_BODY)[0] == 404, name
        assert call(srv, "GET", f"/v2/models/{name}")[0] == 404, name
    status, body = call(srv, "POST", "/v2/models/double/infer", INFER_BODY)
    assert status == 200, body
    assert json.loads(body)["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]


ESCAPES = [
    "..",
    "%2E%2E",
    ".",
    "../etc",
    "..%2Fetc",
    "%2E%2E%2Fetc",
    "..%2F..%2Fetc",
    "..%2Foutside",
    "%2Fetc",
    "%2Fetc%2Fpasswd",
    "a%2Fb",
    "a/b",
    "..%5Cetc",
    "a%20b",
    "%20double",
    "double%20",
    "dou%20ble",
    "double%0A",
    "double%00",
    "~",
    ".hidden",
    "-rf",
    "x" * 300,
    "",
]


@pytest.mark.parametrize("action", ["load", "unload"])
@pytest.mark.parametrize("name", ESCAPES)
def test_rest_escaping_names_are_refused(srv: ServerProcess, action: str, name: str) -> None:
    status, body = call(srv, "POST", f"/v2/repository/models/{name}/{action}")
    assert status in (400, 404), (status, body)
    assert isinstance(json.loads(body).get("error"), str)
    assert srv.alive()


@pytest.mark.parametrize("name", ["..%2Fetc", "%2E%2E", "..%2Foutside", "a%2Fb", "a%20b", "%2Fetc%2Fpasswd"])
def test_rest_escaping_names_in_model_routes(srv: ServerProcess, name: str) -> None:
    """Never served; 405 is tolerated here (a POST to a path that is not a route answers 405, a
    separate finding tested in test_bad_input.py); ready answers with its status only."""
    for method, suffix, body in (("GET", "", b""), ("POST", "/infer", INFER_BODY)):
        status, answer = call(srv, method, f"/v2/models/{name}{suffix}", body)
        assert status in (400, 404, 405), (method, name, suffix, status, answer)
        assert isinstance(json.loads(answer).get("error"), str)
    assert call(srv, "GET", f"/v2/models/{name}/ready")[0] != 200


GRPC_NAMES = [
    "..",
    ".",
    "../etc",
    "../outside",
    "../../etc",
    "/etc",
    "/etc/passwd",
    "a/b",
    "..\\etc",
    "a b",
    "double\n",
    "double\x00",
    "",
]


@pytest.mark.parametrize("name", GRPC_NAMES, ids=repr)
def test_grpc_escaping_names_are_refused(channel: grpc.Channel, name: str) -> None:
    ok = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
    for method, request, response in (
        (
            "RepositoryModelLoad",
            pb.RepositoryModelLoadRequest(model_name=name),
            pb.RepositoryModelLoadResponse,
        ),
        (
            "RepositoryModelUnload",
            pb.RepositoryModelUnloadRequest(model_name=name),
            pb.RepositoryModelUnloadResponse,
        ),
        ("ModelMetadata", pb.ModelMetadataRequest(name=name), pb.ModelMetadataResponse),
        ("ModelConfig", pb.ModelConfigRequest(name=name), pb.ModelConfigResponse),
    ):
        stub = channel.unary_unary(
            f"{SERVICE}/{method}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            stub(request, timeout=10)
        assert info.value.code() in ok, (method, info.value.code(), info.value.details())
    infer = pb.ModelInferRequest(model_name=name)
    infer.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    infer.raw_input_contents.append(b"\x00" * 16)
    stub = channel.unary_unary(
        f"{SERVICE}/ModelInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as info:
        stub(infer, timeout=10)
    assert info.value.code() in ok, info.value.details()


def test_the_server_keeps_serving_and_nothing_outside_is_served(srv: ServerProcess) -> None:
    assert srv.alive(), srv.log()[-3000:]
    assert call(srv, "GET", "/v2/health/live")[0] == 200
    assert_nothing_outside_served(srv)


def test_a_plain_name_still_loads(srv: ServerProcess) -> None:
    """The same calls with an ordinary name work, so the refusals above are about the names."""
    assert call(srv, "POST", "/v2/repository/models/double/unload")[0] == 200
    assert call(srv, "GET", "/v2/models/double/ready")[0] != 200
    assert call(srv, "POST", "/v2/repository/models/double/load")[0] == 200
    assert_nothing_outside_served(srv)
