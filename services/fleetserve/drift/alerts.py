"""The alert state of one model version, from the verdicts of its successive evaluations.

An evaluation is "over" when any score exceeds its threshold. The alert is raised after
`alert_after` consecutive over evaluations, and cleared after `clear_after` consecutive
evaluations with no score above `clear_factor` times its threshold (hysteresis: a window
hovering at the threshold does not flap). The time from raise to clear is one episode.

Retraining is due once per episode, when the alert is up, the last `retrain_after_evaluations`
evaluations were all over, and the alert has been up `retrain_after_s` seconds; `due` says
so, `mark_retrained` records that this episode had its retraining.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """When an alert is raised and cleared, and when it calls for retraining."""

    alert_after: int = 3
    clear_after: int = 3
    clear_factor: float = 0.8
    retrain_after_evaluations: int = 10
    retrain_after_s: float = 60.0

    def __post_init__(self) -> None:
        if min(self.alert_after, self.clear_after, self.retrain_after_evaluations) < 1:
            raise ValueError("alert_after, clear_after and retrain_after_evaluations must be at least 1")
        if not 0 < self.clear_factor <= 1:
            raise ValueError("clear_factor must be in (0, 1]")
        if self.retrain_after_s < 0:
            raise ValueError("retrain_after_s must not be negative")


Transition = str  # "raised", "cleared" or "" (no change)


class AlertState:
    """The alert of one version (module docstring); times are the caller's monotonic seconds."""

    def __init__(self, policy: AlertPolicy) -> None:
        self.policy = policy
        self.active = False
        self.over_run = 0  # consecutive over evaluations
        self.calm_run = 0  # consecutive evaluations below the clearing level
        self.raised_at: float | None = None
        self.episodes = 0
        self.retrained = False  # this episode's retraining has been triggered

    def update(self, over: bool, calm: bool, now: float) -> Transition:
        """Take one evaluation's verdicts (`over`: a score above its threshold; `calm`: none
        above the clearing level); the transition it causes."""
        self.over_run = self.over_run + 1 if over else 0
        self.calm_run = self.calm_run + 1 if calm else 0
        if not self.active and self.over_run >= self.policy.alert_after:
            self.active, self.raised_at, self.retrained = True, now, False
            self.episodes += 1
            return "raised"
        if self.active and self.calm_run >= self.policy.clear_after:
            self.active, self.raised_at = False, None
            return "cleared"
        return ""

    def due(self, now: float) -> bool:
        """Whether this episode's retraining is due now."""
        p = self.policy
        return (
            self.active
            and not self.retrained
            and self.raised_at is not None
            and self.over_run >= p.retrain_after_evaluations
            and now - self.raised_at >= p.retrain_after_s
        )

    def mark_retrained(self) -> None:
        """This episode's retraining has been triggered."""
        self.retrained = True
