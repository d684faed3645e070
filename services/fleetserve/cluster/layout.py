"""Where everything of a local cluster lives: its ports and its folders under the data dir."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .settings import UpSettings


@dataclass(frozen=True)
class ReplicaPorts:
    """The three listeners of one gateway replica."""

    http: int
    grpc: int
    metrics: int


@dataclass(frozen=True)
class PortPlan:
    """Every port of the cluster (CONTRACT.md defaults, shifted by the offset)."""

    host: str
    http: int  # the front: nginx, or the single replica without nginx
    grpc: int
    replicas: tuple[ReplicaPorts, ...]
    redis: int
    prometheus: int
    rollout: int
    predlog: int
    drift: int

    @classmethod
    def of(cls, s: UpSettings, replicas: int, behind_nginx: bool) -> PortPlan:
        """The plan for `replicas` replicas; without nginx the one replica takes the front ports."""
        k = s.port_offset
        if behind_nginx:
            ports = tuple(
                ReplicaPorts(b, b + 1, b + 2)
                for b in (s.replica_base_port + k + s.replica_port_step * i for i in range(replicas))
            )
        else:
            ports = (ReplicaPorts(s.http_port + k, s.grpc_port + k, s.metrics_port + k),)
        return cls(
            host=s.host,
            http=s.http_port + k,
            grpc=s.grpc_port + k,
            replicas=ports,
            redis=s.redis_port + k,
            prometheus=s.prometheus_port + k,
            rollout=s.rollout_port + k,
            predlog=s.predlog_port + k,
            drift=s.drift_port + k,
        )

    def ports(self) -> list[int]:
        """Every port of the plan: the front, each replica's three, Redis, Prometheus, sidecars."""
        ports = [self.http, self.grpc]
        ports += [p for r in self.replicas for p in (r.http, r.grpc, r.metrics)]
        ports += [self.redis, self.prometheus, self.rollout, self.predlog, self.drift]
        return list(dict.fromkeys(ports))

    def url(self, port: int, path: str = "") -> str:
        """http://host:port/path, brackets around an IPv6 host."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}{path}"

    def address(self, port: int) -> str:
        """host:port, brackets around an IPv6 host."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{port}"


@dataclass(frozen=True)
class DataLayout:
    """The folders under the data dir: one per process that keeps state, and the logs."""

    root: Path

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def nginx(self) -> Path:
        return self.root / "nginx"

    @property
    def redis(self) -> Path:
        return self.root / "redis"

    @property
    def prometheus(self) -> Path:
        return self.root / "prometheus"

    @property
    def predlog(self) -> Path:
        return self.root / "predlog"

    @property
    def state_file(self) -> Path:
        """What runs where (names, pids, ports, logs), rewritten on every (re)start."""
        return self.root / "cluster.json"

    def replica(self, i: int) -> Path:
        return self.root / "replicas" / str(i)

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def cluster_ports(settings: UpSettings, replicas: int) -> list[int]:
    """Every port `fleetserve up` with these settings may listen on: behind nginx with
    `replicas` replicas, or, without nginx, one replica on the front ports (and their metrics)."""
    both = PortPlan.of(settings, replicas, True).ports() + PortPlan.of(settings, 1, False).ports()
    return list(dict.fromkeys(both))
