"""Peer baselines for the benchmark: the thinnest v2 servers the Python stack allows.

Two servers that answer ``ModelInfer`` with a canned, correctly shaped response (zeros) for
the model under test, and do nothing else: no routing beyond one path, no batching, no
validation, no model, no metrics. They are what fleetserve costs at the least on the same
stack (grpc.aio, uvicorn + httptools, uvloop), measured with the same client:

- ``bare-grpc``: a ``grpc.aio`` server on uvloop with ``inference.GRPCInferenceService``
  registered as a generic handler (``ModelInfer``, ``ServerLive``, ``ServerReady``,
  ``ModelReady``) over fleetserve's own protobuf messages; the outputs go in
  ``raw_output_contents``. Max message sizes 1 GiB.
- ``bare-rest``: a bare ASGI callable on uvicorn (httptools, uvloop, lifespan off, no access
  log) that reads the body, parses the JSON header (orjson, ``Inference-Header-Content-Length``)
  and answers with the binary-tensor extension (JSON header + raw bytes); ``GET
  /v2/health/live``, ``/v2/health/ready`` and ``/v2/models/<model>/ready`` answer 200.

The batch size of an answer is the first dimension of the request's first input; each output
is ``[n, *dims]`` of the output's datatype, all zeros.

``--group N`` (bare-grpc) holds the answers until N requests wait, or ``--group-wait-ms`` has
passed since the first of them, and then releases them together: the answers of a batch of N,
without the batch. ``loadtests/grouped_answers.py`` measures what that does to grpc.aio's own
cost per request.

Usage::

    python -m loadtests.peers --kind bare-grpc|bare-rest --port P --model digits|resnet18 \\
        [--host 127.0.0.1] [--output NAME:DATATYPE:DIMS ...] [--group N [--group-wait-ms MS]]

``--output`` (repeatable, dims without the batch dimension, ``x``-separated, e.g.
``probabilities:FP32:10``) overrides the built-in table of outputs, which knows ``digits``
and ``resnet18``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

KINDS = ("bare-grpc", "bare-rest")
SERVICE = "inference.GRPCInferenceService"
MAX_MESSAGE_BYTES = 1 << 30
# Bytes per element of the fixed-size v2 datatypes (BYTES has no fixed size: not supported).
DATATYPE_SIZES: dict[str, int] = {
    "BOOL": 1,
    "UINT8": 1,
    "UINT16": 2,
    "UINT32": 4,
    "UINT64": 8,
    "INT8": 1,
    "INT16": 2,
    "INT32": 4,
    "INT64": 8,
    "FP16": 2,
    "BF16": 2,
    "FP32": 4,
    "FP64": 8,
}
MAX_BATCH = 1 << 20  # a request claiming a bigger batch gets an error, not a 1 TB answer


@dataclass(frozen=True)
class OutputSpec:
    """One output of the model: name, v2 datatype and dims of one item (no batch dimension)."""

    name: str
    datatype: str
    dims: tuple[int, ...]

    def shape(self, batch: int) -> list[int]:
        """Return the shape of this output for a batch of ``batch``."""
        return [batch, *self.dims]

    def nbytes(self, batch: int) -> int:
        """Return the size in bytes of this output's raw contents for a batch of ``batch``."""
        count = batch
        for dim in self.dims:
            count *= dim
        return count * DATATYPE_SIZES[self.datatype]


# What the models of the bench answer (their config.pbtxt / ONNX outputs).
MODEL_OUTPUTS: dict[str, tuple[OutputSpec, ...]] = {
    "digits": (OutputSpec("probabilities", "FP32", (10,)),),
    "resnet18": (OutputSpec("logits", "FP32", (1000,)),),
}


def parse_output(text: str) -> OutputSpec:
    """Parse ``NAME:DATATYPE:DIMS`` (dims ``x``-separated, e.g. ``logits:FP32:1000``, ``m:FP32:3x4``).

    An empty dims part (``NAME:DATATYPE:``) is an output of shape ``[n]``.
    """
    name, sep, rest = text.partition(":")
    datatype, sep2, dims_text = rest.partition(":")
    if not name or not sep or not sep2:
        raise ValueError(f"output {text!r} is not NAME:DATATYPE:DIMS")
    datatype = datatype.upper()
    if datatype not in DATATYPE_SIZES:
        raise ValueError(f"output {text!r}: datatype {datatype} is not one of {sorted(DATATYPE_SIZES)}")
    try:
        dims = tuple(int(d) for d in dims_text.split("x")) if dims_text else ()
    except ValueError:
        raise ValueError(f"output {text!r}: dims {dims_text!r} are not x-separated integers") from None
    if any(d < 1 for d in dims):
        raise ValueError(f"output {text!r}: every dim must be >= 1")
    return OutputSpec(name, datatype, dims)


def format_output(spec: OutputSpec) -> str:
    """Return the ``NAME:DATATYPE:DIMS`` text of ``spec`` (the inverse of :func:`parse_output`)."""
    return f"{spec.name}:{spec.datatype}:{'x'.join(str(d) for d in spec.dims)}"


def outputs_for(model: str, overrides: Sequence[str] = ()) -> tuple[OutputSpec, ...]:
    """Return the outputs to answer for ``model``: the parsed ``overrides``, else the table's."""
    if overrides:
        return tuple(parse_output(text) for text in overrides)
    if model not in MODEL_OUTPUTS:
        raise ValueError(f"no built-in outputs for model {model!r}: pass --output NAME:DATATYPE:DIMS")
    return MODEL_OUTPUTS[model]


def batch_of(shape: Sequence[int]) -> int:
    """Return the batch size of a request whose first input has ``shape`` (1 when it has none)."""
    batch = int(shape[0]) if len(shape) else 1
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"batch size {batch} is not within 1..{MAX_BATCH}")
    return batch


@functools.lru_cache(maxsize=64)
def zeros(nbytes: int) -> bytes:
    """Return ``nbytes`` zero bytes (cached: every answer of a batch size shares one)."""
    return bytes(nbytes)


# --------------------------------------------------------------------------------------------
# bare-grpc


def grpc_infer_response(request: Any, outputs: Sequence[OutputSpec]) -> Any:
    """Return the ``ModelInferResponse`` answering ``request``: zeros in ``raw_output_contents``."""
    from fleetserve.wire import inference_pb2 as pb

    batch = batch_of(request.inputs[0].shape) if request.inputs else 1
    response = pb.ModelInferResponse(
        model_name=request.model_name, model_version=request.model_version or "1", id=request.id
    )
    for spec in outputs:
        tensor = response.outputs.add()
        tensor.name = spec.name
        tensor.datatype = spec.datatype
        tensor.shape.extend(spec.shape(batch))
        response.raw_output_contents.append(zeros(spec.nbytes(batch)))
    return response


class AnswerGroups:
    """Holds answers until ``size`` wait or ``wait_s`` has passed since the first, then
    releases them together (size 1: every answer at once, nothing held)."""

    def __init__(self, size: int, wait_s: float) -> None:
        self.size, self.wait_s = size, wait_s
        self._waiting: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def turn(self) -> None:
        """Return when this request's group is released."""
        if self.size <= 1:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.append(future)
        if len(self._waiting) >= self.size:
            self.release()
        elif self._timer is None:
            self._timer = loop.call_later(self.wait_s, self.release)
        await future

    def release(self) -> None:
        """Release every held answer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, []
        for future in waiting:
            if not future.done():
                future.set_result(None)


def grpc_handler(model: str, outputs: Sequence[OutputSpec], groups: AnswerGroups | None = None) -> Any:
    """Return the generic handler of ``inference.GRPCInferenceService`` for the bare peer."""
    import grpc

    from fleetserve.wire import inference_pb2 as pb

    async def model_infer(request: Any, context: Any) -> Any:
        try:
            response = grpc_infer_response(request, outputs)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if groups is not None:
            await groups.turn()
        return response

    async def server_live(request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=True)

    async def model_ready(request: Any, context: Any) -> Any:
        return pb.ModelReadyResponse(ready=request.name == model)

    def unary(method: Callable[..., Awaitable[Any]], request_type: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(
            method,
            request_deserializer=request_type.FromString,
            response_serializer=lambda message: message.SerializeToString(),
        )

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ModelInfer": unary(model_infer, pb.ModelInferRequest),
            "ServerLive": unary(server_live, pb.ServerLiveRequest),
            "ServerReady": unary(server_ready, pb.ServerReadyRequest),
            "ModelReady": unary(model_ready, pb.ModelReadyRequest),
        },
    )


async def serve_grpc(
    host: str, port: int, model: str, outputs: Sequence[OutputSpec], groups: AnswerGroups | None = None
) -> None:
    """Serve the bare gRPC peer until SIGTERM or SIGINT."""
    from grpc import aio

    server = aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers((grpc_handler(model, outputs, groups),))
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise SystemExit(f"bare-grpc: cannot bind {host}:{port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    print(f"bare-grpc peer for {model} on {host}:{port}", flush=True)
    await stop.wait()
    await server.stop(grace=1)


# --------------------------------------------------------------------------------------------
# bare-rest


def rest_infer_response(
    header: Mapping[str, Any], model: str, outputs: Sequence[OutputSpec]
) -> tuple[bytes, int]:
    """Return the binary-extension body answering the JSON ``header`` and its JSON length."""
    inputs = header.get("inputs") or []
    batch = batch_of(inputs[0].get("shape") or []) if inputs else 1
    entries = []
    blobs = []
    for spec in outputs:
        nbytes = spec.nbytes(batch)
        entries.append(
            {
                "name": spec.name,
                "datatype": spec.datatype,
                "shape": spec.shape(batch),
                "parameters": {"binary_data_size": nbytes},
            }
        )
        blobs.append(zeros(nbytes))
    body: dict[str, Any] = {"model_name": model, "model_version": "1", "outputs": entries}
    if header.get("id"):
        body["id"] = header["id"]
    json_header = orjson.dumps(body)
    return b"".join([json_header, *blobs]), len(json_header)


def _response_headers(body: bytes, content_type: bytes, extra: Sequence[tuple[bytes, bytes]] = ()) -> list:
    return [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra]


class BareRest:
    """The bare ASGI peer: one infer route and the readiness routes, nothing else."""

    def __init__(self, model: str, outputs: Sequence[OutputSpec]) -> None:
        self.model = model
        self.outputs = tuple(outputs)
        self.infer_path = f"/v2/models/{model}/infer"
        self.ok_paths = {"/v2/health/live", "/v2/health/ready", f"/v2/models/{model}/ready"}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        status, body, content_type, extra = 404, b"", b"text/plain", []
        if method == "POST" and path == self.infer_path:
            status, body, content_type, extra = await self._infer(scope, receive)
        elif method == "GET" and path in self.ok_paths:
            status = 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": _response_headers(body, content_type, extra),
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _infer(self, scope: dict[str, Any], receive: Any) -> tuple[int, bytes, bytes, list]:
        chunks = []
        for _ in range(1 << 20):  # bounded: a body of a million chunks is not a request
            message = await receive()
            if message["type"] != "http.request":
                return 400, b"client went away", b"text/plain", []
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        length = None
        for key, value in scope["headers"]:
            if key == b"inference-header-content-length":
                length = int(value)
                break
        try:
            header = orjson.loads(raw[:length] if length is not None else raw)
            body, json_length = rest_infer_response(header, self.model, self.outputs)
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError, IndexError) as exc:
            return 400, orjson.dumps({"error": str(exc)}), b"application/json", []
        return (
            200,
            body,
            b"application/octet-stream",
            [(b"inference-header-content-length", str(json_length).encode())],
        )


def serve_rest(host: str, port: int, model: str, outputs: Sequence[OutputSpec]) -> None:
    """Serve the bare REST peer on uvicorn until SIGTERM or SIGINT (uvicorn handles them)."""
    import uvicorn

    config = uvicorn.Config(
        BareRest(model, outputs),
        host=host,
        port=port,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=75,
    )
    # uvicorn re-raises the SIGTERM it caught once it has shut down: exit 0 on it, not -15.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    print(f"bare-rest peer for {model} on {host}:{port}", flush=True)
    uvicorn.Server(config).run()


# --------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m loadtests.peers", description=__doc__.splitlines()[0])
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--model", required=True, help="the model name answered (digits, resnet18, ...)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--output",
        action="append",
        default=[],
        help="NAME:DATATYPE:DIMS of one output (repeatable); default: the built-in table",
    )
    parser.add_argument(
        "--group", type=int, default=1, help="bare-grpc: release the answers in groups of N (default 1)"
    )
    parser.add_argument(
        "--group-wait-ms", type=float, default=5.0, help="bare-grpc: hold a group at most this long"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.group <= 4096 or not 0.0 < args.group_wait_ms <= 1000.0:
        parser.error("--group must be within 1..4096 and --group-wait-ms within (0, 1000]")
    try:
        args.outputs = outputs_for(args.model, args.output)
    except ValueError as exc:
        parser.error(str(exc))
    if not 0 < args.port < 65536:
        parser.error("--port must be within 1..65535")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run one peer until it is stopped."""
    args = parse_args(argv)
    if args.kind == "bare-grpc":
        import uvloop

        with contextlib.suppress(KeyboardInterrupt):
            groups = AnswerGroups(args.group, args.group_wait_ms / 1e3) if args.group > 1 else None
            uvloop.run(serve_grpc(args.host, args.port, args.model, args.outputs, groups))
    else:
        serve_rest(args.host, args.port, args.model, args.outputs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
