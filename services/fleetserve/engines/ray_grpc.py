"""The v2 gRPC service on Ray Serve's gRPC proxy.

Ray's proxy takes `grpc_servicer_functions`: import paths of `add_..._to_server(servicer,
server)` functions. It keeps each method's request deserializer, so fleetserve's own
(`gateway.grpc.generic_handler`, registered under `inference.GRPCInferenceService`) decodes
requests on the proxy, and the ingress deployment's method of the same name receives the
message; what it returns is serialized in the replica. tritonclient sends no `application`
metadata, and Ray routes such a call to the one application with a route prefix: the
gateway's (model versions deploy with none). Ray's context has metadata, codes and trailing
metadata, but no deadline and no abort: `RayContext` adapts it for the gateway's servicer.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fleetserve.gateway.grpc import InferenceServicer, generic_handler

INFERENCE = "fleetserve.engines.ray_grpc.add_inference_service"
HEALTH = "fleetserve.engines.ray_grpc.add_health_service"
SERVICER_FUNCTIONS = [INFERENCE, HEALTH]


def add_inference_service(servicer: Any, server: grpc.Server) -> None:
    """Register `inference.GRPCInferenceService` with fleetserve's own message types."""
    server.add_generic_rpc_handlers((generic_handler(servicer),))


def add_health_service(servicer: Any, server: grpc.Server) -> None:
    """Register `grpc.health.v1.Health`."""
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)


class StatusError(Exception):
    """Raised after the code and details are set on Ray's context: Ray answers with them."""


class RayContext:
    """The part of `grpc.aio.ServicerContext` the gateway's servicer uses, over Ray's context."""

    def __init__(self, context: Any) -> None:
        self._context = context

    def invocation_metadata(self) -> list[tuple[str, str]]:
        """The client's metadata."""
        return list(self._context.invocation_metadata())

    def set_trailing_metadata(self, metadata: Any) -> None:
        """Trailing metadata of the answer (the request id)."""
        self._context.set_trailing_metadata(list(metadata))

    def time_remaining(self) -> float | None:
        """Ray's proxy does not pass the client's deadline on (its request_timeout_s applies)."""
        return None

    def fail(self, code: grpc.StatusCode, details: str) -> StatusError:
        """Set the answer's status; raise what this returns."""
        self._context.set_code(code)
        self._context.set_details(details)
        return StatusError(details)


def health_answer(serving: bool, service: str, context: RayContext) -> health_pb2.HealthCheckResponse:
    """grpc.health.v1 Check: the server and the inference service are SERVING once started."""
    if service not in ("", "inference.GRPCInferenceService"):
        raise context.fail(grpc.StatusCode.NOT_FOUND, f"unknown service {service!r}")
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    return health_pb2.HealthCheckResponse(status=status)


__all__ = [
    "SERVICER_FUNCTIONS",
    "InferenceServicer",
    "RayContext",
    "add_health_service",
    "add_inference_service",
]
