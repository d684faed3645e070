"""`fleetserve drift`: the monitor sidecar (quality and drift), metrics on 8012.

It reads the prediction and feedback streams from Redis, or with `--records-dir` the
gateway's local file sink, and serves its own registry on `--metrics-port`; it never touches
the serving path. Drift is measured against each version's reference profile in the model
repository.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, make_asgi_app
from pydantic import ValidationError

from fleetserve.engines.ports import PortTaken, bind
from fleetserve.rollout.redis_store import redacted

from .drift_monitor import DriftAnalyser
from .file_source import FileRecords
from .monitor import Analyser, Monitor
from .quality_monitor import QualityAnalyser
from .references import ReferenceStore
from .retrain import Retrainer
from .settings import DriftSettings
from .streams import RecordSource, RedisStreams
from .windows import QualityWindows

NO_SOURCE = (
    "no records to read: pass --redis-url (or set FLEETSERVE_REDIS_URL), or --records-dir "
    "(FLEETSERVE_RECORDS_DIR) for the gateway's local file sink"
)

log = logging.getLogger(__name__)


def analysers(settings: DriftSettings) -> list[Analyser]:
    """The analysers the monitor runs: quality (labels) and drift (reference profiles)."""
    q = settings.quality
    windows = QualityWindows(
        max_items=q.window_items,
        max_age_s=q.window_s,
        max_pending=q.max_pending,
        label_grace_s=q.label_grace_s,
        bins=q.ece_bins,
    )
    drift = DriftAnalyser(
        ReferenceStore(settings.model_repository, settings.drift_reference_retry_s),
        window=settings.drift_window(),
        thresholds=settings.drift_thresholds(),
        policy=settings.drift_alerts(),
        retrainer=Retrainer(
            settings.retrain_argv(),
            settings.drift_retrain_cooldown_s,
            retry_s=settings.drift_retrain_retry_s,
        ),
    )
    return [QualityAnalyser(windows), drift]


def default_source(settings: DriftSettings) -> RecordSource:
    """The file sink's folder when --records-dir is given, else the Redis streams."""
    if settings.records_dir is not None:
        return FileRecords(settings.records_dir, settings.stream_start)
    if settings.redis_url:
        return RedisStreams(settings.redis_url, settings.stream_start)
    raise ValueError(NO_SOURCE)


async def run(
    settings: DriftSettings, source: RecordSource | None = None, stop: asyncio.Event | None = None
) -> None:
    """Monitor `source` (default: the Redis streams) and serve metrics until `stop` is set."""
    sock = bind(settings.host, settings.metrics_port, "metrics of fleetserve drift")  # PortTaken
    if source is None:
        try:
            source = default_source(settings)
        except ValueError:
            sock.close()
            raise
    registry = CollectorRegistry()
    monitor = Monitor(source, analysers(settings), settings.refresh_s)
    registry.register(monitor)
    server = uvicorn.Server(
        uvicorn.Config(
            make_asgi_app(registry),
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
        )
    )
    stop = stop or asyncio.Event()
    try:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        monitoring = asyncio.create_task(monitor.run(stop))
        where = f"http://{settings.host}:{sock.getsockname()[1]}/metrics"
        origin = type(source).__name__
        if isinstance(source, FileRecords):
            origin = f"files in {source.directory}"
        elif isinstance(source, RedisStreams) and settings.redis_url:
            origin = redacted(settings.redis_url)
        print(
            f"fleetserve drift monitor: metrics on {where}\n"
            f"  records: {origin} (from {settings.stream_start!r})",
            flush=True,
        )
        done, _ = await asyncio.wait({serving, monitoring}, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        server.should_exit = True
        await asyncio.gather(serving, monitoring, return_exceptions=True)
        for task in done:
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                raise failure
    finally:
        await source.close()
        sock.close()


def main(options: dict[str, Any]) -> int:
    """Run `fleetserve drift` with the given flags until SIGINT / SIGTERM; the exit status."""
    try:
        settings = DriftSettings(**options)
    except ValidationError as exc:
        print(f"fleetserve drift: {exc}", file=sys.stderr)
        return 2
    if not settings.model_repository.is_dir():
        print(f"fleetserve: model repository {settings.model_repository} is not a folder", file=sys.stderr)
        return 2
    if not settings.redis_url and settings.records_dir is None:
        print(f"fleetserve drift: {NO_SOURCE}", file=sys.stderr)
        return 2
    if settings.records_dir is not None and settings.stream_start not in ("$", "0"):
        print("fleetserve drift: with --records-dir, --stream-start is $ or 0", file=sys.stderr)
        return 2

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop=stop)

    try:
        asyncio.run(serve())
    except PortTaken as exc:
        print(f"fleetserve: {exc}", file=sys.stderr)
        return 1
    return 0
