"""Settings of `fleetserve drift`: flags, then `FLEETSERVE_*` environment, then defaults.

The quality windows nest: for example `FLEETSERVE_QUALITY__WINDOW_ITEMS=10000`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .streams import check_stream_id

DEFAULT_METRICS_PORT = 8012


class QualityConfig(BaseModel):
    """Bounds of the quality windows (see `windows.QualityWindows`)."""

    model_config = ConfigDict(extra="forbid")

    window_items: int = Field(default=5000, ge=1)  # labelled items kept per version
    window_s: float = Field(default=3600.0, gt=0)  # and only those joined this recently
    max_pending: int = Field(default=100_000, ge=1)  # record ids awaiting a label
    label_grace_s: float = Field(default=60.0, ge=0)  # a label read before its prediction waits this long
    ece_bins: int = Field(default=10, ge=1)


class DriftSettings(BaseSettings):
    """What `fleetserve drift` can be told."""

    model_config = SettingsConfigDict(env_prefix="FLEETSERVE_", env_nested_delimiter="__", extra="ignore")

    model_repository: Path = Path("model_repository")
    redis_url: str | None = None
    host: str = "127.0.0.1"
    metrics_port: int = Field(default=DEFAULT_METRICS_PORT, ge=0, le=65535)
    # where the monitor starts reading: "$" (records from now on) or a stream id ("0": all)
    stream_start: str = "$"
    refresh_s: float = Field(default=1.0, gt=0)
    quality: QualityConfig = Field(default_factory=QualityConfig)

    @field_validator("stream_start")
    @classmethod
    def _start(cls, value: str) -> str:
        return check_stream_id(value)
