"""Settings of `fleetserve drift`: flags, then `FLEETSERVE_*` environment, then defaults.

The quality windows nest: for example `FLEETSERVE_QUALITY__WINDOW_ITEMS=10000`. The drift
detectors' settings are flat, `drift_*` (flag `--drift-window-items`, environment
`FLEETSERVE_DRIFT_WINDOW_ITEMS`; `FLEETSERVE_DRIFT_RETRAIN_COMMAND` for the retrain command).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .alerts import AlertPolicy
from .drift_monitor import WindowPolicy
from .retrain import parse_command
from .scoring import Thresholds
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
    # read the gateway's local file sink (its --data-dir) instead of Redis
    records_dir: Path | None = None

    # drift: each version's window of items, scored every `evaluate_every` items once it has
    # `min_items` (tuned on digits: see the README's drift section)
    drift_window_items: int = Field(default=300, ge=1)
    drift_min_items: int = Field(default=250, ge=1)
    drift_evaluate_every: int = Field(default=10, ge=1)
    # thresholds: PSI, KS statistic, Jensen-Shannon divergence of classes, mean-confidence drop
    drift_psi_threshold: float = Field(default=0.3, gt=0)
    drift_ks_threshold: float = Field(default=0.25, gt=0, le=1)
    drift_js_threshold: float = Field(default=0.1, gt=0, le=1)
    drift_drop_threshold: float = Field(default=0.1, gt=0, le=1)
    drift_psi_eps: float = Field(default=1e-3, gt=0, lt=1)  # floor of a bin's share in PSI
    # the alert: raised after N consecutive evaluations over a threshold, cleared after M with
    # every score under clear_factor x its threshold
    drift_alert_after: int = Field(default=3, ge=1)
    drift_clear_after: int = Field(default=3, ge=1)
    drift_clear_factor: float = Field(default=0.8, gt=0, le=1)
    # retraining: a command (JSON list or shell-like words, run without a shell) started once
    # per alert episode when drift stays over threshold this many evaluations and seconds
    drift_retrain_command: str | None = None
    drift_retrain_after_evaluations: int = Field(default=10, ge=1)
    drift_retrain_after_s: float = Field(default=60.0, ge=0)
    drift_retrain_cooldown_s: float = Field(default=3600.0, ge=0)
    # a failed retrain command is run again this long after it started, while drift persists
    drift_retrain_retry_s: float = Field(default=300.0, ge=0)
    # a version without a reference profile is looked up again after this long
    drift_reference_retry_s: float = Field(default=30.0, ge=0)

    @field_validator("stream_start")
    @classmethod
    def _start(cls, value: str) -> str:
        return check_stream_id(value)

    @field_validator("drift_retrain_command")
    @classmethod
    def _command(cls, value: str | None) -> str | None:
        parse_command(value)  # ValueError when malformed
        return value

    @model_validator(mode="after")
    def _window(self) -> DriftSettings:
        self.drift_window()  # ValueError when min_items exceeds window_items
        return self

    def drift_window(self) -> WindowPolicy:
        """The drift windows' policy."""
        return WindowPolicy(self.drift_window_items, self.drift_min_items, self.drift_evaluate_every)

    def drift_thresholds(self) -> Thresholds:
        """The drift tests' thresholds."""
        return Thresholds(
            psi=self.drift_psi_threshold,
            ks=self.drift_ks_threshold,
            js=self.drift_js_threshold,
            drop=self.drift_drop_threshold,
            eps=self.drift_psi_eps,
        )

    def drift_alerts(self) -> AlertPolicy:
        """When alerts are raised and cleared, and when retraining is due."""
        return AlertPolicy(
            alert_after=self.drift_alert_after,
            clear_after=self.drift_clear_after,
            clear_factor=self.drift_clear_factor,
            retrain_after_evaluations=self.drift_retrain_after_evaluations,
            retrain_after_s=self.drift_retrain_after_s,
        )

    def retrain_argv(self) -> list[str] | None:
        """The retrain command as an argv, or None."""
        return parse_command(self.drift_retrain_command)
