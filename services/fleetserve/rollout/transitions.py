"""The transitions of a rollout plan as pure functions: plan in, new plan and its recorded
transitions out, or a `RolloutError` saying why the change is refused.

The controller (manual commands and automated runs alike) applies these; nothing here does
I/O, so every rule is testable on plain plans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .plan import RolloutPlan, Transition

# Plans are read by every replica about once a second: keep the history they carry bounded.
HISTORY_LIMIT = 200

# reasons (a small fixed set: they are metric label values); an operator's words go to detail["note"]
MANUAL = "manual"
AUTO = "auto"
UNAVAILABLE = "guardrails_unavailable"
INSUFFICIENT = "insufficient_data"


def guardrail_reason(name: str) -> str:
    """The reason recorded when guardrail `name` is breached."""
    return f"guardrail:{name}"


class RolloutError(Exception):
    """A refused rollout command; `status` is the HTTP status that fits."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(RolloutError):
    """The request itself is malformed."""

    status = 400


class NotFound(RolloutError):
    """No such model or version."""

    status = 404


class Conflict(RolloutError):
    """The command does not fit the plan's current state."""

    status = 409


class Unavailable(RolloutError):
    """The plan store could not be written."""

    status = 503


@dataclass(frozen=True)
class Change:
    """Who makes a change, when and why."""

    time: float  # unix seconds
    actor: str
    reason: str = MANUAL
    detail: dict[str, float | str] = field(default_factory=dict)

    def transition(
        self, version: int | None, from_stage: str, to_stage: str, **extra: float | str
    ) -> Transition:
        """A Transition of this change."""
        return Transition(
            time=self.time,
            version=version,
            from_stage=from_stage,
            to_stage=to_stage,
            reason=self.reason,
            actor=self.actor,
            detail={**self.detail, **extra},
        )


Result = tuple[RolloutPlan, list[Transition]]


def _with(plan: RolloutPlan, transitions: list[Transition], **changes: Any) -> Result:
    data = plan.model_dump()
    data.update(changes)
    data["history"] = [*data["history"], *(t.model_dump() for t in transitions)][-HISTORY_LIMIT:]
    return RolloutPlan.model_validate(data), transitions


def _production(plan: RolloutPlan, version: int, fallback: int | None, what: str) -> int:
    production = plan.production if plan.production is not None else fallback
    if production is None or production == version:
        raise Conflict(f"no production version to {what} against: promote version {version} directly")
    return production


def stage(plan: RolloutPlan, version: int, fallback_production: int | None, change: Change) -> Result:
    """Add `version` to the shadows (production pinned to `fallback_production` if unset)."""
    if version == plan.production:
        raise Conflict(f"version {version} is production")
    if version == plan.canary:
        raise Conflict(f"version {version} is the canary; roll it back first to shadow it")
    if version in plan.shadows:
        raise Conflict(f"version {version} is already a shadow")
    production = _production(plan, version, fallback_production, "shadow")
    t = change.transition(version, plan.stage_of(version), "shadow", production=production)
    return _with(plan, [t], production=production, shadows=[*plan.shadows, version])


def canary(
    plan: RolloutPlan, version: int, weight: float, fallback_production: int | None, change: Change
) -> Result:
    """Make `version` the canary at `weight` percent (it stops shadowing)."""
    if not 0.0 <= weight <= 100.0:
        raise Invalid(f"canary weight {weight} is not within 0..100 %")
    if version == plan.production:
        raise Conflict(f"version {version} is production")
    if plan.canary is not None and plan.canary != version:
        raise Conflict(f"version {plan.canary} is the canary; promote or roll it back first")
    production = _production(plan, version, fallback_production, "canary")
    t = change.transition(version, plan.stage_of(version), "canary", weight=weight, production=production)
    shadows = [s for s in plan.shadows if s != version]
    return _with(plan, [t], production=production, canary=version, canary_weight=weight, shadows=shadows)


def promote(plan: RolloutPlan, version: int | None, change: Change) -> Result:
    """Make `version` (default: the canary, else the only shadow) production; the canary is cleared."""
    if version is None:
        if plan.canary is not None:
            version = plan.canary
        elif len(plan.shadows) == 1:
            version = plan.shadows[0]
        else:
            raise Conflict("no canary (and not exactly one shadow): name the version to promote")
    if version == plan.production:
        raise Conflict(f"version {version} is already production")
    if plan.canary is not None and plan.canary != version:
        raise Conflict(f"version {plan.canary} is the canary; promote or roll it back first")
    extra: dict[str, float | str] = {}
    if plan.production is not None:
        extra["previous_production"] = plan.production
    t = change.transition(version, plan.stage_of(version), "production", **extra)
    shadows = [s for s in plan.shadows if s != version]
    return _with(plan, [t], production=version, canary=None, canary_weight=0.0, shadows=shadows)


def rollback(plan: RolloutPlan, version: int | None, change: Change) -> Result:
    """Take `version` (default: the canary and every shadow) out of traffic; production stays."""
    if version is None:
        targets = ([plan.canary] if plan.canary is not None else []) + list(plan.shadows)
        if not targets:
            raise Conflict("nothing to roll back: no canary and no shadows (promote a version to revert)")
    elif version == plan.canary or version in plan.shadows:
        targets = [version]
    else:
        raise Conflict(f"version {version} is {plan.stage_of(version)}, not a canary or shadow")
    transitions = [change.transition(v, plan.stage_of(v), "rolled_back") for v in targets]
    changes: dict[str, Any] = {"shadows": [s for s in plan.shadows if s not in targets]}
    if plan.canary in targets:
        changes.update(canary=None, canary_weight=0.0)
    return _with(plan, transitions, **changes)
