"""The router: explicit versions, the plan, fallbacks to what is serving, shadows."""

from __future__ import annotations

import random

from fleetserve.rollout.plan import RolloutPlan
from fleetserve.rollout.router import Route, Router


class FakeStore:
    """A PlanStore over a dict (the router only calls get)."""

    def __init__(self, *plans: RolloutPlan) -> None:
        self.plans = {p.model: p for p in plans}

    def get(self, model: str) -> RolloutPlan | None:
        return self.plans.get(model)

    def models(self) -> list[str]:
        return sorted(self.plans)

    async def put(self, plan: RolloutPlan) -> RolloutPlan:
        self.plans[plan.model] = plan
        return plan

    async def refresh(self) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def router(**fields: object) -> Router:
    return Router(FakeStore(RolloutPlan.model_validate({"model": "digits", **fields})), random.Random(0))


def test_no_plan_routes_to_the_highest() -> None:
    r = Router(FakeStore(), random.Random(0))
    assert r.route("digits", "", "user-1", {1, 2}) == Route(None, "production", ())


def test_explicit_version_wins() -> None:
    r = router(production=1, canary=2, canary_weight=100, shadows=[3])
    assert r.route("digits", "1", "user-1", {1, 2, 3}) == Route(1, "explicit", ())
    assert r.route("digits", "7", None, {1, 2, 3}) == Route(
        7, "explicit", ()
    )  # the caller says "no such version"


def test_explicit_version_that_is_not_a_number_is_left_to_the_caller() -> None:
    r = router(production=1)
    assert r.route("digits", "latest", None, {1}) == Route(None, "explicit", ())


def test_plan_production_and_canary() -> None:
    assert router(production=1, canary=2, canary_weight=100).route("digits", "", "k", {1, 2}) == Route(
        2, "canary"
    )
    assert router(production=1, canary=2, canary_weight=0).route("digits", "", "k", {1, 2}) == Route(
        1, "production"
    )


def test_canary_not_serving_falls_back_to_production() -> None:
    r = router(production=1, canary=2, canary_weight=100)
    assert r.route("digits", "", "k", {1, 3}) == Route(1, "production")


def test_production_not_serving_falls_back_to_the_highest() -> None:
    assert router(production=1).route("digits", "", "k", {2, 3}) == Route(None, "production")
    r = router(production=1, canary=2, canary_weight=100)
    assert r.route("digits", "", "k", {3}) == Route(None, "production")


def test_shadows_are_filtered_to_serving_versions() -> None:
    r = router(production=1, shadows=[2, 3, 4])
    assert r.route("digits", "", "k", {1, 2, 4}) == Route(1, "production", (2, 4))


def test_a_shadow_is_never_the_chosen_version() -> None:
    r = router(production=1, canary=2, canary_weight=100, shadows=[2, 3])
    assert r.route("digits", "", "k", {1, 2, 3}) == Route(2, "canary", (3,))
    # production None serves the highest serving version, here 3: it does not shadow itself
    r = router(shadows=[2, 3])
    assert r.route("digits", "", "k", {1, 2, 3}) == Route(None, "production", (2,))


def test_shadows_of_an_unknown_model_only() -> None:
    r = router(production=1, shadows=[2])
    assert r.route("other", "", None, {1, 2}) == Route(None, "production", ())


def test_serving_may_be_any_collection() -> None:
    r = router(production=1, shadows=[2])
    assert r.route("digits", "", None, {1: "a", 2: "b"}.keys()) == Route(1, "production", (2,))
