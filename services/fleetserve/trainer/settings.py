"""Settings of `fleetserve train`: flags, then `FLEETSERVE_*` environment, then defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from fleetserve.trainer.gate import DEFAULT_MARGIN, Reason
from fleetserve.trainer.production import DEFAULT_EVAL_FRACTION
from fleetserve.trainer.train import DEFAULT_EPOCHS, DEFAULT_EXTRA_WEIGHT, DEFAULT_THREADS


class TrainSettings(BaseSettings):
    """Everything `fleetserve train` can be told; each field is also `FLEETSERVE_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="FLEETSERVE_", extra="ignore")

    model: str = "digits"
    model_repository: Path = Path("model_repository")
    epochs: int = Field(DEFAULT_EPOCHS, ge=1)
    seed: int = 0
    # the predlog writer's --out folder; its labelled, sampled predictions join the training data
    production_data: Path | None = None
    # how many times each production sample is drawn per epoch, on average
    production_weight: float = Field(DEFAULT_EXTRA_WEIGHT, ge=0)
    # the most recent share of the production samples, held out to evaluate on
    production_eval_fraction: float = Field(DEFAULT_EVAL_FRACTION, gt=0, lt=1)
    # labelled production rows needed before training (0: none); waited for up to
    # wait_for_rows_s, since labels arrive after the predictions (feedback) and the drift
    # monitor starts the retraining soon after its alarm
    min_production_rows: int = Field(0, ge=0)
    wait_for_rows_s: float = Field(0.0, ge=0)
    # --register: the rollout controller's URL; read the production version there, hand the new
    # one to it (a field named `register` would shadow BaseSettings' own)
    register_url: str | None = Field(None, validation_alias=AliasChoices("register", "FLEETSERVE_REGISTER"))
    reason: Reason = "manual"
    # how much lower than production the candidate's held-out accuracy may be (0.01 = 1 point)
    gate_margin: float = Field(DEFAULT_MARGIN, ge=0)
    # the share of training images whose intensities are flipped by augmentation
    augment_invert: float = Field(0.0, ge=0, le=1)
    threads: int = Field(DEFAULT_THREADS, ge=1)
    admin_token: SecretStr | None = None

    def token(self) -> str | None:
        """The admin token for the rollout controller, if one is configured."""
        return self.admin_token.get_secret_value() if self.admin_token else None
