"""Rollout plan semantics: what a plan may say, and what it says about each version."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fleetserve.rollout.plan import RolloutPlan


def test_defaults_route_everything_to_the_highest_version() -> None:
    plan = RolloutPlan(model="digits")
    assert plan.production is None and plan.canary is None and plan.canary_weight == 0.0
    assert plan.versions() == set()
    assert plan.revision == 0


def test_canary_equal_to_production_is_rejected() -> None:
    with pytest.raises(ValidationError, match="canary cannot be the production"):
        RolloutPlan(model="digits", production=2, canary=2, canary_weight=5)


def test_weight_without_canary_is_rejected() -> None:
    with pytest.raises(ValidationError, match="needs a canary"):
        RolloutPlan(model="digits", production=1, canary_weight=10)


@pytest.mark.parametrize("weight", [-0.1, 100.1])
def test_weight_outside_percent_is_rejected(weight: float) -> None:
    with pytest.raises(ValidationError):
        RolloutPlan(model="digits", production=1, canary=2, canary_weight=weight)


def test_canary_at_zero_weight_is_allowed() -> None:
    plan = RolloutPlan(model="digits", production=1, canary=2)
    assert plan.canary == 2 and plan.canary_weight == 0.0


def test_versions_names_every_routed_version() -> None:
    plan = RolloutPlan(model="digits", production=1, canary=2, canary_weight=25, shadows=[3, 4])
    assert plan.versions() == {1, 2, 3, 4}
    assert RolloutPlan(model="digits", shadows=[5]).versions() == {5}


def test_stage_of() -> None:
    plan = RolloutPlan(model="digits", production=1, canary=2, canary_weight=25, shadows=[3])
    assert plan.stage_of(1) == "production"
    assert plan.stage_of(2) == "canary"
    assert plan.stage_of(3) == "shadow"
    assert plan.stage_of(9) == "none"


def test_json_round_trip() -> None:
    plan = RolloutPlan(model="digits", production=1, canary=2, canary_weight=12.5, shadows=[3], revision=7)
    assert RolloutPlan.model_validate_json(plan.model_dump_json()) == plan
