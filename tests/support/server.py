"""A real `fleetserve serve` process on free loopback ports, stopped by its pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from .ports import free_ports
from .processes import terminate


class ServerProcess:
    """Start `fleetserve serve` on free ports; use as a context manager."""

    def __init__(
        self,
        repository: Path,
        *args: str,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        self.repository = repository
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.args = list(args)
        self.env = {**os.environ, "FLEETSERVE_INTRA_OP_THREADS": "1", **(env or {})}
        self.env.pop("FLEETSERVE_ADMIN_TOKEN", None) if "FLEETSERVE_ADMIN_TOKEN" not in (env or {}) else None
        self.log_path = log_path or repository.parent / f"server-{self.http_port}.log"
        self.env.setdefault("FLEETSERVE_DATA_DIR", str(repository.parent / f"data-{self.http_port}"))
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> ServerProcess:
        cmd = [
            sys.executable,
            "-m",
            "fleetserve.cli",
            "serve",
            "--model-repository",
            str(self.repository),
            "--host",
            "127.0.0.1",
            "--http-port",
            str(self.http_port),
            "--grpc-port",
            str(self.grpc_port),
            "--metrics-port",
            str(self.metrics_port),
            *self.args,
        ]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.base}/v2/health/live", timeout=1) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not live within {self.ready_timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM by pid, then SIGKILL after 10 s; returns the exit code."""
        if self.proc is None:
            return None
        terminate(self.proc)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
