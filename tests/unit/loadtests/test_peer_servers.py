"""Unit tests of the bare peer servers' pure parts (loadtests/peers.py): no socket, no process."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[3]
if str(PROJECT_ROOT) not in sys.path:  # loadtests/ is a folder of the project, not an installed package
    sys.path.insert(0, str(PROJECT_ROOT))

from fleetserve.wire import inference_pb2 as pb  # noqa: E402
from loadtests.peers import (  # noqa: E402
    MAX_BATCH,
    MODEL_OUTPUTS,
    SERVICE,
    AnswerGroups,
    BareRest,
    OutputSpec,
    batch_of,
    format_output,
    grpc_handler,
    grpc_infer_response,
    outputs_for,
    parse_args,
    parse_output,
    rest_infer_response,
)

DIGITS = MODEL_OUTPUTS["digits"]


# --------------------------------------------------------------------------------------------
# Output specs


def test_table_matches_the_bench_models() -> None:
    assert MODEL_OUTPUTS["digits"] == (OutputSpec("probabilities", "FP32", (10,)),)
    assert MODEL_OUTPUTS["resnet18"] == (OutputSpec("logits", "FP32", (1000,)),)


def test_output_shape_and_size() -> None:
    spec = OutputSpec("m", "FP16", (3, 4))
    assert spec.shape(5) == [5, 3, 4]
    assert spec.nbytes(5) == 5 * 3 * 4 * 2
    assert OutputSpec("v", "INT64", ()).nbytes(7) == 56
    assert OutputSpec("logits", "FP32", (1000,)).nbytes(1) == 4000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("probabilities:FP32:10", OutputSpec("probabilities", "FP32", (10,))),
        ("m:fp16:3x4", OutputSpec("m", "FP16", (3, 4))),
        ("v:INT64:", OutputSpec("v", "INT64", ())),
    ],
)
def test_parse_output_and_back(text: str, expected: OutputSpec) -> None:
    assert parse_output(text) == expected
    assert parse_output(format_output(expected)) == expected


@pytest.mark.parametrize(
    "text", ["", "logits", "logits:FP32", ":FP32:10", "x:BYTES:1", "x:FP32:a", "x:FP32:0", "x:FP32:3x-1"]
)
def test_parse_output_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_output(text)


def test_outputs_for_table_overrides_and_unknown() -> None:
    assert outputs_for("digits") == DIGITS
    assert outputs_for("digits", ["p:FP64:2"]) == (OutputSpec("p", "FP64", (2,)),)
    assert outputs_for("other", ["a:FP32:1", "b:INT8:2x2"]) == (
        OutputSpec("a", "FP32", (1,)),
        OutputSpec("b", "INT8", (2, 2)),
    )
    with pytest.raises(ValueError, match="--output"):
        outputs_for("other")


def test_batch_of() -> None:
    assert batch_of([3, 1, 8, 8]) == 3
    assert batch_of([1]) == 1
    assert batch_of([]) == 1
    for bad in ([0, 8], [-1, 8], [MAX_BATCH + 1]):
        with pytest.raises(ValueError):
            batch_of(bad)


def test_parse_args() -> None:
    args = parse_args(["--kind", "bare-grpc", "--port", "8001", "--model", "resnet18"])
    assert (args.kind, args.port, args.host, args.outputs) == (
        "bare-grpc",
        8001,
        "127.0.0.1",
        MODEL_OUTPUTS["resnet18"],
    )
    args = parse_args(["--kind", "bare-rest", "--port", "1", "--model", "x", "--output", "o:FP32:2"])
    assert args.outputs == (OutputSpec("o", "FP32", (2,)),)
    assert (args.group, args.group_wait_ms) == (1, 5.0)
    args = parse_args(["--kind", "bare-grpc", "--port", "1", "--model", "digits", "--group", "32"])
    assert args.group == 32
    for bad in (
        ["--kind", "bare-udp", "--port", "1", "--model", "digits"],
        ["--kind", "bare-rest", "--port", "0", "--model", "digits"],
        ["--kind", "bare-rest", "--port", "1", "--model", "unknown"],
        ["--kind", "bare-grpc", "--port", "1", "--model", "digits", "--group", "0"],
        ["--kind", "bare-grpc", "--port", "1", "--model", "digits", "--group-wait-ms", "0"],
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)


# --------------------------------------------------------------------------------------------
# bare-grpc


def _grpc_request(shape: list[int], model: str = "digits", request_id: str = "") -> Any:
    request = pb.ModelInferRequest(model_name=model, id=request_id)
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "image", "FP32"
    tensor.shape.extend(shape)
    request.raw_input_contents.append(np.zeros(shape, np.float32).tobytes())
    return request


def test_grpc_response_is_read_by_tritonclient() -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc import service_pb2

    response = grpc_infer_response(_grpc_request([3, 1, 8, 8], request_id="r1"), DIGITS)
    assert (response.model_name, response.model_version, response.id) == ("digits", "1", "r1")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("probabilities", "FP32", [3, 10])
    ]
    assert [len(raw) for raw in response.raw_output_contents] == [3 * 10 * 4]
    # Through the wire format into tritonclient's own message, as the benchmark's client sees it.
    theirs = service_pb2.ModelInferResponse.FromString(response.SerializeToString())
    value = grpcclient.InferResult(theirs).as_numpy("probabilities")
    assert value.shape == (3, 10)
    assert value.dtype == np.float32
    assert not value.any()


def test_grpc_response_several_outputs_and_no_input() -> None:
    outputs = (OutputSpec("a", "FP32", (2,)), OutputSpec("b", "INT64", (1, 3)))
    response = grpc_infer_response(pb.ModelInferRequest(model_name="m"), outputs)
    assert [list(o.shape) for o in response.outputs] == [[1, 2], [1, 1, 3]]
    assert [len(raw) for raw in response.raw_output_contents] == [8, 24]


class _Context:
    def __init__(self) -> None:
        self.aborted: tuple[Any, str] | None = None

    async def abort(self, code: Any, details: str) -> None:
        self.aborted = (code, details)
        raise RuntimeError("aborted")


def _method(handler: Any, name: str) -> Any:
    method = handler.service(SimpleNamespace(method=f"/{SERVICE}/{name}"))
    assert method is not None, name
    return method


async def test_grpc_handler_methods() -> None:
    import grpc

    handler = grpc_handler("digits", DIGITS)
    infer = _method(handler, "ModelInfer")
    request = infer.request_deserializer(_grpc_request([2, 1, 8, 8]).SerializeToString())
    answer = pb.ModelInferResponse.FromString(
        infer.response_serializer(await infer.unary_unary(request, None))
    )
    assert list(answer.outputs[0].shape) == [2, 10]

    live = _method(handler, "ServerLive")
    assert (await live.unary_unary(pb.ServerLiveRequest(), None)).live
    ready = _method(handler, "ServerReady")
    assert (await ready.unary_unary(pb.ServerReadyRequest(), None)).ready
    model_ready = _method(handler, "ModelReady")
    assert (await model_ready.unary_unary(pb.ModelReadyRequest(name="digits"), None)).ready
    assert not (await model_ready.unary_unary(pb.ModelReadyRequest(name="other"), None)).ready
    assert handler.service(SimpleNamespace(method=f"/{SERVICE}/ModelMetadata")) is None

    context = _Context()
    with pytest.raises(RuntimeError, match="aborted"):
        await infer.unary_unary(_grpc_request([0, 1, 8, 8]), context)
    assert context.aborted is not None
    assert context.aborted[0] == grpc.StatusCode.INVALID_ARGUMENT


async def test_answer_groups_release_together_when_full() -> None:
    import asyncio

    groups = AnswerGroups(3, wait_s=60.0)
    first = [asyncio.ensure_future(groups.turn()) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert not any(t.done() for t in first)  # two of three: held
    await asyncio.wait_for(groups.turn(), 1.0)  # the third fills the group
    await asyncio.wait_for(asyncio.gather(*first), 1.0)
    await asyncio.wait_for(AnswerGroups(1, wait_s=60.0).turn(), 1.0)  # size 1: never held


async def test_answer_groups_release_after_the_wait() -> None:
    import asyncio

    groups = AnswerGroups(64, wait_s=0.02)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(asyncio.gather(groups.turn(), groups.turn()), 2.0)
    assert loop.time() - started >= 0.015  # released by the timer, not before
    await asyncio.wait_for(groups.turn(), 2.0)  # a new group starts its own wait


async def test_grpc_handler_holds_answers_for_their_group() -> None:
    import asyncio

    infer = _method(grpc_handler("digits", DIGITS, AnswerGroups(2, wait_s=60.0)), "ModelInfer")
    one = asyncio.ensure_future(infer.unary_unary(_grpc_request([1, 1, 8, 8]), None))
    await asyncio.sleep(0.01)
    assert not one.done()
    two = await asyncio.wait_for(infer.unary_unary(_grpc_request([3, 1, 8, 8]), None), 1.0)
    assert list(two.outputs[0].shape) == [3, 10]
    assert list((await asyncio.wait_for(one, 1.0)).outputs[0].shape) == [1, 10]


# --------------------------------------------------------------------------------------------
# bare-rest


def test_rest_response_is_read_by_tritonclient() -> None:
    import tritonclient.http as httpclient

    header = {"id": "q", "inputs": [{"name": "image", "shape": [4, 1, 8, 8], "datatype": "FP32"}]}
    body, json_length = rest_infer_response(header, "digits", DIGITS)
    assert len(body) == json_length + 4 * 10 * 4
    head = orjson.loads(body[:json_length])
    assert head == {
        "model_name": "digits",
        "model_version": "1",
        "id": "q",
        "outputs": [
            {
                "name": "probabilities",
                "datatype": "FP32",
                "shape": [4, 10],
                "parameters": {"binary_data_size": 160},
            }
        ],
    }
    value = httpclient.InferResult.from_response_body(body, header_length=json_length).as_numpy(
        "probabilities"
    )
    assert value.shape == (4, 10)
    assert not value.any()


def test_rest_response_without_inputs_is_batch_1() -> None:
    body, json_length = rest_infer_response({}, "digits", DIGITS)
    head = orjson.loads(body[:json_length])
    assert "id" not in head
    assert head["outputs"][0]["shape"] == [1, 10]


async def _call(app: BareRest, method: str, path: str, body: bytes = b"", headers: Any = ()) -> Any:
    chunks = [body[:5], body[5:]] if body else [b""]
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
    await app(scope, receive, send)
    start, payload = sent
    return start["status"], dict(start["headers"]), payload["body"]


async def test_asgi_infer_with_binary_input() -> None:
    app = BareRest("digits", DIGITS)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [2, 1, 8, 8],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 512},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    )
    request = header + bytes(512)
    status, headers, body = await _call(
        app,
        "POST",
        "/v2/models/digits/infer",
        request,
        [(b"inference-header-content-length", str(len(header)).encode())],
    )
    assert status == 200
    json_length = int(headers[b"inference-header-content-length"])
    assert int(headers[b"content-length"]) == len(body) == json_length + 80
    assert orjson.loads(body[:json_length])["outputs"][0]["shape"] == [2, 10]


async def test_asgi_infer_json_only_body() -> None:
    app = BareRest("digits", DIGITS)
    request = orjson.dumps({"inputs": [{"name": "image", "shape": [1, 1, 8, 8], "datatype": "FP32"}]})
    status, headers, body = await _call(app, "POST", "/v2/models/digits/infer", request)
    assert status == 200
    assert len(body) == int(headers[b"inference-header-content-length"]) + 40


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/health/ready", 200),
        ("GET", "/v2/health/live", 200),
        ("GET", "/v2/models/digits/ready", 200),
        ("GET", "/v2/models/other/ready", 404),
        ("POST", "/v2/health/ready", 404),
        ("GET", "/v2/models/digits/infer", 404),
        ("POST", "/v2/models/other/infer", 404),
        ("GET", "/", 404),
    ],
)
async def test_asgi_routes(method: str, path: str, status: int) -> None:
    got, headers, body = await _call(BareRest("digits", DIGITS), method, path)
    assert got == status
    assert body == b""
    assert headers[b"content-length"] == b"0"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"inputs": [{"shape": [0, 8]}]}'])
async def test_asgi_bad_infer_is_400(body: bytes) -> None:
    status, _, answer = await _call(BareRest("digits", DIGITS), "POST", "/v2/models/digits/infer", body)
    assert status == 400
    assert "error" in orjson.loads(answer)


async def test_asgi_ignores_non_http_scopes() -> None:
    async def fail(*_: Any) -> Any:
        raise AssertionError("must not be called")

    await BareRest("digits", DIGITS)({"type": "lifespan"}, fail, fail)
