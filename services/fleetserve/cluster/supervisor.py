"""Starting the cluster stage by stage, waiting for each stage to be ready, restarting what
dies (with backoff), and stopping everything in reverse order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from itertools import groupby

from rich.console import Console

from fleetserve.engines.ports import check_free

from . import report
from .components import Cluster
from .process import ManagedProcess


class StartFailed(Exception):
    """A component exited or did not become ready while the cluster started."""


class Supervisor:
    """Runs a cluster's components until `stop` is set."""

    def __init__(
        self,
        cluster: Cluster,
        out: Console,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        tick_s: float = 0.2,
    ) -> None:
        self.cluster = cluster
        self.out = out
        self.stop = stop
        self.clock = clock
        self.tick_s = tick_s
        self.processes = [ManagedProcess(c, clock) for c in cluster.components]

    def say(self, text: str) -> None:
        self.out.print(f"{time.strftime('%H:%M:%S')} {text}", highlight=False, markup=False)

    def check_ports(self) -> None:
        """PortTaken (naming the port and the process that wanted it) for the first taken port."""
        host = self.cluster.ports.host
        for c in self.cluster.components:
            for listener in c.listeners:
                check_free(host, listener.port, f"{listener.what} of {c.name}")

    def start(self) -> bool:
        """Start stage by stage, each once the previous is ready; False if stopped meanwhile."""
        timeout = self.cluster.settings.ready_timeout_s
        for _, staged in groupby(self.processes, key=lambda m: m.component.stage):
            group = list(staged)
            for m in group:
                m.start()
            self._write_state("starting")
            waiting = set(m.name for m in group)
            deadline = self.clock() + timeout
            while waiting:
                for m in group:
                    if m.name not in waiting:
                        continue
                    code = m.exit_code()
                    if code is not None:
                        raise StartFailed(
                            f"{m.name} exited with status {code} while starting; "
                            f"its log ({m.component.log}) ends:\n{m.log_tail()}"
                        )
                    if m.component.ready.ready():
                        m.announced_ready = True
                        waiting.discard(m.name)
                        self.say(f"{m.name} ready (pid {m.pid})")
                if not waiting:
                    break
                if self.clock() > deadline:
                    late = sorted(waiting)
                    probes = "; ".join(
                        f"{m.name}: {m.component.ready.describe()}" for m in group if m.name in late
                    )
                    raise StartFailed(
                        f"not ready within {timeout:.0f} s: {probes} (logs in {self.cluster.layout.logs})"
                    )
                if self.stop.wait(self.tick_s):
                    return False
        self._write_state("running")
        return True

    def supervise(self) -> None:
        """Watch every process until `stop` is set; restart the ones that die."""
        while not self.stop.wait(self.tick_s):
            self.tick()

    def tick(self) -> None:
        """One round: note deaths, restart what is due, announce restarted processes once ready."""
        changed = False
        for m in self.processes:
            code = m.exit_code()
            if m.restart_at is None and code is not None:
                delay = m.schedule_restart()
                self.say(
                    f"{m.name} (pid {m.pid}) exited with status {code} after {m.uptime():.1f} s; "
                    f"restarting in {delay:.1f} s (log: {m.component.log})"
                )
                changed = True
            elif m.restart_due():
                m.reap_group()
                m.start()
                self.say(f"{m.name} restarted (pid {m.pid}, start {m.starts})")
                changed = True
            elif code is None and not m.announced_ready and m.component.ready.ready():
                m.announced_ready = True
                self.say(f"{m.name} ready again (pid {m.pid})")
        if changed:
            self._write_state("running")

    def stop_all(self) -> None:
        """Stop every process by pid, in reverse start order."""
        for m in reversed(self.processes):
            if m.pid is None:
                continue
            code = m.stop()
            self.say(f"stopped {m.name} (pid {m.pid}, status {code})")
        self._write_state("stopped")

    def _write_state(self, status: str) -> None:
        report.write_state(self.cluster, self.processes, status)
