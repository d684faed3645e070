"""Settings of the Ray Serve engine (`FLEETSERVE_RAY_*`), beside the gateway's own."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RaySettings(BaseSettings):
    """Where the Ray cluster is and what each replica reserves on it."""

    model_config = SettingsConfigDict(env_prefix="FLEETSERVE_RAY_", extra="ignore")

    # A running cluster to join ("auto", or "ray://host:10001"); none: start a single-node one.
    address: str | None = None
    # CPUs of the single-node cluster started here (None: Ray counts the machine's).
    num_cpus: int | None = Field(default=None, ge=1)
    # CPUs each model-version replica reserves, unless its config.pbtxt says `ray_num_cpus`.
    replica_cpus: float = Field(default=1.0, ge=0)
    # CPUs the ingress replica (the gateway: REST, gRPC, batching) reserves.
    ingress_cpus: float = Field(default=1.0, ge=0)
