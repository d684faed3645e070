"""The router: which version serves a request, and which versions get a shadow copy of it.

It runs for every request, so it does no I/O: the plan comes from the store's cache, and
`serving` (the versions loaded now, any collection with a cheap `in`) from the caller.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from dataclasses import dataclass

from .hashing import assign
from .store import PlanStore


@dataclass(frozen=True, slots=True)
class Route:
    """The routing decision for one request.

    version: the version to serve; None means the highest serving version (the caller picks
    it), and for route "explicit" the request's own version string is authoritative (the caller
    resolves it, so an unknown version gets the repository's error).
    route: "production", "canary" or "explicit".
    shadows: serving versions that get a copy of the request after the primary answers.
    """

    version: int | None
    route: str
    shadows: tuple[int, ...] = ()


_HIGHEST = Route(None, "production")


class Router:
    """Applies each model's rollout plan (from `store`) to requests."""

    def __init__(self, store: PlanStore, rng: random.Random | None = None) -> None:
        self.store = store
        self._rng = rng or random.Random()

    def route(
        self, model: str, explicit_version: str, route_key: str | None, serving: Collection[int]
    ) -> Route:
        """Where a request goes.

        An explicit version always wins (route "explicit", no shadows). Otherwise the plan, if
        any: a canary that is not serving falls back to production, a production that is not
        serving to None (the highest serving version). Shadows are the plan's shadows that are
        serving, other than the version chosen.
        """
        if explicit_version:
            digits = explicit_version.isdigit() and explicit_version.isascii()
            number = int(explicit_version) if digits else None
            return Route(number, "explicit")
        plan = self.store.get(model)
        if plan is None:
            return _HIGHEST
        version, route = assign(plan, route_key, self._rng)
        if version is not None and version not in serving:
            if route == "canary":
                version, route = plan.production, "production"
            if version is not None and version not in serving:
                version = None
        if not plan.shadows:
            return _HIGHEST if version is None else Route(version, route)
        # None serves the highest serving version: a shadow must not shadow itself
        primary = version if version is not None else (max(serving) if serving else None)
        shadows = tuple(v for v in plan.shadows if v in serving and v != primary)
        return Route(version, route, shadows)
