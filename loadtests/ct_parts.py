"""The processes of the continuous-training loop (loadtests/ct_loop.py), each on a free loopback
port in one work folder: Redis, the gateway, the predlog writer, the drift monitor, the rollout
controller and Prometheus. Each is started with its own log file, waited for until its probe
answers, and stopped by its pid (SIGTERM, then SIGKILL), in reverse order of start.

Command lines come from the package where it has them (`fleetserve.cluster.redis`,
`fleetserve.cluster.prometheus`); the fleetserve parts run as `python -m fleetserve.cli`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fleetserve.cluster import programs
from fleetserve.cluster import prometheus as prom
from fleetserve.cluster import redis as redis_cmd
from fleetserve.cluster.probes import HttpProbe, Probe, RedisProbe

HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


class MissingProgram(RuntimeError):
    """An outside program the loop needs (redis-server, prometheus) is not installed."""


class PartFailed(RuntimeError):
    """A part exited or did not become ready; the message holds the end of its log."""


def free_ports(n: int) -> list[int]:
    """n distinct ports free on the loopback interface right now."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def require(program: programs.Program) -> str:
    """The path of an outside program, or MissingProgram naming its Debian package."""
    found = programs.find(program, None)
    if found is None:
        raise MissingProgram(f"{program.name} is not installed ({program.install_command()}): {program.role}")
    return found


def _child_setup() -> None:
    # SIGTERM to the child when the loop's process dies without stopping it (Linux), so that
    # nothing outlives the loop even when it is killed.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any FLEETSERVE_* setting, plus `extra`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLEETSERVE_")}
    return {**base, **(extra or {})}


@dataclass
class Part:
    """One process of the loop."""

    name: str
    cmd: list[str]
    log_path: Path
    probe: Probe
    env: dict[str, str] = field(default_factory=clean_env)
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id while started."""
        return self.proc.pid if self.proc is not None else None

    def start(self, ready_timeout_s: float = 90.0) -> None:
        """Start the process and wait until its probe answers (PartFailed otherwise)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - open while the process runs
        self.proc = subprocess.Popen(
            self.cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            preexec_fn=_child_setup,
        )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PartFailed(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.probe.ready():
                return
            time.sleep(0.1)
        raise PartFailed(
            f"{self.name} not ready ({self.probe.describe()}) in {ready_timeout_s:g} s:\n{self.log_tail()}"
        )

    def alive(self) -> bool:
        """Whether the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM by pid, SIGKILL after `grace_s`; the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._log is not None and not self._log.closed:
            self._log.close()
        return proc.returncode

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the process's log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def fleetserve(*args: str) -> list[str]:
    """The command line of a fleetserve subcommand, with this interpreter."""
    return [sys.executable, "-m", "fleetserve.cli", *args]


@dataclass
class Ports:
    """The ports of the loop's parts."""

    redis: int
    http: int
    grpc: int
    metrics: int
    predlog: int
    drift: int
    controller: int
    prometheus: int

    @classmethod
    def free(cls) -> Ports:
        """Eight free ports."""
        return cls(*free_ports(8))


def url(port: int, path: str = "") -> str:
    """http://127.0.0.1:port/path."""
    return f"http://{HOST}:{port}{path}"


def redis_part(work: Path, ports: Ports) -> Part:
    """redis-server with the append-only file of CONTRACT.md."""
    folder = work / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    cmd = redis_cmd.command(require(programs.REDIS), HOST, ports.redis, folder)
    return Part("redis", cmd, work / "logs" / "redis.log", RedisProbe(HOST, ports.redis))


def prometheus_part(work: Path, ports: Ports, interval_s: float = 1.0) -> Part:
    """Prometheus scraping the gateway, the writer, the drift monitor and the controller."""
    binary = require(programs.PROMETHEUS)
    jobs = [
        prom.Job("gateway", [prom.Target(f"{HOST}:{ports.metrics}", "gateway")]),
        prom.Job("predlog", [prom.Target(f"{HOST}:{ports.predlog}", "predlog")]),
        prom.Job("drift", [prom.Target(f"{HOST}:{ports.drift}", "drift")]),
        prom.Job("rollout", [prom.Target(f"{HOST}:{ports.controller}", "rollout")]),
    ]
    folder = work / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(prom.render(jobs, interval_s))
    cmd = prom.command(binary, config, folder / "data", f"{HOST}:{ports.prometheus}")
    return Part(
        "prometheus", cmd, work / "logs" / "prometheus.log", HttpProbe(url(ports.prometheus, "/-/ready"))
    )


def gateway_part(work: Path, ports: Ports, repository: Path, redis_url: str, poll_s: float) -> Part:
    """`fleetserve serve` picking up new versions (poll), logging every prediction with its
    input tensor to Redis and routing by the controller's plans in Redis."""
    cmd = fleetserve(
        "serve", "--model-repository", str(repository), "--host", HOST,
        "--http-port", str(ports.http), "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics),
        "--model-control-mode", "poll", "--repository-poll-secs", f"{poll_s:g}",
    )  # fmt: skip
    env = clean_env(
        {
            "FLEETSERVE_REDIS_URL": redis_url,
            "FLEETSERVE_PREDLOG_TENSOR_SAMPLE_RATE": "1",
            "FLEETSERVE_DATA_DIR": str(work / "gateway-data"),
            "FLEETSERVE_INTRA_OP_THREADS": "1",
        }
    )
    probe = HttpProbe(url(ports.http, "/v2/models/digits/ready"))
    return Part("gateway", cmd, work / "logs" / "gateway.log", probe, env)


def predlog_part(work: Path, ports: Ports, redis_url: str, out: Path, flush_s: float) -> Part:
    """`fleetserve predlog`: both streams to Parquet under `out`, a batch at the latest every `flush_s`."""
    cmd = fleetserve(
        "predlog",
        "--out",
        str(out),
        "--redis-url",
        redis_url,
        "--host",
        HOST,
        "--metrics-port",
        str(ports.predlog),
    )
    env = clean_env({"FLEETSERVE_FLUSH_S": f"{flush_s:g}"})
    return Part("predlog", cmd, work / "logs" / "predlog.log", HttpProbe(url(ports.predlog, "/metrics")), env)


def drift_part(
    work: Path,
    ports: Ports,
    repository: Path,
    redis_url: str,
    retrain_argv: list[str],
    retrain_after_s: float,
    refresh_s: float,
) -> Part:
    """`fleetserve drift` (drift and quality monitor) reading the stream from its start, with
    the retrain command (a JSON argv: no shell)."""
    cmd = fleetserve(
        "drift", "--model-repository", str(repository), "--redis-url", redis_url, "--host", HOST,
        "--metrics-port", str(ports.drift), "--stream-start", "0",
        "--drift-retrain-after-s", f"{retrain_after_s:g}",
    )  # fmt: skip
    env = clean_env(
        {
            "FLEETSERVE_DRIFT_RETRAIN_COMMAND": json.dumps(retrain_argv),
            "FLEETSERVE_REFRESH_S": f"{refresh_s:g}",
        }
    )
    return Part("drift", cmd, work / "logs" / "drift.log", HttpProbe(url(ports.drift, "/metrics")), env)


def controller_part(
    work: Path,
    ports: Ports,
    repository: Path,
    redis_url: str,
    auto: dict[str, object],
    guardrails: dict[str, object],
) -> Part:
    """`fleetserve rollout serve` with plans in Redis, guardrails from Prometheus, and the
    automated rollout's defaults and guardrail thresholds of the loop (`FLEETSERVE_AUTO__*`,
    `FLEETSERVE_GUARDRAILS__*`)."""
    cmd = fleetserve(
        "rollout", "serve", "--model-repository", str(repository), "--redis-url", redis_url,
        "--prometheus-url", url(ports.prometheus), "--host", HOST, "--port", str(ports.controller),
    )  # fmt: skip
    settings = {f"FLEETSERVE_AUTO__{k.upper()}": json.dumps(v) for k, v in auto.items()}
    settings |= {f"FLEETSERVE_GUARDRAILS__{k.upper()}": json.dumps(v) for k, v in guardrails.items()}
    probe = HttpProbe(url(ports.controller, "/v1/health"))
    return Part("controller", cmd, work / "logs" / "controller.log", probe, clean_env(settings))
