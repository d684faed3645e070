"""Which side of a canary split a request falls on.

Keyed traffic uses a stable hash of (model, key), so the same key lands on the same version on
every replica and across restarts, and raising the weight from w1 to w2 moves exactly the keys
whose bucket lies in [w1/100, w2/100): no key ever moves from canary back to production.
Unkeyed traffic draws from the given random generator.
"""

from __future__ import annotations

import hashlib
import random

from .plan import RolloutPlan

_SCALE = float(1 << 53)  # 53 bits fit a double exactly, so the bucket stays below 1.0


def bucket(model: str, key: str) -> float:
    """A number in [0, 1), uniform over keys and identical on every replica (blake2b, never hash())."""
    digest = hashlib.blake2b(f"{model}\0{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / _SCALE


def assign(plan: RolloutPlan, key: str | None, rng: random.Random) -> tuple[int | None, str]:
    """(version, route) for a request that names no version: route is "canary" or "production".

    An empty key counts as no key. The production version may be None, meaning the highest
    serving version, which the caller resolves.
    """
    weight = plan.canary_weight
    if plan.canary is not None and weight > 0.0:
        if key:
            if bucket(plan.model, key) < weight / 100.0:
                return plan.canary, "canary"
        elif rng.random() * 100.0 < weight:
            return plan.canary, "canary"
    return plan.production, "production"
