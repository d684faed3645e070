"""One supervised child process: started with its log file, stopped by its pid, restarted with
backoff when it dies."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import IO

from .components import Component

_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    # Its own process group: a Ctrl-C in the terminal reaches `fleetserve up` only, which then
    # stops the children in reverse order. And SIGTERM to the child if `fleetserve up` dies
    # without stopping it (Linux), so nothing outlives the launcher.
    os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Backoff:
    """Delays between restarts: `first`, doubling up to `most`; back to `first` once a process
    has stayed up `stable_s`."""

    def __init__(self, first: float = 0.5, most: float = 30.0, stable_s: float = 30.0) -> None:
        self.first, self.most, self.stable_s = first, most, stable_s
        self.failures = 0

    def next_delay(self, uptime_s: float) -> float:
        """The wait before the next start, after a run that lasted `uptime_s`."""
        if uptime_s >= self.stable_s:
            self.failures = 0
        delay = min(self.most, self.first * (2**self.failures))
        self.failures += 1
        return delay


class ManagedProcess:
    """A component's process; `clock` is injectable for tests."""

    def __init__(self, component: Component, clock: Callable[[], float] = time.monotonic) -> None:
        self.component = component
        self.clock = clock
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.starts = 0
        self.backoff = Backoff()
        self.restart_at: float | None = None  # set while dead and waiting for its restart
        self.announced_ready = False
        self._log: IO[bytes] | None = None

    @property
    def name(self) -> str:
        return self.component.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """Start (again), appending to its log file."""
        c = self.component
        c.log.parent.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self._log = open(c.log, "ab")  # noqa: SIM115 - open while the process runs
        self._log.write(f"\n==== fleetserve up: starting {c.name}: {' '.join(c.cmd)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            c.cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=c.env or None,
            preexec_fn=_child_setup,  # no other thread runs while it spawns
        )
        self.started_at = self.clock()
        self.starts += 1
        self.restart_at = None
        self.announced_ready = False

    def exit_code(self) -> int | None:
        """Its exit status once it has exited, else None (also None before the first start)."""
        return self.proc.poll() if self.proc is not None else None

    def uptime(self) -> float:
        return self.clock() - self.started_at

    def schedule_restart(self) -> float:
        """Mark it for a restart after the backoff; returns the delay."""
        delay = self.backoff.next_delay(self.uptime())
        self.restart_at = self.clock() + delay
        return delay

    def reap_group(self) -> None:
        """SIGKILL what is left of a dead process's group (nginx workers of a killed master)."""
        if self.proc is not None and self.proc.poll() is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def restart_due(self) -> bool:
        return self.restart_at is not None and self.clock() >= self.restart_at

    def stop(self) -> int | None:
        """SIGTERM by pid, wait its stop timeout, then SIGKILL its process group; returns the exit code."""
        proc = self.proc
        self.restart_at = None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.component.stop_timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.reap_group()
        self._close_log()
        return proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of its log."""
        try:
            text = self.component.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
