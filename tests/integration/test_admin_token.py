"""FLEETSERVE_ADMIN_TOKEN guards repository load / unload over REST and gRPC; inference is open."""

from __future__ import annotations

import http.client
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from fleetserve.wire import inference_pb2 as pb
from tests.support import models
from tests.support.server import ServerProcess

TOKEN = secrets.token_urlsafe(24)
WRONG = secrets.token_urlsafe(24)
SERVICE = "/inference.GRPCInferenceService"
INFER_BODY = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
).encode()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("admin") / "models"
    repo.mkdir()
    models.double_model(repo)
    models.identity_model(repo, "FP32")
    with ServerProcess(repo, env={"FLEETSERVE_ADMIN_TOKEN": TOKEN}) as proc:
        yield proc
    assert TOKEN not in proc.log(), "the admin token was written to the server log"


@pytest.fixture(scope="module")
def channel(srv: ServerProcess) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(srv.grpc_url)
    grpc.channel_ready_future(ch).result(timeout=10)
    yield ch
    ch.close()


def call(
    srv: ServerProcess, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def ready(srv: ServerProcess, name: str = "double") -> bool:
    return call(srv, "GET", f"/v2/models/{name}/ready")[0] == 200


def infers(srv: ServerProcess) -> bool:
    status, body = call(srv, "POST", "/v2/models/double/infer", INFER_BODY)
    return status == 200 and json.loads(body)["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]


def error_of(body: bytes) -> str:
    parsed = json.loads(body)
    assert isinstance(parsed, dict) and isinstance(parsed.get("error"), str) and parsed["error"], parsed
    assert TOKEN not in parsed["error"] and WRONG not in parsed["error"]
    return parsed["error"]


BAD_AUTH = [
    ({}, 401),
    ({"Authorization": ""}, 401),
    ({"Authorization": "Bearer"}, 401),
    ({"Authorization": "Bearer "}, 401),
    ({"Authorization": f"Basic {TOKEN}"}, 401),
    ({"Authorization": TOKEN}, 401),
    ({"Authorization": f"Bearer {WRONG}"}, 403),
    ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 403),
    ({"Authorization": f"Bearer {TOKEN}x"}, 403),
]


@pytest.mark.parametrize("action", ["unload", "load"])
@pytest.mark.parametrize(
    ("headers", "status"), BAD_AUTH, ids=[f"{i}-{s}" for i, (_, s) in enumerate(BAD_AUTH)]
)
def test_rest_control_without_the_right_token_is_refused(
    srv: ServerProcess, action: str, headers: dict[str, str], status: int
) -> None:
    got, body = call(srv, "POST", f"/v2/repository/models/double/{action}", b"", headers)
    assert got == status, body
    error_of(body)
    assert ready(srv), "a refused call changed the model's state"


def test_rest_control_with_the_right_token(srv: ServerProcess) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, body = call(srv, "POST", "/v2/repository/models/double/unload", b"", auth)
    assert status == 200, body
    assert not ready(srv)
    status, body = call(srv, "POST", "/v2/repository/models/double/load", b"", auth)
    assert status == 200, body
    assert ready(srv) and infers(srv)
    # the scheme is case-insensitive (RFC 7235)
    status, body = call(
        srv, "POST", "/v2/repository/models/double/load", b"", {"Authorization": f"bearer {TOKEN}"}
    )
    assert status == 200, body


def test_inference_and_reads_need_no_token(srv: ServerProcess) -> None:
    assert infers(srv)
    for path in (
        "/v2/health/live",
        "/v2/health/ready",
        "/v2",
        "/v2/models/double",
        "/v2/models/double/config",
    ):
        assert call(srv, "GET", path)[0] == 200, path
    assert call(srv, "POST", "/v2/repository/index")[0] == 200


def test_tritonclient_http_headers(srv: ServerProcess) -> None:
    client = thttp.InferenceServerClient(srv.http_url)
    try:
        with pytest.raises(InferenceServerException) as info:
            client.unload_model("identity_fp32")
        assert info.value.status() == "401"
        with pytest.raises(InferenceServerException) as info:
            client.unload_model("identity_fp32", headers={"Authorization": f"Bearer {WRONG}"})
        assert info.value.status() == "403"
        assert client.is_model_ready("identity_fp32")
        client.unload_model("identity_fp32", headers={"Authorization": f"Bearer {TOKEN}"})
        assert not client.is_model_ready("identity_fp32")
        client.load_model("identity_fp32", headers={"Authorization": f"Bearer {TOKEN}"})
        assert client.is_model_ready("identity_fp32")
    finally:
        client.close()


def _grpc_control(
    channel: grpc.Channel, action: str, metadata: tuple[tuple[str, str], ...]
) -> grpc.StatusCode:
    if action == "load":
        stub = channel.unary_unary(
            f"{SERVICE}/RepositoryModelLoad",
            request_serializer=pb.RepositoryModelLoadRequest.SerializeToString,
            response_deserializer=pb.RepositoryModelLoadResponse.FromString,
        )
        request: object = pb.RepositoryModelLoadRequest(model_name="double")
    else:
        stub = channel.unary_unary(
            f"{SERVICE}/RepositoryModelUnload",
            request_serializer=pb.RepositoryModelUnloadRequest.SerializeToString,
            response_deserializer=pb.RepositoryModelUnloadResponse.FromString,
        )
        request = pb.RepositoryModelUnloadRequest(model_name="double")
    try:
        stub(request, metadata=metadata, timeout=30)
    except grpc.RpcError as exc:
        assert TOKEN not in (exc.details() or "")
        return exc.code()
    return grpc.StatusCode.OK


GRPC_BAD = [
    ((), grpc.StatusCode.UNAUTHENTICATED),
    ((("authorization", f"Basic {TOKEN}"),), grpc.StatusCode.UNAUTHENTICATED),
    ((("authorization", "Bearer "),), grpc.StatusCode.UNAUTHENTICATED),
    ((("authorization", f"Bearer {WRONG}"),), grpc.StatusCode.PERMISSION_DENIED),
]


@pytest.mark.parametrize("action", ["unload", "load"])
@pytest.mark.parametrize(("metadata", "code"), GRPC_BAD, ids=[c.name for _, c in GRPC_BAD])
def test_grpc_control_without_the_right_token_is_refused(
    srv: ServerProcess,
    channel: grpc.Channel,
    action: str,
    metadata: tuple[tuple[str, str], ...],
    code: grpc.StatusCode,
) -> None:
    assert _grpc_control(channel, action, metadata) == code
    assert ready(srv)


def test_grpc_control_with_the_right_token(srv: ServerProcess, channel: grpc.Channel) -> None:
    auth = (("authorization", f"Bearer {TOKEN}"),)
    assert _grpc_control(channel, "unload", auth) == grpc.StatusCode.OK
    assert not ready(srv)
    assert _grpc_control(channel, "load", auth) == grpc.StatusCode.OK
    assert ready(srv) and infers(srv)


def test_tritonclient_grpc_headers_and_open_inference(srv: ServerProcess) -> None:
    client = tgrpc.InferenceServerClient(srv.grpc_url)
    try:
        with pytest.raises(InferenceServerException) as info:
            client.unload_model("identity_fp32")
        assert info.value.status() == "StatusCode.UNAUTHENTICATED"
        with pytest.raises(InferenceServerException) as info:
            client.load_model("identity_fp32", headers={"authorization": f"Bearer {WRONG}"})
        assert info.value.status() == "StatusCode.PERMISSION_DENIED"
        client.unload_model("identity_fp32", headers={"authorization": f"Bearer {TOKEN}"})
        assert not client.is_model_ready("identity_fp32")
        client.load_model("identity_fp32", headers={"authorization": f"Bearer {TOKEN}"})
        assert client.is_model_ready("identity_fp32")
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        i = tgrpc.InferInput("x", [2, 4], "FP32")
        i.set_data_from_numpy(x)
        y = client.infer("double", [i]).as_numpy("y")
        assert y is not None and np.array_equal(y, x * 2)
        assert client.get_model_repository_index().models
    finally:
        client.close()


def test_without_a_token_configured_control_is_open(tmp_path: Path) -> None:
    """A server started without FLEETSERVE_ADMIN_TOKEN lets control calls through (no token set)."""
    repo = tmp_path / "models"
    repo.mkdir()
    models.double_model(repo)
    with ServerProcess(repo) as proc:
        status, body = call(proc, "POST", "/v2/repository/models/double/unload")
        assert status == 200, body
        status, body = call(proc, "POST", "/v2/repository/models/double/load")
        assert status == 200, body
        assert infers(proc)
