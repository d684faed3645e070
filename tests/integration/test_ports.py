"""A taken port is an error that names the port and what wanted it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import models
from tests.support.ports import free_ports


@pytest.mark.parametrize(
    ("flag", "what"), [("--http-port", "HTTP"), ("--grpc-port", "gRPC"), ("--metrics-port", "metrics")]
)
def test_taken_port_is_named(tmp_path: Path, flag: str, what: str) -> None:
    models.double_model(tmp_path / "repo")
    http, grpc_port, metrics = free_ports(3)
    ports = {"--http-port": http, "--grpc-port": grpc_port, "--metrics-port": metrics}
    taken = socket.socket()
    taken.bind(("127.0.0.1", ports[flag]))
    taken.listen(1)
    try:
        args = [a for k, v in ports.items() for a in (k, str(v))]
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "fleetserve.cli",
                "serve",
                "--model-repository",
                str(tmp_path / "repo"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        taken.close()
    assert proc.returncode == 1, proc.stderr
    assert f"port {ports[flag]}" in proc.stderr and what in proc.stderr and "taken" in proc.stderr
