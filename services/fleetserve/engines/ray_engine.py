"""`fleetserve serve --engine ray`: the gateway as Ray Serve deployments.

Starts a single-node Ray cluster (or joins FLEETSERVE_RAY_ADDRESS), starts Serve's proxies on
the gateway's ports (HTTP, and gRPC with fleetserve's servicer functions), deploys the ingress
application, and serves until SIGINT / SIGTERM; then deletes the application (each version's
deployment with it) and stops the cluster it started.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

from fleetserve.common.settings import ServeSettings

from .ports import check_free
from .ray_app import INGRESS_APP, application
from .ray_grpc import SERVICER_FUNCTIONS
from .ray_settings import RaySettings

log = logging.getLogger(__name__)
STOP_GRACE_S = 5.0  # with Ray's own stop, within the 10 s a supervisor gives before SIGKILL


def serve(settings: ServeSettings) -> None:
    """Run the Ray engine until SIGINT / SIGTERM; PortTaken when a port is in use."""
    ray_settings = RaySettings()
    check_free(settings.host, settings.http_port, "HTTP of fleetserve serve --engine ray")
    check_free(settings.host, settings.grpc_port, "gRPC of fleetserve serve --engine ray")
    if settings.metrics_port:
        check_free(settings.host, settings.metrics_port, "metrics of fleetserve serve --engine ray")
    # Ray would report usage to its maintainers over the network: not from a model server.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve as ray_serve

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    ray.init(
        address=ray_settings.address,
        num_cpus=ray_settings.num_cpus if ray_settings.address is None else None,
        include_dashboard=False,
        namespace="fleetserve",
        log_to_driver=True,
    )
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, request_stop)
        ray_serve.start(
            http_options={"host": settings.host, "port": settings.http_port},
            grpc_options={"port": settings.grpc_port, "grpc_servicer_functions": SERVICER_FUNCTIONS},
        )
        ray_serve.run(application(settings, ray_settings), name=INGRESS_APP, route_prefix="/")
        _announce(settings)
        while not stop.wait(1.0):
            pass
    finally:
        _stop(ray, ray_serve, joined=ray_settings.address is not None)


def _stop(ray: Any, ray_serve: Any, joined: bool) -> None:
    """Delete the application (the ingress drains, flushes its prediction log and deletes its
    versions' deployments) within STOP_GRACE_S, then leave the cluster: one started here stops
    with its processes. A cluster already gone (a terminal's Ctrl-C reaches Ray's own processes
    too) costs no wait."""

    def graceful() -> None:
        try:
            ray_serve.delete(INGRESS_APP)
            if joined:
                ray_serve.shutdown()
        except Exception as exc:  # the cluster went first
            log.warning("Serve did not stop cleanly: %s", exc)

    worker = threading.Thread(target=graceful, name="ray-serve-stop", daemon=True)
    worker.start()
    worker.join(STOP_GRACE_S)
    started = time.monotonic()
    ray.shutdown()
    log.info("Ray stopped in %.1f s", time.monotonic() - started)


def _announce(settings: ServeSettings) -> None:
    host = settings.host
    print(
        "fleetserve serving on Ray Serve\n"
        f"  REST     http://{host}:{settings.http_port}/v2   (Ray's HTTP proxy)\n"
        f"  gRPC     {host}:{settings.grpc_port}   (Ray's gRPC proxy: inference.GRPCInferenceService)\n"
        f"  metrics  http://{host}:{settings.metrics_port}/metrics   (the ingress replica)",
        flush=True,
    )
