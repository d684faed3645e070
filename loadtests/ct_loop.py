"""The continuous-training loop of issue 6, end to end, with no manual step between the drift
and the promotion.

In a temporary folder, on free loopback ports: Redis, `fleetserve serve` on a copy of digits v1
(repository polled, every prediction logged with its input tensor), the predlog writer, the
drift / quality monitor (its retrain command: `fleetserve train --reason drift --register
CONTROLLER --min-production-rows N`, which waits for the labelled rows, pins v1 as production
before it publishes v2, and hands v2 over without judging shadow agreement), the rollout
controller (plans in Redis, guardrails from Prometheus) and Prometheus. A bounded client loop sends:

1. clean digits (train + validation splits), and v1's clean test split for its accuracy;
2. inverted digits of the same splits, `label_share` of them labelled through `POST /v2/feedback`
   a little after each prediction, until the drift alarm (counted in steps of 10, with the
   monitor caught up), then v1's accuracy on the inverted test split (explicit version 1);
3. more inverted digits, labelled the same way, while the monitor starts the retraining, the
   trainer publishes v2 and hands it to the controller, and the controller shadows it, steps
   the canary and promotes it (or rolls it back) by itself;
4. once promoted: the accuracy of what the gateway serves on the inverted test split (never
   sent as traffic before).

It reports the requests to the alarm, the time of each stage (from the monitor's metrics and
the controller's plan history), the accuracies, and the failed requests (anything but a 200).
Every process is stopped by its pid at the end.

Usage::

    python -m loadtests.ct_loop [--short] [--json OUT] [--keep DIR]

`--short` is the version the e2e test runs (fewer epochs, short dwell); `make demo` the full one.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fleetserve.trainer import data as digits_data
from fleetserve.trainer.augment import invert
from loadtests import ct_parts as parts
from loadtests.bench import drop_latency_slo
from loadtests.ct_config import FULL, SHORT, LoopConfig
from loadtests.ct_observe import Controller, Monitor, Stages, prometheus_value
from loadtests.ct_report import Report, metadata_summary, render
from loadtests.ct_traffic import Client

__all__ = ["FULL", "SHORT", "Loop", "LoopConfig", "LoopFailed", "Report", "main", "render", "run"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DIGITS = PROJECT_ROOT / "model_repository" / "digits"
MODEL = "digits"
ALARM_STEP = 10  # drifted requests between two looks at the alarm
CANDIDATE = 2  # the version the trainer publishes next to v1


class LoopFailed(RuntimeError):
    """The loop could not go on (a part died, no alarm came)."""


def repository_with_v1(root: Path) -> Path:
    """A model repository holding digits v1 only, without the model's latency SLO.

    The shipped 10 ms `latency_slo_ms` is for a server with the cores to itself. Here the server
    shares them with the trainer, Prometheus, Redis and the client, and a request that waited
    10 ms for a core before it reached the batcher is refused (503, "the deadline passed"): load
    shedding, which this loop would count as a failed request of the rollout. Without the SLO a
    failed request is one the rollout lost.
    """
    repo = root / "models"
    target = repo / MODEL
    target.mkdir(parents=True)
    for name in ("config.pbtxt", "labels.txt"):
        shutil.copy2(DIGITS / name, target / name)
    drop_latency_slo(target / "config.pbtxt")
    shutil.copytree(DIGITS / "1", target / "1")
    return repo


def retrain_command(repo: Path, predlog: Path, controller: str, config: LoopConfig) -> list[str]:
    """The drift monitor's retrain command: the trainer, which waits for the labelled rows (they
    arrive after the predictions, through feedback), then trains, gates and registers."""
    return parts.fleetserve(
        "train", "--model", "{model}", "--model-repository", str(repo), "--production-data", str(predlog),
        "--reason", "drift", "--register", controller, "--epochs", str(config.epochs),
        "--threads", str(config.threads), "--no-progress",
        "--min-production-rows", str(config.min_rows), "--wait-for-rows-s", str(config.timeout_s),
    )  # fmt: skip


class Loop:
    """One run of the loop in `work` (see the module docstring)."""

    def __init__(self, config: LoopConfig, work: Path, out: Any = print) -> None:
        self.config, self.work, self.say = config, work, out
        self.report = Report()
        self.stages = Stages()
        self.ports = parts.Ports.free()
        self.repo = repository_with_v1(work)
        self.predlog = work / "predlog"
        self.parts: list[parts.Part] = []
        data = digits_data.load(seed=0)
        self.pool_images = np.concatenate([data.train.images, data.validation.images])
        self.pool_labels = np.concatenate([data.train.labels, data.validation.labels])
        self.test_images, self.test_labels = data.test.images, data.test.labels
        self.rng = np.random.default_rng(0)
        self.client = Client(parts.HOST, self.ports.http, config.label_delay_s)
        self.controller = Controller(parts.url(self.ports.controller))
        self.monitor = Monitor(parts.url(self.ports.drift, "/metrics"))
        self._order: list[int] = []
        self._next_send = 0.0
        self._drift_t0 = 0.0
        self._items_logged = 0  # items v1 answered before the drifted traffic (clean, clean test)

    # --- parts -------------------------------------------------------------------------------

    def start(self) -> None:
        """Every part, ready (no plan yet: the trainer pins v1 as production before publishing v2)."""
        p, w, c = self.ports, self.work, self.config
        redis_url = f"redis://{parts.HOST}:{p.redis}/0"
        controller = parts.url(p.controller)
        drift = parts.drift_part(
            w, p, self.repo, redis_url, retrain_command(self.repo, self.predlog, controller, c),
            c.retrain_after_s, refresh_s=0.2,
        )  # fmt: skip
        order = [
            parts.redis_part(w, p),
            parts.gateway_part(w, p, self.repo, redis_url, poll_s=0.5),
            parts.predlog_part(w, p, redis_url, self.predlog, flush_s=1.0),
            drift,
            parts.controller_part(w, p, self.repo, redis_url, c.auto, c.guardrails),
            parts.prometheus_part(w, p),
        ]
        for part in order:
            self.parts.append(part)
            part.start()
            self.say(f"  started {part.name} (pid {part.pid})")

    def stop(self) -> None:
        """Every part, in reverse order, by its pid; notes any that would not end."""
        for part in reversed(self.parts):
            part.stop()
            if part.alive():
                self.report.processes_left.append(f"{part.name} (pid {part.pid})")

    def check_alive(self) -> None:
        """LoopFailed naming a part that died."""
        for part in self.parts:
            if not part.alive():
                code = part.proc.returncode if part.proc else None
                raise LoopFailed(f"{part.name} exited with {code}:\n{part.log_tail()}")

    # --- traffic -----------------------------------------------------------------------------

    def _pace(self) -> None:
        now = time.monotonic()
        if now < self._next_send:
            time.sleep(self._next_send - now)
        self._next_send = max(now, self._next_send) + 1.0 / self.config.rate

    def _drifted(self) -> tuple[np.ndarray, int]:
        """The next inverted digit of the train + validation splits and its label (each once
        per pass, in a fresh order each pass)."""
        if not self._order:
            self._order = [int(i) for i in self.rng.permutation(len(self.pool_images))]
        i = self._order.pop()
        return invert(self.pool_images[i : i + 1]), int(self.pool_labels[i])

    def send_drifted(self) -> None:
        """One inverted digit; its label later, for `label_share` of them."""
        self._pace()
        image, label = self._drifted()
        answer = self.client.infer(image)
        self.report.drifted_requests += 1
        if answer is not None and self.rng.random() < self.config.label_share:
            self.client.label_later(answer.request_id, label)
        self.client.send_due_labels()

    def clean_phase(self) -> None:
        """Clean digits, then v1's clean test accuracy; no alarm may come."""
        c = self.config
        order = self.rng.permutation(len(self.pool_images))
        for n in range(c.clean_requests):
            self._pace()
            i = order[n % len(order)]
            self.client.infer(self.pool_images[i : i + 1])
        self.report.clean_requests = c.clean_requests
        acc, versions = self.client.accuracy(self.test_images, self.test_labels)
        if versions != {"1"}:
            raise LoopFailed(f"clean test digits were answered by versions {sorted(versions)}, not 1")
        self.report.v1_clean_test_accuracy = acc
        self._items_logged = c.clean_requests + len(self.test_images)
        self.monitor.wait_records("1", self._items_logged)
        self.report.clean_alarm = self.monitor.alert("1")
        self.say(
            f"  {c.clean_requests} clean requests; v1 clean test accuracy {acc:.4f}; "
            f"alarm: {self.report.clean_alarm}"
        )

    def until_alarm(self) -> None:
        """Inverted digits in steps of ALARM_STEP until the monitor, caught up, raises the alarm."""
        self._drift_t0 = time.time()
        self.stages.mark("drift_start", self._drift_t0)
        while self.report.drifted_requests < self.config.max_requests_to_alarm:
            for _ in range(ALARM_STEP):
                self.send_drifted()
            self.monitor.wait_records("1", self._items_logged + self.report.drifted_requests)
            if self.monitor.alert("1"):
                self.report.drifted_requests_to_alarm = self.report.drifted_requests
                self.stages.mark("alarm")
                break
        else:
            raise LoopFailed(f"no drift alarm within {self.config.max_requests_to_alarm} inverted requests")
        acc, _ = self.client.accuracy(invert(self.test_images), self.test_labels, version="1")
        self.report.v1_inverted_test_accuracy = acc
        self.say(
            f"  drift alarm after {self.report.drifted_requests_to_alarm} inverted requests; "
            f"v1 inverted test accuracy {acc:.4f}"
        )

    def until_promoted(self) -> None:
        """Inverted traffic while the loop retrains and rolls out by itself; stops at the
        promotion, a rollback, a refused candidate or the timeout."""
        deadline = time.monotonic() + self.config.timeout_s - (time.time() - self._drift_t0)
        next_look = 0.0
        was_retraining = False
        while time.monotonic() < deadline:
            self.send_drifted()
            if time.monotonic() < next_look:
                continue
            next_look = time.monotonic() + self.config.poll_s
            self.check_alive()
            self.monitor.refresh()
            if self.monitor.retrain_started("1"):
                self.stages.mark("retrain_started")
            if self.monitor.retraining():
                was_retraining = True
            elif was_retraining or (self.stages.seen("retrain_started") and self.stages.seen("v2_published")):
                self.stages.mark("retrain_finished")
            status = self.controller.status()
            self.stages.from_controller(status, CANDIDATE)
            auto = status.get("auto") or {}
            self._note_guardrails(auto)
            if self.stages.seen("promoted"):
                self.report.outcome = "promoted"
                return
            if auto.get("version") == CANDIDATE and auto.get("phase") in (
                "rolled_back",
                "cancelled",
                "failed",
            ):
                self.report.outcome = str(auto["phase"])
                return
            if self.stages.seen("retrain_finished") and not self.stages.seen("v2_published"):
                self.report.outcome = "not published (the trainer refused or failed)"
                return
        self.report.outcome = "timed out"

    def _note_guardrails(self, auto: dict[str, Any]) -> None:
        """The automated run's phase, message and latest guardrail verdicts (kept per phase)."""
        self.report.auto_phase, self.report.auto_message = auto.get("phase"), auto.get("message", "")
        phase, weight, results = auto.get("phase"), auto.get("weight"), auto.get("results") or []
        if auto.get("version") != CANDIDATE or not results or phase not in ("shadow", "canary"):
            return
        if not any(r["status"] in ("pass", "breach") for r in results):
            return  # still waiting for evidence (the verdicts that let it go on come right before)
        key = f"canary_{weight:g}" if phase == "canary" and isinstance(weight, int | float) else str(phase)
        self.report.guardrails[key] = [f"{r['name']} {r['status']}: {r['message']}" for r in results]

    def after(self) -> None:
        """The labels still held back, and what the gateway serves on the inverted test split."""
        self.client.send_due_labels(flush=True)
        status = self.controller.status()
        self.stages.from_controller(status, CANDIDATE)
        plan = status.get("plan") or {}
        self.report.v2_history = [t for t in plan.get("history") or [] if t.get("version") == CANDIDATE]
        for row in status.get("versions") or []:
            if row.get("version") == CANDIDATE:
                self.report.v2_metadata = metadata_summary(row.get("metadata") or {})
        self._shadow_figures()
        if self.report.outcome != "promoted":
            return
        self.report.promoted_version = plan.get("production")
        deadline = time.monotonic() + 10  # the gateway reads the new plan within its refresh
        acc, versions = self.client.accuracy(invert(self.test_images), self.test_labels)
        while versions != {str(self.report.promoted_version)} and time.monotonic() < deadline:
            time.sleep(0.5)
            acc, versions = self.client.accuracy(invert(self.test_images), self.test_labels)
        self.report.promoted_inverted_test_accuracy = acc
        self.report.served_after = sorted(versions)

    def _shadow_figures(self) -> None:
        """v2's shadow comparisons and agreement with v1, from Prometheus."""
        base = parts.url(self.ports.prometheus)
        series = f'fleetserve_shadow_compared_total{{model="{MODEL}",version="{CANDIDATE}"'
        compared = prometheus_value(base, f"sum({series}}})")
        agreed = prometheus_value(base, f'sum({series},agree="true"}})')
        self.report.shadow_compared = compared
        if compared:
            self.report.shadow_agreement = (agreed or 0.0) / compared

    # --- the whole run -----------------------------------------------------------------------

    def run(self) -> Report:
        """Start, drive, measure, stop; the report (also when a stage fails)."""
        started = time.monotonic()
        try:
            self.say("== starting the parts")
            self.start()
            self.say("== clean traffic")
            self.clean_phase()
            self.say("== drifted traffic (inverted digits)")
            self.until_alarm()
            self.say("== retraining and rollout, with inverted traffic going on")
            self.until_promoted()
            self.after()
        except (LoopFailed, parts.PartFailed, TimeoutError, OSError) as exc:
            self.report.outcome = f"failed: {exc}"
        finally:
            self._wait_retraining()
            self.stop()
            self._finish(started)
        return self.report

    def _wait_retraining(self, within_s: float = 60.0) -> None:
        """Before stopping: let a running retrain command end (it would be stopped with the monitor)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            try:
                if not self.monitor.refresh().retraining():
                    return
            except OSError:
                return
            time.sleep(0.5)

    def _finish(self, started: float) -> None:
        r, counts = self.report, self.client.counts
        self.client.close()
        r.requests, r.failed_requests, r.failures = counts.requests, counts.failed, counts.failures
        r.labels_accepted, r.labels_lost = counts.labels_accepted, counts.labels_lost
        t0 = self._drift_t0 or time.time()
        r.stages = {k: round(v - t0, 2) for k, v in sorted(self.stages.times.items(), key=lambda kv: kv[1])}
        r.stage_notes = dict(self.stages.notes)
        r.wall_s = round(time.monotonic() - started, 1)
        drift_log = self.work / "logs" / "drift.log"
        if drift_log.exists():
            exits = re.findall(
                r"the command exited with status (-?\d+)", drift_log.read_text(errors="replace")
            )
            r.retrain_exit = int(exits[-1]) if exits else None
        if not r.ok():
            r.logs = "\n".join(f"---- {p.name}\n{p.log_tail(2500)}" for p in self.parts)


def run(config: LoopConfig, work: Path | None = None, out: Any = print) -> Report:
    """Run the loop in `work` (a new temporary folder, removed afterwards, when None)."""
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
        return Loop(config, work, out).run()
    with tempfile.TemporaryDirectory(prefix="fleetserve-ct-") as tmp:
        return Loop(config, Path(tmp), out).run()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m loadtests.ct_loop [--short] [--json OUT] [--keep DIR]`; 0 when the loop held."""
    p = argparse.ArgumentParser(prog="loadtests.ct_loop", description=__doc__.split("\n\n")[0])
    p.add_argument("--short", action="store_true", help="the short version (the e2e test's)")
    p.add_argument("--json", type=Path, help="write the report as JSON here")
    p.add_argument("--keep", type=Path, help="work in this folder and keep it (logs, Parquet, models)")
    args = p.parse_args(argv)
    try:
        report = run(SHORT if args.short else FULL, args.keep)
    except parts.MissingProgram as exc:
        print(f"ct_loop: {exc}", file=sys.stderr)
        return 2
    print(render(report))
    if report.logs:
        print(report.logs, file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2))
    return 0 if report.ok() else 1


if __name__ == "__main__":
    raise SystemExit(main())
