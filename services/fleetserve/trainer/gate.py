"""The publishing gate: is the candidate good enough to replace the current production version?

Pure decisions over accuracies measured on the same data (see :mod:`fleetserve.trainer.evaluate`):

- on the held-out split (``test_accuracy``) the candidate may be worse than production by at
  most ``margin`` (absolute, 0.01 = one point);
- when retraining was triggered by drift, the candidate must also be strictly better than
  production on recent production data (``production_accuracy``), which must exist.

With no production version there is nothing to compare against and the gate passes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Reason = Literal["manual", "drift"]
REASONS: tuple[Reason, ...] = ("manual", "drift")
DEFAULT_MARGIN = 0.01
HELD_OUT = "test_accuracy"
PRODUCTION = "production_accuracy"


@dataclass(frozen=True)
class GateDecision:
    """Whether the candidate may be published, and the checks (with their figures) that decided it."""

    passed: bool
    reason: Reason
    margin: float
    parent_version: int | None
    checks: tuple[str, ...] = field(default=())
    failures: tuple[str, ...] = field(default=())

    def message(self) -> str:
        """One readable sentence per failed check (or per check, when it passed)."""
        against = f"production v{self.parent_version}" if self.parent_version is not None else "no production"
        verdict = "passed" if self.passed else "refused"
        lines = self.failures if not self.passed else self.checks
        return f"gate {verdict} (reason {self.reason}, against {against}): " + "; ".join(lines)

    def summary(self) -> dict[str, object]:
        """What metadata.json records of the gate."""
        return {
            "passed": self.passed,
            "reason": self.reason,
            "margin": self.margin,
            "parent_version": self.parent_version,
            "checks": list(self.checks),
        }


class GateRefused(RuntimeError):
    """The candidate failed the gate; nothing was published."""

    def __init__(self, decision: GateDecision) -> None:
        super().__init__(decision.message())
        self.decision = decision


def decide(
    candidate: Mapping[str, float],
    parent: Mapping[str, float] | None,
    *,
    reason: Reason,
    margin: float = DEFAULT_MARGIN,
    parent_version: int | None = None,
) -> GateDecision:
    """Decide from the candidate's and the parent's accuracies (keys ``test_accuracy`` and,
    when production data was evaluated, ``production_accuracy``).

    Raises ValueError for an unknown ``reason``, a negative or non-finite ``margin``, or a
    candidate without ``test_accuracy``.
    """
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {', '.join(REASONS)}, got {reason!r}")
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"gate margin must be a finite number >= 0, got {margin}")
    if HELD_OUT not in candidate:
        raise ValueError(f"the candidate has no {HELD_OUT}")
    if parent is None:
        return GateDecision(True, reason, margin, None, ("no production version to compare against",))
    name = f"v{parent_version}" if parent_version is not None else "production"
    checks: list[str] = []
    failures: list[str] = []

    ours, theirs = candidate[HELD_OUT], parent[HELD_OUT]
    line = f"held-out accuracy {ours:.4f} vs {name}'s {theirs:.4f} (allowed {margin:.4f} lower)"
    checks.append(line)
    if ours < theirs - margin:
        failures.append(
            f"held-out accuracy {ours:.4f} is {theirs - ours:.4f} below {name}'s {theirs:.4f}, "
            f"more than the margin {margin:.4f}"
        )

    if reason == "drift":
        if PRODUCTION not in candidate or PRODUCTION not in parent:
            failures.append(
                "retraining for drift needs recent production data to be better on, and there is none "
                "(pass --production-data with labelled, sampled predictions)"
            )
        else:
            ours, theirs = candidate[PRODUCTION], parent[PRODUCTION]
            checks.append(f"recent production accuracy {ours:.4f} vs {name}'s {theirs:.4f} (must be higher)")
            if not ours > theirs:
                failures.append(
                    f"recent production accuracy {ours:.4f} is not better than {name}'s {theirs:.4f}"
                )
    elif PRODUCTION in candidate and PRODUCTION in parent:
        checks.append(
            f"recent production accuracy {candidate[PRODUCTION]:.4f} vs {name}'s {parent[PRODUCTION]:.4f} "
            "(not gated: reason manual)"
        )
    return GateDecision(not failures, reason, margin, parent_version, tuple(checks), tuple(failures))
