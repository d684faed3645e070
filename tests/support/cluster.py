"""A real `fleetserve up` (nginx, replicas, Redis, Prometheus, sidecars) on free loopback ports,
stopped by its pid; and the programs it needs (missing: skipped, or under CI failed)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from fleetserve.cluster import layout, programs
from fleetserve.cluster.settings import UpSettings
from fleetserve.engines.ports import is_free

# Every port of a cluster is a CONTRACT.md default plus the offset; offsets in this range keep
# all of them below Linux's ephemeral range (32768-), where the other tests' free ports come from.
_OFFSETS = range(-5000, 12000)


def require(*needed: programs.Program) -> None:
    """Skip (under CI=true: fail) unless every one of `needed` is installed."""
    missing = [p.package for p in needed if programs.find(p, None) is None]
    if missing:
        reason = f"not installed: {' '.join(missing)} (make setup installs the Debian packages)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def cluster_ports(offset: int, replicas: int) -> list[int]:
    """Every port a cluster of `replicas` replicas listens on at `offset`."""
    return layout.cluster_ports(UpSettings(port_offset=offset), replicas)


def free_offset(replicas: int) -> int:
    """An offset at which every port of the cluster is free right now."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        offset = rng.choice(_OFFSETS)
        if all(is_free("127.0.0.1", p) for p in cluster_ports(offset, replicas)):
            return offset
    raise RuntimeError("no port offset with all the cluster's ports free")


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class ClusterProcess:
    """`fleetserve up` in `data_dir`; use as a context manager. Ready once cluster.json says running."""

    def __init__(
        self,
        repository: Path,
        data_dir: Path,
        *args: str,
        replicas: int = 2,
        env: dict[str, str] | None = None,
        ready_timeout: float = 120.0,
    ) -> None:
        self.repository = repository
        self.data_dir = data_dir
        self.replicas = replicas
        self.args = list(args)
        self.env = {
            **os.environ,
            "FLEETSERVE_INTRA_OP_THREADS": "1",
            "FLEETSERVE_SCRAPE_INTERVAL_S": "1",
            **(env or {}),
        }
        self.ready_timeout = ready_timeout
        self.offset = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.output_path = data_dir.parent / f"{data_dir.name}-up.out"

    def start(self) -> ClusterProcess:
        self.offset = free_offset(self.replicas)
        cmd = [
            sys.executable,
            "-m",
            "fleetserve.cli",
            "up",
            "--model-repository",
            str(self.repository),
            "--data-dir",
            str(self.data_dir),
            "--replicas",
            str(self.replicas),
            "--port-offset",
            str(self.offset),
            *self.args,
        ]
        self._out = open(self.output_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fleetserve up exited with {self.proc.returncode}:\n{self.output()}")
            state = self.state()
            if state.get("status") == "running":
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"fleetserve up not running within {self.ready_timeout} s:\n{self.output()}")

    def output(self) -> str:
        """What `fleetserve up` printed."""
        return self.output_path.read_text(errors="replace") if self.output_path.exists() else ""

    def state(self) -> dict[str, Any]:
        """cluster.json ({} before it is first written)."""
        try:
            return dict(json.loads((self.data_dir / "cluster.json").read_text()))
        except (OSError, ValueError):
            return {}

    def process(self, name: str) -> dict[str, Any]:
        """One process's entry of cluster.json."""
        return next(p for p in self.state()["processes"] if p["name"] == name)

    def port(self, default: int) -> int:
        """A CONTRACT.md default port as this cluster has it."""
        return default + self.offset

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.port(8000)}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.port(8001)}"

    @property
    def base(self) -> str:
        return f"http://{self.http_url}"

    def get(self, path: str, port: int | None = None, timeout: float = 5.0) -> bytes:
        """GET path on the front (or on `port`) and return the body."""
        url = f"http://127.0.0.1:{port or self.port(8000)}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return bytes(r.read())

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM by pid, then SIGKILL after `timeout`; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()
        return self.proc.returncode

    def __enter__(self) -> ClusterProcess:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def http_status(url: str, timeout: float = 2.0) -> int:
    """The HTTP status of GET url (0 when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0
