"""Choosing the plan store: Redis when a URL is configured, else files in the model repository."""

from __future__ import annotations

from pathlib import Path

from .file_store import FilePlanStore
from .redis_store import RedisPlanStore
from .store import PlanStore


def plan_store(redis_url: str | None, repository: Path, refresh_s: float = 0.5) -> PlanStore:
    """A `RedisPlanStore` when `redis_url` is set (FLEETSERVE_REDIS_URL), else a `FilePlanStore`."""
    if redis_url:
        return RedisPlanStore(redis_url, refresh_s=refresh_s)
    return FilePlanStore(repository, refresh_s=refresh_s)
