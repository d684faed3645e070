"""Rollout plans as files next to the models: `<repository>/<model>/rollout.json`.

Used when no Redis is configured. Every replica polls the files (stat only, unless one
changed), so a change is seen within `refresh_s`. A write goes to a temporary dotfile in the
same folder and is renamed into place, so a reader never sees half a plan; the repository
manager ignores both `rollout.json` and dotfiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import tempfile
import time
from pathlib import Path

from pydantic import ValidationError

from .names import check_model_name, is_model_name
from .plan import RolloutPlan

log = logging.getLogger(__name__)

PLAN_FILE = "rollout.json"

# (mtime_ns, size, inode): os.replace gives a new inode, so even a same-size rewrite within
# the clock's granularity is noticed
Fingerprint = tuple[int, int, int]


def _fingerprint(st: os.stat_result) -> Fingerprint:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _parse(model: str, data: bytes) -> RolloutPlan:
    plan = RolloutPlan.model_validate_json(data)
    if plan.model != model:
        raise ValueError(f"the plan names model {plan.model!r}")
    return plan


def _scan(
    repository: Path, known: dict[str, Fingerprint]
) -> tuple[dict[str, Fingerprint], dict[str, RolloutPlan | str]]:
    """Fingerprints of every plan file now, and the parsed plan (or the error) of each that changed."""
    found: dict[str, Fingerprint] = {}
    changed: dict[str, RolloutPlan | str] = {}
    try:
        folders = [p for p in repository.iterdir() if is_model_name(p.name)]
    except OSError as exc:
        raise OSError(f"cannot list the repository {repository}: {exc}") from exc
    for folder in folders:
        path = folder / PLAN_FILE
        try:
            fp = _fingerprint(path.stat())
            if known.get(folder.name) == fp:
                found[folder.name] = fp
                continue
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:  # unreadable now: retried next time, and not taken for removed
            if folder.name in known:
                found[folder.name] = known[folder.name]
            changed[folder.name] = f"{type(exc).__name__}: {exc}"
            continue
        found[folder.name] = fp
        try:
            changed[folder.name] = _parse(folder.name, data)
        except (ValidationError, ValueError) as exc:
            changed[folder.name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return found, changed


def _write(repository: Path, plan: RolloutPlan, cached_revision: int) -> tuple[RolloutPlan, Fingerprint]:
    """Store a plan under an exclusive lock on its model folder; returns it and its file's fingerprint.

    The revision goes past the stored one, the given one and the cached one (which counts when
    the file on disk is corrupt).
    """
    folder = repository / plan.model
    if not folder.is_dir():
        raise ValueError(f"no model folder {folder} for the rollout plan of {plan.model!r}")
    path = folder / PLAN_FILE
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)  # two controllers writing at once still bump in turn
        stored_revision = cached_revision
        with contextlib.suppress(FileNotFoundError, ValidationError, ValueError):
            stored_revision = max(stored_revision, _parse(plan.model, path.read_bytes()).revision)
        new = RolloutPlan.model_validate(
            {
                **plan.model_dump(),
                "revision": max(stored_revision, plan.revision) + 1,
                "updated_at": time.time(),
            }
        )
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{PLAN_FILE}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(new.model_dump_json(indent=2).encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return new, _fingerprint(path.stat())
    finally:
        os.close(dir_fd)  # releases the lock


class FilePlanStore:
    """A `PlanStore` over `<repository>/<model>/rollout.json` files."""

    def __init__(self, repository: Path, refresh_s: float = 0.5) -> None:
        self.repository = Path(repository)
        self.refresh_s = refresh_s
        self._plans: dict[str, RolloutPlan] = {}
        self._fingerprints: dict[str, Fingerprint] = {}
        self._lock = asyncio.Lock()  # a refresh never applies an older read over a put
        self._task: asyncio.Task[None] | None = None
        self._scan_failed = False
        self._bad: dict[str, str] = {}  # the last error logged per model, so each is logged once

    def get(self, model: str) -> RolloutPlan | None:
        """The cached plan of a model (None: no plan)."""
        return self._plans.get(model)

    def models(self) -> list[str]:
        """Models that have a plan, sorted."""
        return sorted(self._plans)

    async def put(self, plan: RolloutPlan) -> RolloutPlan:
        """Write a plan atomically (revision bumped past the stored one, updated_at now)."""
        check_model_name(plan.model)
        async with self._lock:
            cached = self._plans.get(plan.model)
            cached_revision = cached.revision if cached is not None else 0
            stored, fp = await asyncio.to_thread(_write, self.repository, plan, cached_revision)
            self._plans[plan.model] = stored
            self._fingerprints[plan.model] = fp
        return stored

    async def refresh(self) -> None:
        """Re-read the plan files that changed; forget models whose file is gone.

        A file that cannot be read or parsed is logged once and ignored: the plan cached before
        stays in force.
        """
        async with self._lock:
            found, changed = await asyncio.to_thread(_scan, self.repository, dict(self._fingerprints))
            for model in set(self._fingerprints) - set(found):
                self._fingerprints.pop(model, None)
                if self._plans.pop(model, None) is not None:
                    log.info("rollout plan of %s removed", model)
            for model in set(self._bad) - set(changed):
                del self._bad[model]
            for model, result in changed.items():
                if model in found:
                    self._fingerprints[model] = found[model]  # a corrupt file is not re-read until it changes
                if isinstance(result, RolloutPlan):
                    self._plans[model] = result
                    self._bad.pop(model, None)
                elif self._bad.get(model) != result:
                    self._bad[model] = result
                    kept = self._plans[model].revision if model in self._plans else "none"
                    log.warning(
                        "ignoring the rollout plan file of %s (%s); kept revision: %s", model, result, kept
                    )

    async def start(self) -> None:
        """Read the plans now, then keep refreshing every refresh_s until `stop`."""
        await self._refresh_logged()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="fleetserve-rollout-files")

    async def stop(self) -> None:
        """Stop the background refresh."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self._refresh_logged()
            except Exception:  # a bug must not stop the refresher: the cache would freeze silently
                log.exception("rollout plan refresh failed; retrying")

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except OSError as exc:  # the repository itself went away: keep the cache, say so once
            if not self._scan_failed:
                log.warning("rollout plans not refreshed: %s", exc)
            self._scan_failed = True
        else:
            if self._scan_failed:
                log.info("rollout plans refreshed again from %s", self.repository)
            self._scan_failed = False
