"""The local engine: one process serving REST (uvicorn), gRPC (grpc.aio) and metrics.

REST and gRPC share one event loop and one data plane; inference runs on the batchers'
executor threads, off the loop.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from dataclasses import dataclass

import uvicorn
import uvloop
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import start_http_server

from fleetserve.common.settings import ServeSettings
from fleetserve.gateway.grpc import SERVICE, InferenceServicer, generic_handler
from fleetserve.gateway.rest import RestApp

from .ports import PortTaken, bind, check_free
from .wiring import build_gateway, share_the_gil_finely


@dataclass
class BoundPorts:
    """The ports a running server listens on (useful when 0 asked for a free one)."""

    http: int
    grpc: int
    metrics: int


class LocalServer:
    """A gateway replica in this process."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        parts = build_gateway(settings, inline_below_s=settings.inline_compute_us / 1e6)
        self.metrics = parts.metrics
        self.plans = parts.plans
        self.manager = parts.manager
        self.predlog = parts.predlog
        self.dataplane = parts.dataplane
        self._stop = asyncio.Event()
        self.ports: BoundPorts | None = None
        self.started = asyncio.Event()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Bind, load, serve until asked to stop, then drain and stop."""
        s = self.settings
        http_sock = bind(s.host, s.http_port, "HTTP of fleetserve serve")
        if s.metrics_port:
            check_free(s.host, s.metrics_port, "metrics of fleetserve serve")
        grpc_server = aio.server(
            options=[
                ("grpc.max_receive_message_length", s.grpc_max_message_bytes),
                ("grpc.max_send_message_length", s.grpc_max_message_bytes),
                ("grpc.so_reuseport", 0),
            ]
        )
        grpc_server.add_generic_rpc_handlers((generic_handler(InferenceServicer(self.dataplane)),))
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, grpc_server)
        target = f"[{s.host}]:{s.grpc_port}" if ":" in s.host else f"{s.host}:{s.grpc_port}"
        try:
            grpc_port = grpc_server.add_insecure_port(target)
        except RuntimeError:
            grpc_port = 0
        if grpc_port == 0:
            http_sock.close()
            raise PortTaken(f"port {s.grpc_port} on {s.host} (gRPC of fleetserve serve) is taken")
        metrics_port = 0
        if s.metrics_port:
            httpd, _ = start_http_server(s.metrics_port, addr=s.host, registry=self.metrics.registry)
            metrics_port = httpd.server_port
        else:
            httpd = None
        await self.plans.start()  # plans first: the versions they route to must load too
        await self.predlog.start()
        await self.manager.start(s.model_control_mode, s.load_model)
        # What start-up created lives as long as the process: keep it out of the collector's
        # generations, so that a collection during serving walks only request garbage.
        gc.freeze()
        await grpc_server.start()
        for name in ("", SERVICE):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        config = uvicorn.Config(
            RestApp(self.dataplane, s.max_request_bytes, cors_origins=s.cors_origins),
            http="httptools",
            lifespan="off",
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_keep_alive=75,
            h11_max_incomplete_event_size=s.max_request_bytes,
        )
        rest_server = uvicorn.Server(config)
        rest_task = asyncio.create_task(rest_server.serve(sockets=[http_sock]))
        poll_task = (
            asyncio.create_task(self.manager.poll_forever(s.repository_poll_secs))
            if s.model_control_mode == "poll"
            else None
        )
        self.ports = BoundPorts(http_sock.getsockname()[1], grpc_port, metrics_port)
        self.started.set()
        self._announce()
        stop_task = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({rest_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for name in ("", SERVICE):
                await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
            if poll_task is not None:
                poll_task.cancel()
            rest_server.should_exit = True
            await grpc_server.stop(grace=5)
            await asyncio.gather(rest_task, return_exceptions=True)
            stop_task.cancel()
            await self.dataplane.shadows.drain()
            await self.manager.stop()
            await self.plans.stop()
            await self.predlog.stop()
            if httpd is not None:
                httpd.shutdown()
                httpd.server_close()

    def _announce(self) -> None:
        assert self.ports is not None
        host = self.settings.host
        models = ", ".join(f"{sv.name} v{sv.version}" for sv in self.manager.all_served()) or "none"
        print(
            f"fleetserve serving {models}\n"
            f"  page     http://{host}:{self.ports.http}/   (upload an image or draw a digit)\n"
            f"  REST     http://{host}:{self.ports.http}/v2   (infer: POST /v2/models/<model>/infer)\n"
            f"  gRPC     {host}:{self.ports.grpc}   (inference.GRPCInferenceService)\n"
            f"  metrics  http://{host}:{self.ports.metrics}/metrics",
            flush=True,
        )


def serve(settings: ServeSettings) -> None:
    """Run a replica until SIGINT / SIGTERM."""

    async def main() -> None:
        server = LocalServer(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.request_stop)
        await server.run()

    share_the_gil_finely()
    # uvloop: measured ~10% less latency per request than the default loop for REST and gRPC alike.
    uvloop.run(main())
