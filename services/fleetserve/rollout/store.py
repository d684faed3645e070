"""Where rollout plans live, so that every replica reads the same one.

`PlanStore` is the interface the router (hot path: `get`, a dict lookup) and the controller
(`put`) use. Implementations keep a local cache refreshed in the background at least every
`refresh_s` (replicas pick a change up within 1 s).
"""

from __future__ import annotations

from typing import Protocol

from .plan import RolloutPlan


class PlanStore(Protocol):
    """Plans by model name."""

    def get(self, model: str) -> RolloutPlan | None:
        """The cached plan of a model (None: no plan, route to the highest serving version)."""
        ...

    def models(self) -> list[str]:
        """Models that have a plan."""
        ...

    async def put(self, plan: RolloutPlan) -> RolloutPlan:
        """Store a plan (revision bumped, updated_at set); returns what was stored."""
        ...

    async def refresh(self) -> None:
        """Re-read every plan now."""
        ...

    async def start(self) -> None:
        """Load the plans and keep refreshing them in the background."""
        ...

    async def stop(self) -> None:
        """Stop refreshing."""
        ...
