"""The Ray Serve ingress: a gateway replica whose model versions are deployments of their own.

It wires what `engines/local.py` wires (model manager, data plane, router, prediction log,
metrics) with one difference: runtimes are placed in Ray (`RayPlacement`), so the manager's
loads and unloads deploy and delete version deployments. REST arrives through Ray's HTTP
proxy as an ASGI scope and goes to the same `RestApp`; gRPC arrives through Ray's gRPC proxy as
decoded messages and goes to the same `InferenceServicer`. Nothing here decides an answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from prometheus_client import start_http_server
from starlette.requests import Request
from starlette.responses import Response

from fleetserve.common.settings import ServeSettings
from fleetserve.gateway.errors import GRPC_STATUS
from fleetserve.gateway.grpc import InferenceServicer, _Undecodable
from fleetserve.gateway.rest import RestApp
from fleetserve.protocol.errors import FleetError

from .ray_grpc import RayContext, health_answer
from .ray_version import APP_PREFIX, RayPlacement
from .wiring import build_gateway, share_the_gil_finely

log = logging.getLogger(__name__)
INGRESS_APP = "fleetserve"


class Gateway:
    """The ingress deployment's replica (made a deployment by `ray_app.build`)."""

    async def __init__(self, settings: dict[str, Any], replica_cpus: float) -> None:  # type: ignore[misc]
        s = self.settings = ServeSettings(**settings)
        share_the_gil_finely()  # the replica's loop shares the GIL with its log's worker, as locally
        _delete_orphans()
        # a batch waits on another process: never on the event loop
        parts = build_gateway(s, inline_below_s=0.0, placement=RayPlacement(replica_cpus))
        self.metrics = parts.metrics
        self.plans = parts.plans
        self.manager = parts.manager
        self.predlog = parts.predlog
        self.dataplane = parts.dataplane
        self.rest = RestApp(self.dataplane, s.max_request_bytes, cors_origins=s.cors_origins)
        self.servicer = InferenceServicer(self.dataplane)
        self._httpd: Any = None
        if s.metrics_port:
            try:
                self._httpd, _ = start_http_server(
                    s.metrics_port, addr=s.host, registry=self.metrics.registry
                )
            except OSError as exc:
                log.warning("metrics port %d on %s is taken (%s): no /metrics", s.metrics_port, s.host, exc)
        await self.plans.start()
        await self.predlog.start()
        await self.manager.start(s.model_control_mode, s.load_model)
        self._poll_task = (
            asyncio.get_running_loop().create_task(self.manager.poll_forever(s.repository_poll_secs))
            if s.model_control_mode == "poll"
            else None
        )
        self.serving = True

    # --- REST, from Ray's HTTP proxy ---

    async def __call__(self, request: Request) -> Response:
        """Run the v2 REST app on the request's ASGI scope and hand back what it sent."""
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.rest(request.scope, request.receive, send)  # type: ignore[arg-type]
        response = Response(b"".join(m.get("body", b"") for m in sent[1:]), status_code=sent[0]["status"])
        # Ray's proxy sets X-Request-ID when the client sent none (as nginx does in front of local
        # replicas) and adds it to the answer itself: the gateway's copy would repeat it.
        given = request.headers.get("x-request-id", "").encode("latin-1")
        response.raw_headers = [(k, v) for k, v in sent[0]["headers"] if k != b"x-request-id" or v != given]
        return response

    # --- gRPC, from Ray's gRPC proxy: inference.GRPCInferenceService ---

    async def _unary(self, method: str, request: Any, grpc_context: Any) -> Any:
        context = RayContext(grpc_context)
        if type(request) is _Undecodable:
            raise context.fail(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        try:
            return await getattr(self.servicer, method)(request, context)
        except FleetError as exc:
            raise context.fail(GRPC_STATUS[exc.code], exc.message) from None

    async def ServerLive(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary("ServerLive", request, grpc_context)

    async def ServerReady(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary("ServerReady", request, grpc_context)

    async def ModelReady(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary("ModelReady", request, grpc_context)

    async def ServerMetadata(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary("ServerMetadata", request, grpc_context)

    async def ModelMetadata(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary("ModelMetadata", request, grpc_context)

    async def ModelConfig(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary("ModelConfig", request, grpc_context)

    async def ModelStatistics(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary("ModelStatistics", request, grpc_context)

    async def RepositoryIndex(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary("RepositoryIndex", request, grpc_context)

    async def RepositoryModelLoad(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary("RepositoryModelLoad", request, grpc_context)

    async def RepositoryModelUnload(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary("RepositoryModelUnload", request, grpc_context)

    async def ModelInfer(self, request: Any, grpc_context: Any) -> Any:
        return await self._unary("ModelInfer", request, grpc_context)

    async def ModelStreamInfer(self, requests: Any, grpc_context: Any) -> AsyncIterator[Any]:
        async for answer in self.servicer.ModelStreamInfer(requests, RayContext(grpc_context)):
            yield answer

    # --- gRPC: grpc.health.v1.Health ---

    async def Check(self, request: Any, grpc_context: Any) -> Any:
        return health_answer(self.serving, request.service, RayContext(grpc_context))

    async def __del__(self) -> None:
        self.serving = False
        poll: asyncio.Task[None] | None = getattr(self, "_poll_task", None)
        if poll is not None:
            poll.cancel()
        await self.dataplane.shadows.drain()
        await self.manager.stop()
        await self.plans.stop()
        await self.predlog.stop()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


def _delete_orphans() -> None:
    """Version applications left by an earlier ingress (one that crashed) serve nobody: delete."""
    from ray import serve

    try:
        names = [n for n in serve.status().applications if n.startswith(APP_PREFIX)]
    except Exception as exc:  # no controller yet: nothing to clean
        log.debug("no Serve status: %s", exc)
        return
    for name in names:
        serve.delete(name, _blocking=False)
