"""The gRPC adapter: `inference.GRPCInferenceService` over one data plane.

Messages come from fleetserve's own protos (package `fleetserve.wire`); the service is
registered under its standard name with generic handlers, which is what clients address.
Translation only; what to answer is the data plane's.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from fleetserve.protocol import grpc_codec
from fleetserve.protocol.errors import FleetError
from fleetserve.wire import inference_pb2 as pb

from .dataplane import DataPlane
from .errors import GRPC_STATUS
from .request_ids import request_id

SERVICE = "inference.GRPCInferenceService"


def _metadata(context: aio.ServicerContext, key: str) -> str | None:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode("latin-1")
    return None


def _infer_metadata(context: aio.ServicerContext) -> tuple[str | None, str | None]:
    """The request id and the rollout's sticky key, in one pass over the metadata."""
    rid = key = None
    for k, v in context.invocation_metadata() or ():
        if k == "x-request-id":
            rid = v if isinstance(v, str) else v.decode("latin-1")
        elif k == "x-fleetserve-route-key":
            key = v if isinstance(v, str) else v.decode("latin-1")
    return rid, key


def _bearer(context: aio.ServicerContext) -> str | None:
    value = _metadata(context, "authorization") or ""
    return value[7:].strip() if value[:7].lower() == "bearer " else None


class InferenceServicer:
    """The v2 gRPC methods, each a translation to one data-plane call."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dp = dataplane

    async def ServerLive(self, req: pb.ServerLiveRequest, ctx: aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.dp.live())

    async def ServerReady(
        self, req: pb.ServerReadyRequest, ctx: aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.dp.ready())

    async def ModelReady(self, req: pb.ModelReadyRequest, ctx: aio.ServicerContext) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.dp.model_ready(req.name, req.version))

    async def ServerMetadata(
        self, req: pb.ServerMetadataRequest, ctx: aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        m = self.dp.server_metadata()
        return pb.ServerMetadataResponse(name=m.name, version=m.version, extensions=m.extensions)

    async def ModelMetadata(
        self, req: pb.ModelMetadataRequest, ctx: aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        m = self.dp.model_metadata(req.name, req.version)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=m.name,
            versions=m.versions,
            platform=m.platform,
            inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in m.inputs],
            outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in m.outputs],
        )

    async def ModelConfig(
        self, req: pb.ModelConfigRequest, ctx: aio.ServicerContext
    ) -> pb.ModelConfigResponse:
        return pb.ModelConfigResponse(config=self.dp.model_config(req.name, req.version))

    async def ModelStatistics(
        self, req: pb.ModelStatisticsRequest, ctx: aio.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        return self.dp.model_statistics(req.name, req.version)

    async def RepositoryIndex(
        self, req: pb.RepositoryIndexRequest, ctx: aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        rows = self.dp.repository_index(req.ready)
        index = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[index(name=r.name, version=r.version, state=r.state, reason=r.reason) for r in rows]
        )

    async def RepositoryModelLoad(
        self, req: pb.RepositoryModelLoadRequest, ctx: aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        await self.dp.load_model(req.model_name, _bearer(ctx), dict(req.parameters))
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, req: pb.RepositoryModelUnloadRequest, ctx: aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        await self.dp.unload_model(req.model_name, _bearer(ctx), dict(req.parameters))
        return pb.RepositoryModelUnloadResponse()

    async def ModelInfer(self, req: pb.ModelInferRequest, ctx: aio.ServicerContext) -> pb.ModelInferResponse:
        given_id, route_key = _infer_metadata(ctx)
        rid = request_id(given_id)
        ctx.set_trailing_metadata((("x-request-id", rid),))
        request = grpc_codec.decode_infer_request(req, rid)
        request.route_key = route_key
        remaining = ctx.time_remaining()
        if remaining is not None:
            request.deadline = time.perf_counter() + remaining  # the gRPC deadline, on the data plane's clock
        response = await self.dp.infer(request, "grpc")
        return grpc_codec.encode_infer_response(response)

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], ctx: aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # Errors of one request travel in-stream (error_message), as Triton does; the stream goes on.
        async for req in requests:
            if type(req) is _Undecodable:
                yield pb.ModelStreamInferResponse(error_message=req.reason)
                continue
            rid = request_id(None)
            try:
                response = await self.dp.infer(grpc_codec.decode_infer_request(req, rid), "grpc")
                yield pb.ModelStreamInferResponse(infer_response=grpc_codec.encode_infer_response(response))
            except FleetError as exc:
                yield pb.ModelStreamInferResponse(error_message=exc.message)


_UNARY = {
    "ServerLive": pb.ServerLiveRequest,
    "ServerReady": pb.ServerReadyRequest,
    "ModelReady": pb.ModelReadyRequest,
    "ServerMetadata": pb.ServerMetadataRequest,
    "ModelMetadata": pb.ModelMetadataRequest,
    "ModelInfer": pb.ModelInferRequest,
    "ModelConfig": pb.ModelConfigRequest,
    "ModelStatistics": pb.ModelStatisticsRequest,
    "RepositoryIndex": pb.RepositoryIndexRequest,
    "RepositoryModelLoad": pb.RepositoryModelLoadRequest,
    "RepositoryModelUnload": pb.RepositoryModelUnloadRequest,
}


class _Undecodable:
    """What the request deserializer hands over for bytes that are not the expected message."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _deserializer(request_type: Any) -> Callable[[bytes], Any]:
    # grpc answers UNKNOWN when a deserializer raises; a message that does not decode is the
    # client's mistake, so it travels to the handler and gets INVALID_ARGUMENT there. Decoding
    # stays in grpc's deserializer slot: parsing inside the handler measured ~15% slower.
    parse = request_type.FromString
    name = request_type.__name__

    def deserialize(raw: bytes) -> Any:
        try:
            return parse(raw)
        except DecodeError as exc:
            return _Undecodable(f"request is not a valid {name}: {exc}")

    return deserialize


def _guard(method: Callable[[Any, aio.ServicerContext], Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Answer undecodable requests and FleetErrors with their gRPC code."""

    async def handler(request: Any, context: aio.ServicerContext) -> Any:
        if type(request) is _Undecodable:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        try:
            return await method(request, context)
        except FleetError as exc:
            await context.abort(GRPC_STATUS[exc.code], exc.message)

    return handler


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()


def generic_handler(servicer: InferenceServicer) -> grpc.GenericRpcHandler:
    """`inference.GRPCInferenceService` as a generic handler over the servicer's methods."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for name, request_type in _UNARY.items():
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            _guard(getattr(servicer, name)),
            request_deserializer=_deserializer(request_type),
            response_serializer=_serialize,
        )
    handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
        servicer.ModelStreamInfer,
        request_deserializer=_deserializer(pb.ModelInferRequest),
        response_serializer=_serialize,
    )
    return grpc.method_handlers_generic_handler(SERVICE, handlers)
