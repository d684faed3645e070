"""The rollout plan as this replica applies it, for the web page's status panel.

Read-only and public (the plan says which version answers, nothing secret): `GET
/v2/models/{model}/rollout`. Changing a plan stays with the rollout controller's API.
"""

from __future__ import annotations

from typing import Any

from .dataplane import DataPlane


def rollout_view(dp: DataPlane, model: str) -> dict[str, Any]:
    """The model's plan (production, canary and weight, shadows) and its serving versions.

    Unknown models raise NOT_FOUND. Without a plan, production is the highest serving version.
    """
    dp.manager.resolve(model)  # NOT_FOUND / UNAVAILABLE for a model that cannot answer
    serving = sorted(dp.manager.serving_numbers(model))
    plan = dp.router.store.get(model) if dp.router is not None else None
    highest = serving[-1] if serving else None
    if plan is None:
        return {
            "model": model,
            "serving": serving,
            "plan": False,
            "production": highest,
            "canary": None,
            "canary_weight": 0.0,
            "shadows": [],
            "revision": None,
        }
    production = plan.production if plan.production in serving else highest
    canary = plan.canary if plan.canary in serving else None
    return {
        "model": model,
        "serving": serving,
        "plan": True,
        "production": production,
        "canary": canary,
        "canary_weight": plan.canary_weight if canary is not None else 0.0,
        "shadows": [v for v in plan.shadows if v in serving],
        "revision": plan.revision,
    }
