"""`fleetserve up`: plan the cluster, check its ports, write its configs, start it, print where
everything runs, supervise it until SIGINT / SIGTERM, then stop it cleanly."""

from __future__ import annotations

import signal
import threading
from types import FrameType

from fleetserve.engines.ports import PortTaken

from . import components, report
from .nginx import NginxConfigError
from .settings import UpSettings
from .supervisor import StartFailed, Supervisor


def up(settings: UpSettings, stop: threading.Event | None = None) -> int:
    """Run the cluster until SIGINT / SIGTERM (or `stop`); the exit status of `fleetserve up`."""
    out = report.console()
    if not settings.model_repository.is_dir():
        out.print(
            f"fleetserve up: model repository {settings.model_repository} is not a folder", markup=False
        )
        return 2
    stop = stop or threading.Event()
    cluster = components.build(settings)
    for line in report.left_out_lines(cluster.left_out):
        out.print(line, style="yellow", markup=False, highlight=False)
    supervisor = Supervisor(cluster, out, stop)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            supervisor.check_ports()
            cluster.prepare()
        except (PortTaken, NginxConfigError) as exc:
            out.print(f"fleetserve up: {exc}", style="red", markup=False, highlight=False)
            return 1
        try:
            started = supervisor.start()
        except StartFailed as exc:
            out.print(f"fleetserve up: {exc}", style="red", markup=False, highlight=False)
            return 1
        if started:
            out.print(report.table(cluster, supervisor.processes))
            for line in report.front_lines(cluster):
                out.print(line, markup=False, highlight=False)
            out.print("fleetserve up: ready (Ctrl-C stops everything)", style="green", markup=False)
            supervisor.supervise()
        supervisor.say("stopping")
        return 0
    finally:
        supervisor.stop_all()
        for s, handler in previous.items():
            signal.signal(s, handler)
