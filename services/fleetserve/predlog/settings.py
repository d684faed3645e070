"""Settings of the prediction log (gateway side) and of the writer sidecar.

Both read `FLEETSERVE_*` environment variables: the log's own knobs under
`FLEETSERVE_PREDLOG_` (e.g. `FLEETSERVE_PREDLOG_SAMPLE_RATE`), the writer's flags as
`FLEETSERVE_<FLAG>` (e.g. `FLEETSERVE_OUT`, `FLEETSERVE_REDIS_URL`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .index import DEFAULT_TTL_S

DEFAULT_REDIS_URL = "redis://127.0.0.1:6380/0"  # the Redis of `fleetserve up`


class LogSettings(BaseSettings):
    """Knobs of the gateway's prediction log."""

    model_config = SettingsConfigDict(env_prefix="FLEETSERVE_PREDLOG_", extra="ignore")

    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)  # share of requests logged
    # share of records that carry their input tensors
    tensor_sample_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    capacity: int = Field(default=10_000, ge=1)  # entries the in-memory buffer holds
    top_k: int = Field(default=5, ge=0)
    batch_entries: int = Field(default=256, ge=1)  # entries turned into records per batch
    # seconds the log waits, after a first entry, for more to batch with it (0: none)
    linger_s: float = Field(default=0.02, ge=0.0, le=1.0)
    maxlen: int = Field(default=1_000_000, ge=1)  # approximate MAXLEN of each stream
    ttl_s: int = Field(default=DEFAULT_TTL_S, ge=1)  # of the Redis index of logged requests
    spill_max_bytes: int = Field(default=512 * 1024 * 1024, ge=0)
    index_capacity: int = Field(default=1_000_000, ge=1)  # requests the file sink's memory index holds


class WriterSettings(BaseSettings):
    """Flags of `fleetserve predlog` (the writer sidecar)."""

    model_config = SettingsConfigDict(env_prefix="FLEETSERVE_", extra="ignore")

    out: Path = Path("data/predlog")
    redis_url: str = DEFAULT_REDIS_URL
    metrics_port: int = Field(default=8011, ge=0, le=65535)
    host: str = "127.0.0.1"
    consumer: str = "writer"  # stable across restarts: a restarted writer resumes its own pending entries
    batch_records: int = Field(default=10_000, ge=1)  # stream entries per batch of part files (at most)
    # a batch is written at the latest this long after its first entry
    flush_s: float = Field(default=10.0, gt=0)
    # pending entries of other (dead) consumers idle this long are claimed
    claim_idle_s: float = Field(default=60.0, gt=0)
