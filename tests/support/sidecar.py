"""A real `fleetserve <command>` sidecar process (rollout controller, predlog writer, drift
monitor), ready once a URL of it answers, stopped by its pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from .processes import terminate


class SidecarProcess:
    """`python -m fleetserve.cli *args`, logging to `log_path`; use as a context manager."""

    def __init__(
        self,
        args: list[str],
        ready_url: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        self.args, self.ready_url, self.log_path = args, ready_url, log_path
        self.env = {**os.environ, **(env or {})}
        if "FLEETSERVE_ADMIN_TOKEN" not in (env or {}):
            self.env.pop("FLEETSERVE_ADMIN_TOKEN", None)
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        """What the process wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> SidecarProcess:
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "fleetserve.cli", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                raise RuntimeError(f"{self.args[0]} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=1):
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"{self.args[0]} did not answer {self.ready_url}:\n{self.log()}")

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        terminate(self.proc, 15)
        if not self._log.closed:
            self._log.close()
