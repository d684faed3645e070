"""The rollout plan of one model: which version is production, which is the canary at what
weight, which versions shadow the traffic, and every transition that led there."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

STAGES = ("none", "shadow", "canary", "production", "rolled_back")


class Transition(BaseModel):
    """One recorded change of a plan: who, why, when, from which stage to which."""

    time: float  # unix seconds
    version: int | None
    from_stage: str
    to_stage: str
    reason: str
    actor: str = ""
    detail: dict[str, float | str] = Field(default_factory=dict)  # guardrail values, weights


class RolloutPlan(BaseModel):
    """What every replica applies to requests that name no version."""

    model: str
    production: int | None = None  # None: the highest serving version
    canary: int | None = None
    canary_weight: float = Field(default=0.0, ge=0.0, le=100.0)  # percent of keyed / random traffic
    shadows: list[int] = Field(default_factory=list)
    revision: int = 0  # bumped by every change; replicas apply the highest they have seen
    updated_at: float = 0.0  # unix seconds
    history: list[Transition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> RolloutPlan:
        if self.canary is not None and self.canary == self.production:
            raise ValueError("the canary cannot be the production version")
        if self.canary is None and self.canary_weight:
            raise ValueError("a canary weight needs a canary version")
        return self

    def versions(self) -> set[int]:
        """Every version the plan routes traffic to (they must stay loaded)."""
        named = {self.production, self.canary, *self.shadows}
        return {v for v in named if v is not None}

    def stage_of(self, version: int) -> str:
        """The stage a version holds in this plan."""
        if version == self.production:
            return "production"
        if version == self.canary:
            return "canary"
        if version in self.shadows:
            return "shadow"
        return "none"
