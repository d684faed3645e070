"""What a local cluster runs: one `Component` per process, in start order, and what was left
out (with the command that would add it). Building the plan does no I/O beyond looking for
programs; `prepare` writes the configs."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import nginx, programs, prometheus, redis
from .layout import DataLayout, PortPlan
from .probes import AllProbes, HttpProbe, Probe, RedisProbe
from .settings import UpSettings

# Variables of this environment that a child must not inherit: `fleetserve up` decides them.
TENSOR_SAMPLE_RATE = 0.1  # replicas' share of prediction records with their input tensors
RETRAIN_MIN_ROWS, RETRAIN_WAIT_S = 1000, 1800  # labelled rows the retraining waits for, and how long
_DECIDED = ("FLEETSERVE_REDIS_URL", "FLEETSERVE_DATA_DIR", "FLEETSERVE_METRICS_PORT", "FLEETSERVE_PORT")


@dataclass(frozen=True)
class Listener:
    """A port a component listens on, and what for (named when the port is taken)."""

    port: int
    what: str


@dataclass
class Component:
    """One supervised process."""

    name: str
    role: str
    cmd: list[str]
    log: Path
    ready: Probe
    stage: int  # a stage starts together; the next one starts once it is ready
    listeners: tuple[Listener, ...] = ()
    urls: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    stop_timeout_s: float = 15.0


@dataclass(frozen=True)
class LeftOut:
    """A part that does not run, why, and the command that would add it (if any)."""

    part: str
    consequence: str
    remedy: str | None = None


@dataclass
class Cluster:
    """The plan of a local cluster: ports, folders, components in start order, what is left out."""

    settings: UpSettings
    ports: PortPlan
    layout: DataLayout
    components: list[Component]
    left_out: list[LeftOut]
    behind_nginx: bool
    redis_url: str | None
    prepare_steps: list[Callable[[], None]] = field(default_factory=list)

    @property
    def replicas(self) -> list[Component]:
        return [c for c in self.components if c.name.startswith("replica-")]

    def prepare(self) -> None:
        """Create the folders and write (and check) the configs."""
        for folder in (self.layout.logs, self.layout.root / "replicas"):
            folder.mkdir(parents=True, exist_ok=True)
        for step in self.prepare_steps:
            step()


def _fleetserve(*args: str) -> list[str]:
    return [sys.executable, "-m", "fleetserve.cli", *args]


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DECIDED}
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class _Builder:
    def __init__(self, s: UpSettings) -> None:
        self.s = s
        self.layout = DataLayout(s.data_dir.resolve())
        self.left_out: list[LeftOut] = []
        self.components: list[Component] = []
        self.prepare_steps: list[Callable[[], None]] = []
        self.nginx_bin = None if s.no_nginx else programs.find(programs.NGINX, s.nginx_bin)
        self.redis_bin = programs.find(programs.REDIS, s.redis_bin)
        self.prometheus_bin = programs.find(programs.PROMETHEUS, s.prometheus_bin)
        behind = self.nginx_bin is not None
        self.ports = PortPlan.of(s, s.replica_count() if behind else 1, behind)
        self.redis_url = redis.url(s.host, self.ports.redis) if self.redis_bin else None

    def build(self) -> Cluster:
        self._note_missing()
        self._redis()
        self._prometheus()
        self._replicas()
        self._nginx()
        self._sidecars()
        return Cluster(
            self.s,
            self.ports,
            self.layout,
            self.components,
            self.left_out,
            self.nginx_bin is not None,
            self.redis_url,
            self.prepare_steps,
        )

    def _note_missing(self) -> None:
        p = self.ports
        if self.nginx_bin is None:
            asked = self.s.replicas or 0
            more = f" (--replicas {asked} needs nginx)" if asked > 1 else ""
            why = "--no-nginx" if self.s.no_nginx else "not found"
            self.left_out.append(
                LeftOut(
                    "nginx",
                    f"{why}: one replica serves directly on HTTP {p.http} / gRPC {p.grpc}, "
                    f"metrics {p.replicas[0].metrics}{more}",
                    None if self.s.no_nginx else programs.NGINX.install_command(),
                )
            )
        if self.redis_bin is None:
            self.left_out.append(
                LeftOut(
                    "redis-server",
                    "not found: predictions go to the local file sink under "
                    f"{self.layout.root / 'replicas'}/<i>, rollout plans to files in the repository; "
                    "no predlog writer, no drift monitor (they read the Redis stream)",
                    programs.REDIS.install_command(),
                )
            )
        if self.prometheus_bin is None:
            self.left_out.append(
                LeftOut(
                    "prometheus",
                    "not found: nothing scrapes the metrics (each process still serves /metrics) and "
                    "the rollout controller's guardrails have no data",
                    programs.PROMETHEUS.install_command(),
                )
            )

    def _redis(self) -> None:
        if self.redis_bin is None:
            return
        p, folder = self.ports, self.layout.redis
        self.prepare_steps.append(lambda: folder.mkdir(parents=True, exist_ok=True))
        self.components.append(
            Component(
                "redis",
                "prediction stream, rollout plans",
                redis.command(self.redis_bin, p.host, p.redis, folder),
                self.layout.log("redis"),
                RedisProbe(p.host, p.redis),
                stage=0,
                listeners=(Listener(p.redis, "Redis"),),
                urls=(self.redis_url or "",),
            )
        )

    def _scrape_jobs(self) -> list[prometheus.Job]:
        p = self.ports
        replicas = prometheus.Job(
            "fleetserve",
            [prometheus.Target(p.address(r.metrics), f"replica-{i}") for i, r in enumerate(p.replicas)],
        )
        jobs = [replicas, prometheus.Job("rollout", [prometheus.Target(p.address(p.rollout), "rollout")])]
        if self.redis_bin is not None:
            jobs.append(prometheus.Job("predlog", [prometheus.Target(p.address(p.predlog), "predlog")]))
            jobs.append(prometheus.Job("drift", [prometheus.Target(p.address(p.drift), "drift")]))
        jobs.append(prometheus.Job("prometheus", [prometheus.Target(p.address(p.prometheus), "prometheus")]))
        return jobs

    def _prometheus(self) -> None:
        if self.prometheus_bin is None:
            return
        p, folder = self.ports, self.layout.prometheus
        config = folder / "prometheus.yml"
        text = prometheus.render(self._scrape_jobs(), self.s.scrape_interval_s)

        def write() -> None:
            folder.mkdir(parents=True, exist_ok=True)
            config.write_text(text)

        self.prepare_steps.append(write)
        self.components.append(
            Component(
                "prometheus",
                "scrapes every process",
                prometheus.command(self.prometheus_bin, config, folder / "data", p.address(p.prometheus)),
                self.layout.log("prometheus"),
                HttpProbe(p.url(p.prometheus, "/-/ready")),
                stage=0,
                listeners=(Listener(p.prometheus, "HTTP"),),
                urls=(p.url(p.prometheus),),
            )
        )

    def _replicas(self) -> None:
        p, s = self.ports, self.s
        for i, r in enumerate(p.replicas):
            env = _child_env()
            env["FLEETSERVE_DATA_DIR"] = str(self.layout.replica(i))
            if self.redis_url:
                env["FLEETSERVE_REDIS_URL"] = self.redis_url
                # a share of the records carry their input tensors, so that labelled production
                # samples can be retrained on (the gateway's own default logs none)
                env.setdefault("FLEETSERVE_PREDLOG_TENSOR_SAMPLE_RATE", str(TENSOR_SAMPLE_RATE))
            cmd = _fleetserve(
                "serve",
                "--model-repository",
                str(s.model_repository.resolve()),
                "--host",
                p.host,
                "--http-port",
                str(r.http),
                "--grpc-port",
                str(r.grpc),
                "--metrics-port",
                str(r.metrics),
            )
            self.components.append(
                Component(
                    f"replica-{i}",
                    "gateway replica",
                    cmd,
                    self.layout.log(f"replica-{i}"),
                    HttpProbe(p.url(r.http, "/v2/health/ready")),
                    stage=1,
                    listeners=(
                        Listener(r.http, "HTTP"),
                        Listener(r.grpc, "gRPC"),
                        Listener(r.metrics, "metrics"),
                    ),
                    urls=(p.url(r.http, "/v2"), f"grpc {p.address(r.grpc)}", p.url(r.metrics, "/metrics")),
                    env=env,
                )
            )

    def _nginx(self) -> None:
        if self.nginx_bin is None:
            return
        binary, p = self.nginx_bin, self.ports
        files = nginx.NginxFiles(self.layout.nginx, self.layout.logs)
        workers = self.s.nginx_workers

        def write() -> None:
            nginx.write(p, files, binary, programs.nginx_version(binary), workers)

        self.prepare_steps.append(write)
        self.components.append(
            Component(
                "nginx",
                f"load balancer over {len(p.replicas)} replicas",
                nginx.command(binary, files),
                self.layout.log("nginx"),
                AllProbes(
                    (HttpProbe(p.url(p.http, "/nginx/health")), HttpProbe(p.url(p.http, "/v2/health/ready")))
                ),
                stage=2,
                listeners=(Listener(p.http, "HTTP"), Listener(p.grpc, "gRPC")),
                urls=(p.url(p.http, "/v2"), f"grpc {p.address(p.grpc)}"),
            )
        )

    def _retrain_command(self) -> list[str]:
        """`fleetserve train` as the drift monitor's retrain command ({model} filled in by it)."""
        return [
            *_fleetserve(
                "train",
                "--model",
                "{model}",
                "--model-repository",
                str(self.s.model_repository.resolve()),
                "--production-data",
                str(self.layout.predlog),
                "--reason",
                "drift",
                "--min-production-rows",
                str(RETRAIN_MIN_ROWS),
                "--wait-for-rows-s",
                str(RETRAIN_WAIT_S),
                "--register",
                self.ports.url(self.ports.rollout),
                "--no-progress",
            )
        ]

    def _sidecars(self) -> None:
        p, s = self.ports, self.s
        env = _child_env()
        rollout = _fleetserve(
            "rollout",
            "serve",
            "--model-repository",
            str(s.model_repository.resolve()),
            "--prometheus-url",
            p.url(p.prometheus),
            "--port",
            str(p.rollout),
            "--host",
            p.host,
        )
        if self.redis_url:
            rollout += ["--redis-url", self.redis_url]
        self.components.append(
            Component(
                "rollout",
                "rollout controller",
                rollout,
                self.layout.log("rollout"),
                HttpProbe(p.url(p.rollout, "/v1/health")),
                stage=3,
                listeners=(Listener(p.rollout, "HTTP API"),),
                urls=(p.url(p.rollout, "/v1/models"), p.url(p.rollout, "/metrics")),
                env=env,
            )
        )
        if self.redis_url is None:
            return
        predlog = _fleetserve(
            "predlog",
            "--out",
            str(self.layout.predlog),
            "--redis-url",
            self.redis_url,
            "--metrics-port",
            str(p.predlog),
            "--host",
            p.host,
        )
        drift_env = dict(env)
        # the loop closed by default: sustained drift retrains on the labelled production rows
        # and registers the candidate with this cluster's controller (which rolls it out)
        drift_env.setdefault("FLEETSERVE_DRIFT_RETRAIN_COMMAND", shlex.join(self._retrain_command()))
        drift = _fleetserve(
            "drift",
            "--model-repository",
            str(s.model_repository.resolve()),
            "--redis-url",
            self.redis_url,
            "--metrics-port",
            str(p.drift),
            "--host",
            p.host,
        )
        for name, role, cmd, port, child_env in (
            ("predlog", f"prediction log writer -> {self.layout.predlog}", predlog, p.predlog, env),
            ("drift", "drift / quality monitor", drift, p.drift, drift_env),
        ):
            self.components.append(
                Component(
                    name,
                    role,
                    cmd,
                    self.layout.log(name),
                    HttpProbe(p.url(port, "/metrics")),
                    stage=3,
                    listeners=(Listener(port, "metrics"),),
                    urls=(p.url(port, "/metrics"),),
                    env=child_env,
                )
            )


def build(settings: UpSettings) -> Cluster:
    """The cluster `settings` describe, given the programs this machine has."""
    return _Builder(settings).build()
