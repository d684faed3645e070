"""Automated progressive delivery of one version: shadow, canary steps, promote, or roll back.

An `AutoRun` is driven by an injected clock and sleep (tests run it without waiting) and
reads its evidence through `analysis`. Its phases:

1. shadow: held until `shadow_requests` comparisons (and at least `shadow_s`), judged by
   shadow agreement and drift;
2. one canary step per weight in `steps`, each held `dwell_s`, judged by error rate and p99
   latency against production, drift, and accuracy against production's once enough labels
   exist for both (skipped otherwise);
3. promote.

Guardrails are read every `poll_s`. A breach rolls back at once, recording the guardrail and
its values. A phase whose guardrails cannot be judged (Prometheus unreachable, or too little
traffic) holds where it is; still unjudged `timeout_s` after its dwell, it rolls back too
(reason `guardrails_unavailable` or `insufficient_data`). Missing evidence never promotes.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fleetserve.common.clock import Clock

from . import analysis
from . import guardrails as g
from . import transitions as tr
from .metrics_source import MetricsSource, MetricsUnavailable
from .plan import RolloutPlan

log = logging.getLogger(__name__)

Phase = Literal["shadow", "canary", "promoted", "rolled_back", "cancelled", "failed"]
Op = Callable[[RolloutPlan], tr.Result]
Commit = Callable[[Op], Awaitable[RolloutPlan]]
Sleep = Callable[[float], Awaitable[None]]

ACTOR = "auto"


class AutoConfig(BaseModel):
    """How an automated rollout proceeds."""

    model_config = ConfigDict(extra="forbid")

    steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0])
    shadow_requests: int = Field(default=100, ge=0)  # shadow comparisons needed before the first canary step
    shadow_s: float = Field(default=0.0, ge=0)  # and at least this long in shadow
    dwell_s: float = Field(default=60.0, ge=0)  # each canary step is held this long
    poll_s: float = Field(default=5.0, gt=0)  # guardrails are read this often
    # a phase whose guardrails are still unjudged this long after its dwell rolls back
    timeout_s: float = Field(default=600.0, ge=0)
    window_s: float = Field(default=60.0, ge=1)  # rate window of the canary's figures
    baseline_window_s: float = Field(default=600.0, ge=1)  # rate window of production's figures
    # Shadow agreement with production is a guardrail unless the candidate is expected to
    # disagree: one retrained because production fails on drifted traffic agrees with it only
    # where production is right. Off, agreement is still measured and shown, not judged.
    judge_agreement: bool = True
    # Each canary step waits until live accuracy (labels from the feedback API) can be judged
    # against production's, instead of skipping that check while labels are too few; a step
    # that never gets them rolls back after `timeout_s`. The trainer asks for both for a
    # candidate retrained because of drift.
    require_accuracy: bool = False

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[float]) -> list[float]:
        if not steps:
            raise ValueError("at least one canary step is needed")
        if any(not 0 < s <= 100 for s in steps):
            raise ValueError("canary steps are percentages within (0, 100]")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("canary steps must increase")
        return steps


class AutoStatus(BaseModel):
    """Where an automated rollout stands (reported by `status`)."""

    model: str
    version: int
    phase: Phase
    running: bool = True
    step: int | None = None  # index into config.steps while in canary
    weight: float | None = None
    started_at: float
    updated_at: float
    message: str = ""
    results: list[g.GuardrailResult] = Field(default_factory=list)
    config: AutoConfig


class _Gone(Exception):
    """The plan no longer holds the version where this run put it (changed by someone else)."""


class _Abort(Exception):
    def __init__(self, reason: str, message: str, detail: dict[str, float | str]) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.detail = detail


class AutoRun:
    """One automated rollout; `run` is the task's coroutine (the version is staged already)."""

    def __init__(
        self,
        model: str,
        version: int,
        config: AutoConfig,
        thresholds: g.Thresholds,
        source: MetricsSource,
        commit: Commit,
        current: Callable[[], RolloutPlan | None],
        clock: Clock,
        sleep: Sleep,
    ) -> None:
        self.model = model
        self.version = version
        self.config = config
        self.thresholds = thresholds
        self.source = source
        self._commit = commit
        self._current = current
        self.clock = clock
        self._sleep = sleep
        now = self._now()
        self.status = AutoStatus(
            model=model, version=version, phase="shadow", started_at=now, updated_at=now, config=config
        )

    def _now(self) -> float:
        return self.clock.wall_ns() / 1e9

    def _update(self, **fields: object) -> None:
        data = {**self.status.model_dump(), **fields, "updated_at": self._now()}
        self.status = AutoStatus.model_validate(data)

    def change(self, reason: str = tr.AUTO, **detail: float | str) -> tr.Change:
        """A Change made by this run."""
        return tr.Change(time=self._now(), actor=ACTOR, reason=reason, detail=dict(detail))

    async def run(self) -> None:
        """Shadow, canary steps, promote; roll back on a breach or on evidence that never comes."""
        try:
            await self._hold("shadow", self._judge_shadow, self.config.shadow_s)
            for i, weight in enumerate(self.config.steps):
                await self._commit(functools.partial(self._step, weight=weight, step=i + 1))
                self._update(phase="canary", step=i, weight=weight, message=f"canary at {weight:g} %")
                await self._hold("canary", self._judge_canary, self.config.dwell_s)
            await self._commit(lambda p: tr.promote(p, self.version, self.change()))
            self._update(phase="promoted", running=False, step=None, weight=None, message="promoted")
            log.info("%s v%d promoted by the automated rollout", self.model, self.version)
        except _Abort as abort:
            await self._roll_back(abort)
        except _Gone as gone:
            self._update(phase="cancelled", running=False, message=str(gone))
            log.warning("automated rollout of %s v%d stopped: %s", self.model, self.version, gone)
        except asyncio.CancelledError:
            self._update(phase="cancelled", running=False, message=self.status.message or "cancelled")
            raise
        except Exception as exc:  # a failing store must end the run visibly, not silently
            log.exception("automated rollout of %s v%d failed", self.model, self.version)
            self._update(phase="failed", running=False, message=f"failed: {exc}")

    def _step(self, plan: RolloutPlan, weight: float, step: int) -> tr.Result:
        return tr.canary(plan, self.version, weight, None, self.change(step=step))

    def cancelled_by(self, command: str) -> None:
        """Note which command cancels this run (before the task is cancelled)."""
        self._update(message=f"cancelled by {command}")

    async def _roll_back(self, abort: _Abort) -> None:
        phase = self.status.phase
        detail: dict[str, float | str] = {"phase": phase, "message": abort.message, **abort.detail}
        if self.status.weight is not None:
            detail["weight"] = self.status.weight
        log.warning("rolling back %s v%d: %s", self.model, self.version, abort.message)
        try:
            await self._commit(lambda p: tr.rollback(p, self.version, self.change(abort.reason, **detail)))
        except tr.RolloutError as exc:
            self._update(phase="failed", running=False, message=f"cannot roll back: {exc.message}")
            return
        self._update(phase="rolled_back", running=False, message=f"rolled back: {abort.message}")

    async def _judge_shadow(self, elapsed: float) -> tuple[list[g.GuardrailResult], bool]:
        # comparisons since the shadow phase began (the window grows with it)
        window = max(self.config.window_s, elapsed + self.config.poll_s)
        compared, results = await analysis.judge_shadow(
            self.source, self.model, self.version, window, self.config.shadow_requests, self.thresholds
        )
        if not self.config.judge_agreement:
            results = [
                _not_judged(r, "judge_agreement is off") if r.name == g.AGREEMENT else r for r in results
            ]
        done = g.all_judged(results) and compared >= self.config.shadow_requests
        return results, done

    async def _judge_canary(self, elapsed: float) -> tuple[list[g.GuardrailResult], bool]:
        plan = self._current()
        production = plan.production if plan is not None else None
        results = await analysis.judge_canary(
            self.source,
            self.model,
            self.version,
            production,
            self.config.window_s,
            self.config.baseline_window_s,
            self.thresholds,
        )
        if self.config.require_accuracy:
            results = [_awaited(r) if r.name == g.ACCURACY and r.status == "skipped" else r for r in results]
        return results, g.all_judged(results)

    async def _hold(
        self,
        phase: str,
        judge: Callable[[float], Awaitable[tuple[list[g.GuardrailResult], bool]]],
        dwell_s: float,
    ) -> None:
        """Return once the phase has dwelt and every guardrail was judged and holds."""
        start = self.clock.monotonic()
        while True:
            plan = self._current()
            stage = plan.stage_of(self.version) if plan is not None else "none"
            if stage != phase:
                raise _Gone(
                    f"version {self.version} is {stage}, no longer {phase}: the plan was changed elsewhere"
                )
            elapsed = self.clock.monotonic() - start
            unavailable: str | None = None
            try:
                results, done = await judge(elapsed)
            except MetricsUnavailable as exc:
                results, done, unavailable = [], False, str(exc)
            elapsed = self.clock.monotonic() - start
            waiting = [r.message for r in results if r.status == "insufficient"]
            if unavailable is not None:
                cause = f"guardrails cannot be read ({unavailable})"
            elif waiting:
                cause = "; ".join(waiting)
            else:
                cause = ""
            left = max(0.0, dwell_s - elapsed)
            note = f"holding: {cause}" if cause else f"{phase}: guardrails hold, {left:.0f} s of dwell left"
            self._update(results=results, message=note)
            breach = g.first_breach(results)
            if breach is not None:
                values: dict[str, float | str] = {"guardrail": breach.name, **breach.values}
                raise _Abort(tr.guardrail_reason(breach.name), breach.message, values)
            if done and elapsed >= dwell_s:
                return
            if elapsed >= dwell_s + self.config.timeout_s:
                reason = tr.UNAVAILABLE if unavailable is not None else tr.INSUFFICIENT
                limit = dwell_s + self.config.timeout_s
                raise _Abort(reason, f"guardrails not judged within {limit:g} s: {cause}", {})
            await self._sleep(self.config.poll_s)


def _not_judged(result: g.GuardrailResult, why: str) -> g.GuardrailResult:
    """A measured check that does not decide the run (shown with its figures)."""
    return result.model_copy(
        update={"status": "skipped", "ok": True, "message": f"{result.message} (not judged: {why})"}
    )


def _awaited(result: g.GuardrailResult) -> g.GuardrailResult:
    """A skipped check the run must wait for (require_accuracy)."""
    return result.model_copy(
        update={
            "status": "insufficient",
            "ok": True,
            "message": f"{result.message} (required: waiting for labels)",
        }
    )
