"""Settings of `fleetserve up`: flags, then `FLEETSERVE_*` environment, then defaults.

Ports default to CONTRACT.md's; `port_offset` shifts every one of them at once (tests and a
second cluster on the same machine use it), and each can be set on its own too.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class UpSettings(BaseSettings):
    """Everything `fleetserve up` can be told."""

    model_config = SettingsConfigDict(env_prefix="FLEETSERVE_", extra="ignore")

    model_repository: Path = Path("model_repository")
    # gateway replicas behind nginx; None: one per core
    replicas: int | None = Field(None, ge=1, le=500)
    # every process's logs, state and files live under it
    data_dir: Path = Path(".data")
    no_nginx: bool = False
    host: str = "127.0.0.1"
    # the front: nginx (or, without it, the single replica) listens here
    http_port: int = Field(8000, ge=0, le=65535)
    grpc_port: int = Field(8001, ge=0, le=65535)
    metrics_port: int = Field(8002, ge=0, le=65535)  # of the single replica when nginx is absent
    # replica i listens on base + step * i (HTTP), + 1 (gRPC), + 2 (metrics)
    replica_base_port: int = Field(18000, ge=1, le=65535)
    replica_port_step: int = Field(10, ge=3, le=1000)
    redis_port: int = Field(6380, ge=1, le=65535)
    prometheus_port: int = Field(9090, ge=1, le=65535)
    rollout_port: int = Field(8010, ge=1, le=65535)
    predlog_port: int = Field(8011, ge=1, le=65535)
    drift_port: int = Field(8012, ge=1, le=65535)
    port_offset: int = Field(0, ge=-8000, le=40000)
    scrape_interval_s: float = Field(5.0, gt=0)
    # nginx worker processes; 0: one per core
    nginx_workers: int = Field(0, ge=0, le=256)
    ready_timeout_s: float = Field(120.0, gt=0)
    # programs; unset: looked up on PATH and in /usr/sbin (where Debian puts nginx)
    nginx_bin: str | None = None
    redis_bin: str | None = None
    prometheus_bin: str | None = None

    def replica_count(self) -> int:
        """The replicas asked for, or one per core."""
        return self.replicas if self.replicas is not None else max(1, os.cpu_count() or 1)
