"""A real redis-server on a free loopback port, optionally with its append-only file.

Where redis-server is missing or does not start, the tests that need it skip with the reason,
except under CI (CI=true), where they fail: CI must run them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.ports import free_ports


def unavailable(reason: str) -> None:
    """Skip, or under CI fail, a test that cannot have its Redis."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the Redis tests must run; install Debian's redis-server)")
    pytest.skip(reason)


class RedisServer:
    """A redis-server process in `data_dir` (appendonly as CONTRACT.md when asked), stopped by pid."""

    def __init__(self, binary: str, port: int, data_dir: Path, appendonly: bool = True) -> None:
        self.binary, self.port, self.data_dir, self.appendonly = binary, port, data_dir, appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start (again, on the same port and folder) and wait for PONG."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir)]
        args += ["--save", "", "--daemonize", "no"]
        args += (
            ["--appendonly", "yes", "--appendfsync", "everysec"]
            if self.appendonly
            else ["--appendonly", "no"]
        )
        with (self.data_dir / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if self._pong():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s")

    def stop(self) -> None:
        """SIGTERM (Redis writes its append-only file out), then wait."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@contextmanager
def redis_server(data_dir: Path, appendonly: bool = True) -> Iterator[RedisServer]:
    """A started RedisServer, stopped at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server not found (apt-get install -y redis-server)")
        raise AssertionError  # unreachable: skip / fail raise
    server = RedisServer(binary, free_ports(1)[0], data_dir, appendonly)
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        unavailable(f"redis-server did not start: {exc}")
    try:
        yield server
    finally:
        server.stop()
