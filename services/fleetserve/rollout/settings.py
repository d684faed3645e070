"""Settings of `fleetserve rollout`: flags, then `FLEETSERVE_*` environment, then defaults.

Guardrail thresholds and the defaults of automated runs nest: for example
`FLEETSERVE_GUARDRAILS__MIN_SHADOW_AGREEMENT=0.9` or `FLEETSERVE_AUTO__DWELL_S=30`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .auto import AutoConfig
from .guardrails import Thresholds

DEFAULT_PORT = 8010
DEFAULT_CONTROLLER = f"http://127.0.0.1:{DEFAULT_PORT}"


class RolloutSettings(BaseSettings):
    """What `fleetserve rollout serve` and its client commands can be told."""

    model_config = SettingsConfigDict(env_prefix="FLEETSERVE_", env_nested_delimiter="__", extra="ignore")

    model_repository: Path = Path("model_repository")
    prometheus_url: str = "http://127.0.0.1:9090"
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    redis_url: str | None = None
    admin_token: SecretStr | None = None
    controller: str = DEFAULT_CONTROLLER
    guardrails: Thresholds = Field(default_factory=Thresholds)
    auto: AutoConfig = Field(default_factory=AutoConfig)

    def token(self) -> str | None:
        """The admin token, if one is configured."""
        return self.admin_token.get_secret_value() if self.admin_token else None
