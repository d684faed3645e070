"""Triggering retraining when drift persists: a configured command, run without a shell.

The command is an argv (from `parse_command`: a JSON list, or a string split like a shell
would split words, with no shell ever run), e.g.
`fleetserve train --model {model} --production-data data/predlog --reason drift`;
`{model}` and `{version}` in its words are replaced by the drifting version's. It runs with
the monitor's environment plus `FLEETSERVE_DRIFT_MODEL`, `FLEETSERVE_DRIFT_VERSION`,
`FLEETSERVE_DRIFT_FEATURES` (the tests over threshold, comma-separated `feature:test`) and
`FLEETSERVE_DRIFT_REASON=drift`; its output goes to the monitor's.

Per model, at most one command runs at a time, and none starts within `cooldown_s` of the
last start: the caller asks again later. A command that exited non-zero (the trainer's gate
refused, too few labels came, the controller was down) shortens that to `retry_s`, and
`failed(model)` tells the caller the episode's retraining may be asked for again. The settling
outcomes are counted and logged.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fleetserve.common.clock import Clock, SystemClock

log = logging.getLogger(__name__)

STARTED, RUNNING, COOLDOWN, FAILED, NO_COMMAND = "started", "running", "cooldown", "failed", "no_command"
FINAL = (STARTED, FAILED, NO_COMMAND)  # outcomes that settle an episode's retraining (counted)
Popen = Callable[..., Any]  # subprocess.Popen's signature


def parse_command(text: str | Sequence[str] | None) -> list[str] | None:
    """A command as an argv: a JSON list of strings, or words split as a POSIX shell splits
    them (no shell runs it); None or blank: no command. ValueError when malformed."""
    if text is None:
        return None
    if not isinstance(text, str):
        argv = [str(word) for word in text]
    elif text.strip().startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"retrain command is not a JSON list: {exc}") from None
        if not isinstance(parsed, list) or not all(isinstance(w, str) for w in parsed):
            raise ValueError("a JSON retrain command must be a list of strings")
        argv = parsed
    else:
        argv = shlex.split(text)
    return argv or None


@dataclass(frozen=True, slots=True)
class Trigger:
    """What became of one request to retrain."""

    model: str
    version: str
    outcome: str  # started, running, cooldown, failed, no_command
    detail: str = ""


class Retrainer:
    """Runs the retrain command for a drifting version (module docstring)."""

    def __init__(
        self,
        command: Sequence[str] | None,
        cooldown_s: float = 3600.0,
        clock: Clock | None = None,
        popen: Popen = subprocess.Popen,
        retry_s: float = 300.0,
    ) -> None:
        self.command = list(command) if command else None
        self.cooldown_s = cooldown_s
        self.retry_s = retry_s
        self._failed: dict[str, bool] = {}  # model -> its last command exited non-zero
        self.clock: Clock = clock or SystemClock()
        self._popen = popen
        self._running: dict[str, tuple[str, Any]] = {}  # model -> (version, process)
        self._last_start: dict[str, float] = {}
        self.outcomes: dict[tuple[str, str, str], int] = {}  # (model, version, final outcome) -> count
        self.exits: list[tuple[str, str, int]] = []  # (model, version, exit status), in order

    def trigger(self, model: str, version: str, features: Sequence[str]) -> Trigger:
        """Start the command for (model, version) unless one runs, the cooldown holds, or
        there is no command; the outcomes in FINAL settle the caller's episode, the others
        (running, cooldown) mean: ask again later."""
        self.poll()
        now = self.clock.monotonic()
        if self.command is None:
            result = Trigger(model, version, NO_COMMAND, "no retrain command configured")
        elif model in self._running:
            result = Trigger(model, version, RUNNING, f"v{self._running[model][0]}'s retraining still runs")
        elif model in self._last_start and now - self._last_start[model] < self._cooldown(model):
            left = self._cooldown(model) - (now - self._last_start[model])
            kind = "retry after a failed retraining" if self._failed.get(model) else "cooldown"
            result = Trigger(model, version, COOLDOWN, f"{kind}: {left:.0f} s left")
        else:
            result = self._start(model, version, features, now)
        if result.outcome in FINAL:
            key = (model, version, result.outcome)
            self.outcomes[key] = self.outcomes.get(key, 0) + 1
        return result

    def _start(self, model: str, version: str, features: Sequence[str], now: float) -> Trigger:
        assert self.command is not None
        argv = [w.replace("{model}", model).replace("{version}", version) for w in self.command]
        env = {
            **os.environ,
            "FLEETSERVE_DRIFT_MODEL": model,
            "FLEETSERVE_DRIFT_VERSION": version,
            "FLEETSERVE_DRIFT_FEATURES": ",".join(features),
            "FLEETSERVE_DRIFT_REASON": "drift",
        }
        try:
            proc = self._popen(argv, env=env, stdin=subprocess.DEVNULL)
        except (OSError, ValueError) as exc:
            log.error("retraining %s v%s: cannot run %s: %s", model, version, shlex.join(argv), exc)
            return Trigger(model, version, FAILED, str(exc))
        self._running[model] = (version, proc)
        self._last_start[model] = now
        self._failed[model] = False
        log.warning(
            "retraining %s v%s (drift: %s): started %s", model, version, ", ".join(features), shlex.join(argv)
        )
        return Trigger(model, version, STARTED, shlex.join(argv))

    def poll(self) -> None:
        """Reap finished commands, logging their exit status."""
        for model, (version, proc) in list(self._running.items()):
            code = proc.poll()
            if code is None:
                continue
            del self._running[model]
            self.exits.append((model, version, int(code)))
            self._failed[model] = code != 0
            level = logging.INFO if code == 0 else logging.ERROR
            log.log(level, "retraining %s v%s: the command exited with status %s", model, version, code)

    def _cooldown(self, model: str) -> float:
        return min(self.retry_s, self.cooldown_s) if self._failed.get(model) else self.cooldown_s

    def failed(self, model: str) -> bool:
        """Whether the model's last retrain command exited non-zero (and none runs now)."""
        return self._failed.get(model, False) and model not in self._running

    def running(self) -> dict[str, str]:
        """model -> version of the commands running now."""
        return {model: version for model, (version, _) in self._running.items()}
