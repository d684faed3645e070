"""Settings of the gateway, read from flags, then `FLEETSERVE_*` environment, then defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ControlMode = Literal["none", "poll", "explicit"]


class ServeSettings(BaseSettings):
    """Everything `fleetserve serve` can be told (CONTRACT.md names each one)."""

    model_config = SettingsConfigDict(env_prefix="FLEETSERVE_", extra="ignore")

    model_repository: Path = Path("model_repository")
    host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    grpc_port: int = Field(8001, ge=0, le=65535)
    metrics_port: int = Field(8002, ge=0, le=65535)
    model_control_mode: ControlMode = "poll"
    repository_poll_secs: float = Field(2.0, gt=0)
    load_model: Annotated[list[str], NoDecode] = Field(default_factory=list)
    engine: Literal["local", "ray"] = "local"
    admin_token: SecretStr | None = None
    # where replicas keep local state: the prediction log's file sink and Redis spill
    data_dir: Path = Path(".data")
    redis_url: str | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # onnxruntime threads per model instance; one keeps a replica to its core.
    intra_op_threads: int = Field(1, ge=0)
    inter_op_threads: int = Field(1, ge=0)
    # torch threads per model instance
    torch_threads: int = Field(1, ge=1)
    # Triton's default when an ONNX model has no config.pbtxt and a dynamic batch dimension.
    default_max_batch_size: int = Field(4, ge=0)
    # Batches predicted to compute in less than this run on the event loop instead of a thread
    # (a thread handoff costs more than they do); 0 sends every batch to a thread.
    inline_compute_us: float = Field(300.0, ge=0)
    max_request_bytes: int = Field(128 * 1024 * 1024, gt=0)
    grpc_max_message_bytes: int = Field(1024 * 1024 * 1024, gt=0)

    @field_validator("load_model", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    def token(self) -> str | None:
        """The admin token, if one is configured."""
        return self.admin_token.get_secret_value() if self.admin_token else None
