"""`fleetserve rollout serve`: the controller sidecar (plan store, Prometheus, HTTP API on 8010)."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import uvicorn
from prometheus_client import CollectorRegistry

from fleetserve.engines.ports import bind

from .api import RolloutApi
from .auto import AutoConfig
from .controller import RolloutController
from .guardrails import Thresholds
from .metrics_source import PrometheusSource
from .stores import plan_store

log = logging.getLogger(__name__)


async def run(
    repository: Path,
    prometheus_url: str,
    port: int,
    host: str = "127.0.0.1",
    redis_url: str | None = None,
    token: str | None = None,
    thresholds: Thresholds | None = None,
    auto_defaults: AutoConfig | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve the controller until `stop` is set (or uvicorn is told to exit)."""
    sock = bind(host, port, "HTTP API of fleetserve rollout serve")  # PortTaken names the port
    registry = CollectorRegistry()
    store = plan_store(redis_url, repository)
    source = PrometheusSource(prometheus_url)
    controller = RolloutController(store, repository, source, registry, thresholds, auto_defaults)
    api = RolloutApi(controller, registry, token)
    server = uvicorn.Server(
        uvicorn.Config(api, lifespan="off", log_level="warning", access_log=False, server_header=False)
    )
    stop = stop or asyncio.Event()
    try:
        await store.start()
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        stopping = asyncio.create_task(stop.wait())
        where = f"http://{host}:{sock.getsockname()[1]}"
        print(
            f"fleetserve rollout controller on {where}/v1/models (metrics {where}/metrics)\n"
            f"  plans: {'redis ' + redis_url if redis_url else f'files in {repository}'}"
            f" · guardrails from Prometheus {prometheus_url}"
            f" · token {'required' if token else 'not set'}",
            flush=True,
        )
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        stopping.cancel()
    finally:
        await controller.stop()
        await store.stop()
        await source.close()
        sock.close()


def serve(
    repository: Path,
    prometheus_url: str,
    port: int,
    host: str = "127.0.0.1",
    redis_url: str | None = None,
    token: str | None = None,
    thresholds: Thresholds | None = None,
    auto_defaults: AutoConfig | None = None,
) -> None:
    """Run the controller until SIGINT / SIGTERM (running automated rollouts stop where they are)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(repository, prometheus_url, port, host, redis_url, token, thresholds, auto_defaults, stop)

    asyncio.run(main())
