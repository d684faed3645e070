"""Bad input over both transports: the right code, a message naming what was wrong, never a 500,
and a server that keeps serving after a burst of garbage."""

from __future__ import annotations

import gzip
import http.client
import json
import random
import re
import socket
import struct
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from onnx import TensorProto, helper

from fleetserve.wire import inference_pb2 as pb
from tests.support import models
from tests.support.models import _save
from tests.support.server import ServerProcess

INFER = "/inference.GRPCInferenceService/ModelInfer"
NP = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64, "FP64": np.float64}


def add2_model(repo: Path) -> str:
    """`add2`: a FP32 [-1, 4] + b FP32 [-1, 4] -> s (a model with two inputs)."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["s"])],
        "add2",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 4]),
        ],
        [helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 4])],
    )
    _save(graph, repo / "add2" / "1" / "model.onnx")
    return "add2"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad_input") / "models"
    root.mkdir()
    models.digits_model(root)
    models.double_model(root)
    add2_model(root)
    return root


@pytest.fixture(scope="module")
def srv(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repo) as proc:
        yield proc


@pytest.fixture(scope="module")
def small_srv(repo: Path) -> Iterator[ServerProcess]:
    """A server whose request body limit is 64 KiB."""
    with ServerProcess(repo, env={"FLEETSERVE_MAX_REQUEST_BYTES": "65536"}) as proc:
        yield proc


@pytest.fixture(scope="module")
def channel(srv: ServerProcess) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(srv.grpc_url)
    grpc.channel_ready_future(ch).result(timeout=10)
    yield ch
    ch.close()


# --- transports ---


def call(
    srv: ServerProcess,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """One HTTP request on a fresh connection to 127.0.0.1; the status and the body."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def error_of(status: int, body: bytes) -> str:
    """The message of a REST error answer, checking it is JSON `{"error": "..."}`."""
    assert status >= 400, (status, body[:200])
    parsed = json.loads(body)
    assert isinstance(parsed, dict) and isinstance(parsed.get("error"), str), parsed
    assert parsed["error"], "empty error message"
    return parsed["error"]


def grpc_error(channel: grpc.Channel, msg: pb.ModelInferRequest) -> tuple[grpc.StatusCode, str]:
    stub = channel.unary_unary(
        INFER,
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as info:
        stub(msg, timeout=10)
    return info.value.code(), info.value.details() or ""


def raw_grpc(channel: grpc.Channel, payload: bytes) -> tuple[grpc.StatusCode, str]:
    """A ModelInfer call whose body is `payload` as is (identity serializers)."""
    stub = channel.unary_unary(INFER, request_serializer=None, response_deserializer=None)
    try:
        stub(payload, timeout=10)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


# --- one table of cases, sent as REST JSON, REST binary and gRPC raw ---


@dataclass
class T:
    """An input tensor of a case; `values` are encoded per transport."""

    name: str
    datatype: str
    shape: list[int]
    values: list[Any]

    def raw(self) -> bytes:
        return np.asarray(self.values, dtype=NP.get(self.datatype, np.float32)).tobytes()


@dataclass
class Case:
    id: str
    model: str
    inputs: list[T]
    status: int
    code: grpc.StatusCode
    needles: list[str] = field(default_factory=list)  # regexes the message must match (any case)
    version: str = ""

    def path(self) -> str:
        v = f"/versions/{self.version}" if self.version else ""
        return f"/v2/models/{self.model}{v}/infer"

    def json_body(self) -> bytes:
        inputs = [
            {"name": t.name, "shape": t.shape, "datatype": t.datatype, "data": t.values} for t in self.inputs
        ]
        return json.dumps({"inputs": inputs}).encode()

    def binary_body(self) -> tuple[bytes, dict[str, str]]:
        blobs = [t.raw() for t in self.inputs]
        inputs = [
            {
                "name": t.name,
                "shape": t.shape,
                "datatype": t.datatype,
                "parameters": {"binary_data_size": len(b)},
            }
            for t, b in zip(self.inputs, blobs, strict=True)
        ]
        header = json.dumps({"inputs": inputs}).encode()
        return header + b"".join(blobs), {"Inference-Header-Content-Length": str(len(header))}

    def grpc_request(self) -> pb.ModelInferRequest:
        msg = pb.ModelInferRequest(model_name=self.model, model_version=self.version)
        for t in self.inputs:
            msg.inputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
            msg.raw_input_contents.append(t.raw())
        return msg


X4 = [1.0, 2.0, 3.0, 4.0]
IA = grpc.StatusCode.INVALID_ARGUMENT
NF = grpc.StatusCode.NOT_FOUND

CASES = [
    Case("unknown-model", "nosuch", [T("x", "FP32", [1, 4], X4)], 404, NF, ["nosuch"]),
    Case("unknown-version", "double", [T("x", "FP32", [1, 4], X4)], 404, NF, ["double", r"\b7\b"], "7"),
    Case("non-numeric-version", "double", [T("x", "FP32", [1, 4], X4)], 404, NF, ["double", "abc"], "abc"),
    Case("wrong-shape", "double", [T("x", "FP32", [1, 3], X4[:3])], 400, IA, ["'x'", re.escape("[-1, 4]")]),
    Case("wrong-rank", "double", [T("x", "FP32", [4], X4)], 400, IA, ["'x'", re.escape("[-1, 4]")]),
    Case(
        "wrong-datatype", "double", [T("x", "INT32", [1, 4], [1, 2, 3, 4])], 400, IA, ["'x'", "INT32", "FP32"]
    ),
    Case(
        "wrong-element-count", "double", [T("x", "FP32", [2, 4], X4)], 400, IA, ["'x'", re.escape("[2, 4]")]
    ),
    Case("unknown-input", "double", [T("z", "FP32", [1, 4], X4)], 400, IA, ["'z'", r"\bx\b"]),
    Case("missing-input", "add2", [T("a", "FP32", [1, 4], X4)], 400, IA, ["add2", r"\bb\b"]),
    Case("duplicate-input", "double", [T("x", "FP32", [1, 4], X4)] * 2, 400, IA, ["'x'"]),
    Case(
        "batch-over-max",
        "double",
        [T("x", "FP32", [5, 4], X4 * 5)],
        400,
        IA,
        ["'x'", "max_batch_size", r"\b4\b"],
    ),
    Case(
        "digits-batch-over-max",
        "digits",
        [T("image", "FP32", [65, 1, 8, 8], [0.0] * 65 * 64)],
        400,
        IA,
        ["image", r"\b64\b"],
    ),
    Case("zero-batch", "double", [T("x", "FP32", [0, 4], [])], 400, IA, ["'x'"]),
    Case("negative-dim", "double", [T("x", "FP32", [-1, 4], X4)], 400, IA, ["'x'"]),
    Case("unknown-datatype", "double", [T("x", "FP33", [1, 4], X4)], 400, IA, ["'x'", "FP33"]),
    Case(
        "digits-wrong-shape",
        "digits",
        [T("image", "FP32", [1, 8, 8], [0.0] * 64)],
        400,
        IA,
        ["image", re.escape("[-1, 1, 8, 8]")],
    ),
]


def assert_message(message: str, needles: list[str]) -> None:
    for needle in needles:
        assert re.search(needle, message, re.IGNORECASE), f"{needle!r} not in {message!r}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case_rest_json(srv: ServerProcess, case: Case) -> None:
    status, body = call(srv, "POST", case.path(), case.json_body())
    assert status == case.status, body
    assert_message(error_of(status, body), case.needles)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case_rest_binary(srv: ServerProcess, case: Case) -> None:
    body, headers = case.binary_body()
    status, answer = call(srv, "POST", case.path(), body, headers)
    assert status == case.status, answer
    assert_message(error_of(status, answer), case.needles)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case_grpc(channel: grpc.Channel, case: Case) -> None:
    code, details = grpc_error(channel, case.grpc_request())
    assert code == case.code, details
    assert_message(details, case.needles)


# --- REST only: the body itself ---


def _infer_json(inputs: Any, **extra: Any) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def _x(**fields: Any) -> dict[str, Any]:
    return {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": X4, **fields}


REST_BODIES: list[tuple[str, bytes, list[str]]] = [
    ("malformed-json", b'{"inputs": [', ["json"]),
    ("not-utf8", b'\xff\xfe{"inputs": []}', ["json|utf"]),
    ("empty-body", b"", ["json"]),
    ("json-array", b"[1, 2]", ["object"]),
    ("no-inputs", b"{}", ["inputs"]),
    ("inputs-not-list", _infer_json({"name": "x"}), ["inputs"]),
    ("input-not-object", _infer_json([5]), [re.escape("inputs[0]")]),
    ("input-without-name", _infer_json([{"shape": [1, 4], "datatype": "FP32", "data": X4}]), ["name"]),
    (
        "input-without-datatype",
        _infer_json([{"name": "x", "shape": [1, 4], "data": X4}]),
        ["'x'", "datatype"],
    ),
    (
        "input-without-shape",
        _infer_json([{"name": "x", "datatype": "FP32", "data": X4}]),
        ["'x'", "shape"],
    ),
    (
        "input-without-data",
        _infer_json([{"name": "x", "shape": [1, 4], "datatype": "FP32"}]),
        ["'x'", "data"],
    ),
    ("shape-not-ints", _infer_json([_x(shape=["a", 4])]), ["'x'", "shape"]),
    ("data-not-numbers", _infer_json([_x(data=["a", "b", "c", "d"])]), ["'x'", "FP32"]),
    ("data-object", _infer_json([_x(data={"a": 1})]), ["'x'", "FP32"]),
    ("data-ragged", _infer_json([_x(data=[[1, 2], [3]])]), ["'x'"]),
    ("too-few-elements", _infer_json([_x(data=[1, 2, 3])]), ["'x'", "3", "4"]),
    ("too-many-elements", _infer_json([_x(data=[1, 2, 3, 4, 5])]), ["'x'", "5", "4"]),
    ("parameters-not-object", _infer_json([_x()], parameters=[1]), ["parameters"]),
    ("output-not-object", _infer_json([_x()], outputs=[5]), ["outputs"]),
    ("unknown-output", _infer_json([_x()], outputs=[{"name": "nope"}]), ["nope", r"\by\b"]),
    (
        "classification-not-int",
        _infer_json([_x()], outputs=[{"name": "y", "parameters": {"classification": "x"}}]),
        ["classification"],
    ),
]


@pytest.mark.parametrize(("body", "needles"), [c[1:] for c in REST_BODIES], ids=[c[0] for c in REST_BODIES])
def test_rest_bad_body(srv: ServerProcess, body: bytes, needles: list[str]) -> None:
    status, answer = call(srv, "POST", "/v2/models/double/infer", body)
    assert status == 400, answer
    assert_message(error_of(status, answer), needles)


def _binary(size: Any, raw: bytes, shape: list[int] | None = None) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": shape or [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    ).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def test_binary_data_size_not_matching_shape(srv: ServerProcess) -> None:
    body, headers = _binary(12, struct.pack("<3f", 1, 2, 3))
    status, answer = call(srv, "POST", "/v2/models/double/infer", body, headers)
    assert status == 400
    assert_message(error_of(status, answer), ["'x'", r"\b12\b", r"\b16\b"])


def test_truncated_binary_body(srv: ServerProcess) -> None:
    body, headers = _binary(16, struct.pack("<2f", 1, 2))
    status, answer = call(srv, "POST", "/v2/models/double/infer", body, headers)
    assert status == 400
    assert_message(error_of(status, answer), ["'x'", r"\b16\b", "truncated|remain"])


def test_binary_bytes_beyond_declared(srv: ServerProcess) -> None:
    body, headers = _binary(16, struct.pack("<5f", 1, 2, 3, 4, 5))
    status, answer = call(srv, "POST", "/v2/models/double/infer", body, headers)
    assert status == 400
    assert_message(error_of(status, answer), [r"\b4 bytes"])


def test_binary_size_not_an_integer(srv: ServerProcess) -> None:
    body, headers = _binary("16", struct.pack("<4f", 1, 2, 3, 4))
    status, answer = call(srv, "POST", "/v2/models/double/infer", body, headers)
    assert status == 400
    assert_message(error_of(status, answer), ["'x'", "binary_data_size"])


@pytest.mark.parametrize("value", ["100000", "99999999999999999999999999", "-5"])
def test_header_length_larger_than_body(srv: ServerProcess, value: str) -> None:
    body, _ = _binary(16, struct.pack("<4f", 1, 2, 3, 4))
    status, answer = call(
        srv, "POST", "/v2/models/double/infer", body, {"Inference-Header-Content-Length": value}
    )
    assert status == 400
    assert_message(error_of(status, answer), ["Inference-Header-Content-Length", re.escape(value)])


def test_header_length_not_an_integer(srv: ServerProcess) -> None:
    status, answer = call(
        srv, "POST", "/v2/models/double/infer", b"{}", {"Inference-Header-Content-Length": "ten"}
    )
    assert status == 400
    assert_message(error_of(status, answer), ["Inference-Header-Content-Length"])


def test_header_length_cutting_the_json(srv: ServerProcess) -> None:
    body, headers = _binary(16, struct.pack("<4f", 1, 2, 3, 4))
    headers["Inference-Header-Content-Length"] = str(int(headers["Inference-Header-Content-Length"]) - 5)
    status, answer = call(srv, "POST", "/v2/models/double/infer", body, headers)
    assert status == 400
    assert_message(error_of(status, answer), ["json"])


def test_raw_body_of_wrong_size(srv: ServerProcess) -> None:
    """`Inference-Header-Content-Length: 0`: the whole body is the single input."""
    status, answer = call(
        srv, "POST", "/v2/models/digits/infer", b"\x00" * 100, {"Inference-Header-Content-Length": "0"}
    )
    assert status == 400
    assert_message(error_of(status, answer), ["image", r"\b100\b", r"\b256\b"])


def test_unsupported_content_encoding(srv: ServerProcess) -> None:
    status, answer = call(srv, "POST", "/v2/models/double/infer", b"{}", {"Content-Encoding": "br"})
    assert status == 415
    assert_message(error_of(status, answer), ["br"])


def test_body_not_gzip(srv: ServerProcess) -> None:
    status, answer = call(srv, "POST", "/v2/models/double/infer", b"{}", {"Content-Encoding": "gzip"})
    assert status == 400
    assert_message(error_of(status, answer), ["gzip"])


@pytest.mark.parametrize("outputs", [5, True], ids=["int", "bool"])
def test_outputs_not_a_list(srv: ServerProcess, outputs: Any) -> None:
    status, answer = call(srv, "POST", "/v2/models/double/infer", _infer_json([_x()], outputs=outputs))
    assert status == 400, answer
    assert_message(error_of(status, answer), ["outputs"])


def test_null_data(srv: ServerProcess) -> None:
    status, answer = call(srv, "POST", "/v2/models/double/infer", _infer_json([_x(data=[None] * 4)]))
    assert status == 400, answer
    assert_message(error_of(status, answer), ["'x'"])


def test_fractional_shape(srv: ServerProcess) -> None:
    status, answer = call(srv, "POST", "/v2/models/double/infer", _infer_json([_x(shape=[1.5, 4])]))
    assert status == 400, answer
    assert_message(error_of(status, answer), ["'x'", "shape"])


# --- gRPC only ---


def _grpc_x(shape: list[int] | None = None, datatype: str = "FP32") -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name="double")
    msg.inputs.add(name="x", datatype=datatype, shape=shape or [1, 4])
    return msg


def test_grpc_raw_contents_wrong_length(channel: grpc.Channel) -> None:
    msg = _grpc_x()
    msg.raw_input_contents.append(struct.pack("<3f", 1, 2, 3))
    code, details = grpc_error(channel, msg)
    assert code == IA
    assert_message(details, ["'x'", r"\b12\b", r"\b16\b"])


def test_grpc_raw_contents_count_not_matching_inputs(channel: grpc.Channel) -> None:
    msg = _grpc_x()
    msg.raw_input_contents.extend([struct.pack("<4f", 1, 2, 3, 4)] * 2)
    code, details = grpc_error(channel, msg)
    assert code == IA
    assert_message(details, ["raw_input_contents"])


def test_grpc_typed_contents_wrong_count(channel: grpc.Channel) -> None:
    msg = _grpc_x()
    msg.inputs[0].contents.fp32_contents.extend([1.0, 2.0, 3.0])
    code, details = grpc_error(channel, msg)
    assert code == IA
    assert_message(details, ["'x'", r"\b3\b", r"\b4\b"])


def test_grpc_typed_contents_for_raw_only_type(channel: grpc.Channel) -> None:
    msg = _grpc_x(datatype="BF16")
    msg.inputs[0].contents.fp32_contents.extend(X4)
    code, details = grpc_error(channel, msg)
    assert code == IA
    assert_message(details, ["'x'", "BF16"])


def test_grpc_no_inputs(channel: grpc.Channel) -> None:
    code, details = grpc_error(channel, pb.ModelInferRequest(model_name="double"))
    assert code == IA
    assert_message(details, ["input"])


def test_grpc_unnamed_input(channel: grpc.Channel) -> None:
    msg = pb.ModelInferRequest(model_name="double")
    msg.inputs.add(datatype="FP32", shape=[1, 4])
    msg.raw_input_contents.append(struct.pack("<4f", *X4))
    code, details = grpc_error(channel, msg)
    assert code == IA
    assert_message(details, ["name"])


def test_grpc_unknown_output(channel: grpc.Channel) -> None:
    msg = _grpc_x()
    msg.raw_input_contents.append(struct.pack("<4f", *X4))
    msg.outputs.add(name="nope")
    code, details = grpc_error(channel, msg)
    assert code == IA
    assert_message(details, ["nope"])


def test_grpc_unknown_method(channel: grpc.Channel) -> None:
    stub = channel.unary_unary("/inference.GRPCInferenceService/NoSuchMethod")
    with pytest.raises(grpc.RpcError) as info:
        stub(b"", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_grpc_classification_not_an_integer(channel: grpc.Channel) -> None:
    msg = _grpc_x()
    msg.raw_input_contents.append(struct.pack("<4f", *X4))
    msg.outputs.add(name="y").parameters["classification"].string_param = "x"
    code, details = grpc_error(channel, msg)
    assert code == IA, details
    assert_message(details, ["classification"])


@pytest.mark.parametrize("payload", [b"\xff" * 10, b"\x0a\x03\xff\xfe\xfd"], ids=["corrupt-wire", "bad-utf8"])
def test_grpc_undecodable_message(channel: grpc.Channel, payload: bytes) -> None:
    code, details = raw_grpc(channel, payload)
    assert code == IA, (code, details)


# --- routes and methods ---


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/double/infer"),
        ("PUT", "/v2/models/double/infer"),
        ("DELETE", "/v2/health/live"),
        ("POST", "/v2/health/ready"),
        ("PUT", "/v2"),
        ("GET", "/v2/repository/index"),
        ("GET", "/v2/repository/models/double/load"),
    ],
)
def test_wrong_method_is_405(srv: ServerProcess, method: str, path: str) -> None:
    status, body = call(srv, method, path)
    assert status == 405, body
    assert_message(error_of(status, body), [method])


@pytest.mark.parametrize(
    "path",
    [
        "/web/nope.js",
        "/nope",
        "/v3/models/double/infer",
        "/v2/nope",
        "/v2/models/double/nope",
        "/v2/health/dead",
    ],
)
def test_unknown_path_is_404(srv: ServerProcess, path: str) -> None:
    status, body = call(srv, "GET", path)
    assert status == 404, body
    error_of(status, body)


@pytest.mark.parametrize(
    "path", ["/v2/models/double/nope", "/v2/models/double/versions/1/infer/more", "/v2/models/a/b/infer"]
)
def test_post_to_unknown_model_path_is_404(srv: ServerProcess, path: str) -> None:
    status, body = call(srv, "POST", path, _infer_json([_x()]))
    assert status == 404, body
    error_of(status, body)


@pytest.mark.parametrize("body", [b'{"parameters": [1]}', b'{"parameters": 5}'], ids=["list", "int"])
def test_load_parameters_not_an_object(srv: ServerProcess, body: bytes) -> None:
    status, answer = call(srv, "POST", "/v2/repository/models/double/load", body)
    assert status == 400, answer
    assert_message(error_of(status, answer), ["parameters"])


# --- oversized bodies ---


def test_oversized_body_is_413(small_srv: ServerProcess) -> None:
    status, body = call(small_srv, "POST", "/v2/models/double/infer", b"x" * 100_000)
    assert status == 413, body
    assert_message(error_of(status, body), ["65536"])


def test_oversized_chunked_body_is_413(small_srv: ServerProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", small_srv.http_port, timeout=10)
    try:
        conn.request("POST", "/v2/models/double/infer", body=iter([b"y" * 10_000] * 10), encode_chunked=True)
        response = conn.getresponse()
        status, body = response.status, response.read()
    finally:
        conn.close()
    assert status == 413, body
    assert_message(error_of(status, body), ["65536"])


def test_oversized_after_decompression_is_413(small_srv: ServerProcess) -> None:
    bomb = gzip.compress(b" " * 1_000_000)
    assert len(bomb) < 65536
    status, body = call(small_srv, "POST", "/v2/models/double/infer", bomb, {"Content-Encoding": "gzip"})
    assert status == 413, body
    error_of(status, body)


def test_body_under_the_limit_still_serves(small_srv: ServerProcess) -> None:
    status, body = call(small_srv, "POST", "/v2/models/double/infer", _infer_json([_x()]))
    assert status == 200, body
    assert json.loads(body)["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]
    assert small_srv.alive()


# --- a burst of garbage, then the server still serves ---


def _garbage_rest(rng: random.Random) -> tuple[str, str, bytes, dict[str, str]]:
    kind = rng.randrange(8)
    model = rng.choice(["double", "digits", "add2", "nosuch"])
    path = f"/v2/models/{model}/infer"
    if kind == 0:
        return "POST", path, rng.randbytes(rng.randrange(1, 2000)), {}
    if kind == 1:
        n = rng.randrange(0, 300)
        return "POST", path, rng.randbytes(n + 20), {"Inference-Header-Content-Length": str(n)}
    if kind == 2:
        good = _infer_json([_x()])
        return "POST", path, good[: rng.randrange(1, len(good) - 1)], {}
    if kind == 3:
        shape = [rng.randrange(-3, 100) for _ in range(rng.randrange(0, 5))]
        body = _infer_json([_x(shape=shape, data=[rng.random() for _ in range(rng.randrange(0, 20))])])
        return "POST", path, body, {}
    if kind == 4:
        segments = "/".join(
            rng.choice(["v2", "models", "..", "x", "%2F", "versions", "infer", "ready"])
            for _ in range(rng.randrange(1, 7))
        )
        return rng.choice(["GET", "POST", "DELETE"]), "/" + segments, b"", {}
    if kind == 5:
        body, _ = _binary(16, struct.pack("<4f", *X4))
        return "POST", path, body, {"Inference-Header-Content-Length": str(rng.randrange(10**6, 10**30))}
    if kind == 6:
        dt = rng.choice(["FP32", "INT8", "BYTES", "BOOL", "FP16", "XYZ", ""])
        return "POST", path, _infer_json([_x(datatype=dt)]), {}
    return "POST", path, _infer_json([_x()], outputs=[{"name": rng.choice(["y", "z", ""])}]), {}


def _burst_one(srv: ServerProcess, seed: int) -> str:
    """One garbage request; returns a problem description, or '' when the answer was fine."""
    rng = random.Random(seed)
    kind = rng.randrange(10)
    if kind == 0:  # not HTTP at all
        with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as sock:
            sock.sendall(rng.randbytes(rng.randrange(1, 500)) + b"\r\n\r\n")
            try:
                head = sock.recv(64)
            except (ConnectionResetError, TimeoutError):
                return ""
            if head and not re.match(rb"HTTP/1\.[01] 4\d\d", head):
                return f"raw garbage answered {head!r}"
        return ""
    if kind == 1:  # gRPC garbage bytes
        with grpc.insecure_channel(srv.grpc_url) as ch:
            code, details = raw_grpc(ch, rng.randbytes(rng.randrange(0, 300)))
        if code in (grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return f"gRPC garbage answered {code}: {details}"
        return ""
    method, path, body, headers = _garbage_rest(rng)
    try:
        status, answer = call(srv, method, path, body, headers)
    except (ConnectionError, http.client.HTTPException) as exc:
        return f"{method} {path}: {exc!r}"
    if status >= 500:
        return f"{method} {path} {headers} {body[:80]!r} -> {status} {answer[:200]!r}"
    if status >= 400:
        try:
            error_of(status, answer)
        except (AssertionError, ValueError):
            return f"{method} {path} -> {status} with a non-JSON error body {answer[:120]!r}"
    return ""


def _infer_correctly(srv: ServerProcess) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4) * 0.5 - 1.25
    images = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    rest = thttp.InferenceServerClient(srv.http_url)
    try:
        i = thttp.InferInput("x", [3, 4], "FP32")
        i.set_data_from_numpy(x)
        y = rest.infer("double", [i]).as_numpy("y")
        assert y is not None and np.array_equal(y, x * 2)
        i = thttp.InferInput("image", [3, 1, 8, 8], "FP32")
        i.set_data_from_numpy(images)
        p = rest.infer("digits", [i]).as_numpy("probabilities")
        assert p is not None and p.shape == (3, 10)
        assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    finally:
        rest.close()
    g = tgrpc.InferenceServerClient(srv.grpc_url)
    try:
        assert g.is_server_live()
        i = tgrpc.InferInput("x", [3, 4], "FP32")
        i.set_data_from_numpy(x)
        y = g.infer("double", [i]).as_numpy("y")
        assert y is not None and np.array_equal(y, x * 2)
        i = tgrpc.InferInput("image", [3, 1, 8, 8], "FP32")
        i.set_data_from_numpy(images)
        p = g.infer("digits", [i]).as_numpy("probabilities")
        assert p is not None and p.shape == (3, 10)
        assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    finally:
        g.close()


def test_burst_of_garbage_leaves_the_server_serving(srv: ServerProcess) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        problems = [p for p in pool.map(lambda s: _burst_one(srv, s), range(300)) if p]
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"the burst took {elapsed:.1f}s"
    assert not problems, "\n".join(problems[:20])
    assert srv.alive(), srv.log()[-3000:]
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/double/ready", "/v2/models/digits/ready"):
        assert call(srv, "GET", path)[0] == 200, path
    _infer_correctly(srv)
