"""The rollout controller: manual transitions, automated runs, and what `status` reports.

Every change goes through `_commit`: under the model's lock, the transition (a pure function of
`transitions`) is checked against the current plan, a running automated rollout of that model
is cancelled when the change is an operator's, and the new plan is stored. Each recorded
transition is counted in `fleetserve_rollout_transitions_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from fleetserve.common.clock import Clock, SystemClock
from fleetserve.repository.policy import version_folders

from . import transitions as tr
from .auto import AutoConfig, AutoRun, AutoStatus
from .guardrails import Thresholds
from .metrics_source import MetricsSource
from .names import is_model_name
from .plan import RolloutPlan
from .store import PlanStore

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
_METADATA_MAX_BYTES = 1 << 20


class RolloutMetrics:
    """The controller's metric families, in the registry its constructor is given."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.transitions = Counter(
            "fleetserve_rollout_transitions_total",
            "Rollout plan transitions recorded by the controller",
            ["model", "from_stage", "to_stage", "reason"],
            registry=registry,
        )


def read_metadata(version_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A version's metadata.json (None when absent) and the error that made it unreadable."""
    path = version_dir / METADATA_FILE
    try:
        with path.open("rb") as f:
            raw = f.read(_METADATA_MAX_BYTES + 1)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {METADATA_FILE}: {exc.strerror}"
    if len(raw) > _METADATA_MAX_BYTES:
        return None, f"{METADATA_FILE} is over {_METADATA_MAX_BYTES} bytes"
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return None, f"{METADATA_FILE} is not valid JSON: {exc}"
    if not isinstance(data, dict):
        return None, f"{METADATA_FILE} is not a JSON object"
    return data, None


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class RolloutController:
    """Moves rollout plans: stage, canary, promote, rollback, and automated runs."""

    def __init__(
        self,
        store: PlanStore,
        repository: Path,
        source: MetricsSource,
        registry: CollectorRegistry,
        thresholds: Thresholds | None = None,
        auto_defaults: AutoConfig | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.repository = Path(repository)
        self.source = source
        self.metrics = RolloutMetrics(registry)
        self.thresholds = thresholds or Thresholds()
        self.auto_defaults = auto_defaults or AutoConfig()
        self.clock: Clock = clock or SystemClock()
        self._sleep = sleep or _sleep
        self._locks: dict[str, asyncio.Lock] = {}
        self._runs: dict[str, AutoRun] = {}  # the latest automated run per model (running or ended)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._starting: set[str] = set()  # models whose automated run is being staged

    # --- reading -----------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """Every model with a plan: its production, canary, shadows and automated run."""
        rows = []
        for model in self.store.models():
            plan = self.store.get(model)
            if plan is None:
                continue
            run = self._runs.get(model)
            rows.append(
                {
                    "model": model,
                    "production": plan.production,
                    "canary": plan.canary,
                    "canary_weight": plan.canary_weight,
                    "shadows": plan.shadows,
                    "revision": plan.revision,
                    "auto": run.status.phase if run is not None else None,
                }
            )
        return rows

    def versions(self, model: str) -> list[dict[str, Any]]:
        """Each version folder of the model: its metadata, stage in the plan and timestamps."""
        folder = self._model_dir(model)
        plan = self.store.get(model)
        found = version_folders(folder) if folder.is_dir() else []
        implicit = plan is None or plan.production is None
        rows = []
        for v in found:
            stage = plan.stage_of(v) if plan is not None else "none"
            last = next((t for t in reversed(plan.history) if t.version == v), None) if plan else None
            if stage == "none" and last is not None and last.to_stage == "rolled_back":
                stage = "rolled_back"
            if implicit and v == found[-1] and stage == "none":
                stage = "production"  # no pinned production: replicas serve the highest version
            metadata, error = read_metadata(folder / str(v))
            try:
                published = (folder / str(v)).stat().st_mtime
            except OSError:
                published = None
            row: dict[str, Any] = {
                "version": v,
                "stage": stage,
                "weight": plan.canary_weight if plan is not None and stage == "canary" else None,
                "metadata": metadata,
                "published_at": published,
                "last_transition_at": last.time if last is not None else None,
            }
            if error is not None:
                row["metadata_error"] = error
            rows.append(row)
        return rows

    def status(self, model: str) -> dict[str, Any]:
        """The plan, the versions and the automated run of a model."""
        plan = self.store.get(model)
        if plan is None and not self._model_dir(model).is_dir():
            raise tr.NotFound(f"no model {model!r} in the repository and no rollout plan for it")
        run = self._runs.get(model)
        return {
            "model": model,
            "plan": plan.model_dump(mode="json") if plan is not None else None,
            "versions": self.versions(model),
            "auto": run.status.model_dump(mode="json") if run is not None else None,
        }

    def auto_status(self, model: str) -> AutoStatus | None:
        """The latest automated run of a model, running or ended."""
        run = self._runs.get(model)
        return run.status if run is not None else None

    # --- manual commands ---------------------------------------------------------------------

    def _change(self, actor: str, note: str | None) -> tr.Change:
        detail: dict[str, float | str] = {"note": note} if note else {}
        return tr.Change(time=self.clock.wall_ns() / 1e9, actor=actor or "operator", detail=detail)

    async def stage(self, model: str, version: int, actor: str = "", note: str | None = None) -> RolloutPlan:
        """Shadow `version` (production is pinned to the highest other version if unset)."""
        fallback = self._check_version(model, version)
        change = self._change(actor, note)
        return await self._commit(model, lambda p: tr.stage(p, version, fallback, change), "stage")

    async def canary(
        self, model: str, version: int, weight: float, actor: str = "", note: str | None = None
    ) -> RolloutPlan:
        """Make `version` the canary at `weight` percent."""
        fallback = self._check_version(model, version)
        change = self._change(actor, note)
        return await self._commit(model, lambda p: tr.canary(p, version, weight, fallback, change), "canary")

    async def promote(
        self, model: str, version: int | None = None, actor: str = "", note: str | None = None
    ) -> RolloutPlan:
        """Make `version` (default: the canary) production; the old one stays in the repository."""
        if version is not None:
            self._check_version(model, version)
        else:
            self._check_model(model)
        change = self._change(actor, note)
        return await self._commit(model, lambda p: tr.promote(p, version, change), "promote")

    async def rollback(
        self, model: str, version: int | None = None, actor: str = "", note: str | None = None
    ) -> RolloutPlan:
        """Take the canary and the shadows (or just `version`) out of traffic."""
        self._check_model(model)
        change = self._change(actor, note)
        return await self._commit(model, lambda p: tr.rollback(p, version, change), "rollback")

    # --- automated runs ----------------------------------------------------------------------

    async def auto(
        self, model: str, version: int, overrides: dict[str, Any] | None = None, actor: str = ""
    ) -> AutoStatus:
        """Stage `version` as a shadow now and start its automated rollout as a task."""
        try:
            config = AutoConfig.model_validate({**self.auto_defaults.model_dump(), **(overrides or {})})
        except ValueError as exc:
            raise tr.Invalid(_first_error(exc)) from None
        fallback = self._check_version(model, version)
        task = self._tasks.get(model)
        if task is not None and not task.done():
            running = self._runs[model].version
            raise tr.Conflict(f"an automated rollout of version {running} is running; roll it back first")
        if model in self._starting:
            raise tr.Conflict(f"an automated rollout of {model!r} is starting")
        self._starting.add(model)
        try:
            return await self._start_auto(model, version, config, fallback, actor)
        finally:
            self._starting.discard(model)

    async def _start_auto(
        self, model: str, version: int, config: AutoConfig, fallback: int | None, actor: str
    ) -> AutoStatus:
        plan = self._plan(model)
        if plan.canary is not None:
            raise tr.Conflict(f"version {plan.canary} is the canary; promote or roll it back first")
        run = AutoRun(
            model,
            version,
            config,
            self.thresholds,
            self.source,
            lambda op: self._commit(model, op, "", cancel_auto=False),
            lambda: self.store.get(model),
            self.clock,
            self._sleep,
        )
        if version not in plan.shadows:
            change = run.change(requested_by=actor or "operator")
            await self._commit(model, lambda p: tr.stage(p, version, fallback, change), "auto")
        self._runs[model] = run
        self._tasks[model] = asyncio.create_task(run.run(), name=f"fleetserve-rollout-auto-{model}")
        return run.status

    async def wait(self, model: str) -> AutoStatus | None:
        """Wait for the model's automated rollout to end; its final status (None: there was none)."""
        task = self._tasks.get(model)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
        return self.auto_status(model)

    async def stop(self) -> None:
        """Cancel every running automated rollout (plans stay where they are)."""
        for model in list(self._tasks):
            await self._cancel_auto(model, "controller shutdown")

    async def _cancel_auto(self, model: str, command: str) -> None:
        task = self._tasks.pop(model, None)
        if task is None or task.done():
            return
        self._runs[model].cancelled_by(command)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("automated rollout of %s cancelled by %s", model, command)

    # --- plumbing ----------------------------------------------------------------------------

    def _model_dir(self, model: str) -> Path:
        if not is_model_name(model):
            raise tr.Invalid(f"invalid model name {model!r}")
        return self.repository / model

    def _check_model(self, model: str) -> Path:
        folder = self._model_dir(model)
        if not folder.is_dir():
            raise tr.NotFound(f"no model {model!r} in the repository {self.repository}")
        return folder

    def _check_version(self, model: str, version: int) -> int | None:
        """Raise unless the version folder exists; the highest other version (a default production)."""
        found = version_folders(self._check_model(model))
        if version not in found:
            raise tr.NotFound(f"model {model!r} has no version {version} in the repository")
        others = [v for v in found if v != version]
        return others[-1] if others else None

    def _plan(self, model: str) -> RolloutPlan:
        return self.store.get(model) or RolloutPlan.model_validate({"model": model})

    def _lock(self, model: str) -> asyncio.Lock:
        return self._locks.setdefault(model, asyncio.Lock())

    async def _commit(
        self,
        model: str,
        op: Callable[[RolloutPlan], tr.Result],
        command: str,
        cancel_auto: bool = True,
    ) -> RolloutPlan:
        async with self._lock(model):
            op(self._plan(model))  # a refused change cancels nothing
            if cancel_auto:
                await self._cancel_auto(model, command)
            new, recorded = op(self._plan(model))
            try:
                stored = await self.store.put(new)
            except Exception as exc:  # Redis down, disk full: the change did not happen
                log.exception("cannot store the rollout plan of %s", model)
                raise tr.Unavailable(f"cannot store the rollout plan of {model!r}: {exc}") from exc
        for t in recorded:
            self.metrics.transitions.labels(model, t.from_stage, t.to_stage, t.reason).inc()
            log.info(
                "%s v%s: %s -> %s (%s, by %s)", model, t.version, t.from_stage, t.to_stage, t.reason, t.actor
            )
        return stored


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
    return str(exc)
