"""What the continuous-training loop (loadtests/ct_loop.py) measured, and its text form."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Report:
    """What the loop measured."""

    clean_requests: int = 0
    clean_alarm: bool = False  # an alarm during the clean traffic (there must be none)
    drifted_requests_to_alarm: int | None = None
    drifted_requests: int = 0
    requests: int = 0  # every inference request of the loop, evaluation included
    failed_requests: int = 0
    failures: list[str] = field(default_factory=list)
    labels_accepted: int = 0
    labels_lost: int = 0
    v1_clean_test_accuracy: float | None = None
    v1_inverted_test_accuracy: float | None = None
    promoted_version: int | None = None
    promoted_inverted_test_accuracy: float | None = None
    served_after: list[str] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)  # seconds since the first drifted request
    stage_notes: dict[str, str] = field(default_factory=dict)
    v2_history: list[dict[str, Any]] = field(default_factory=list)
    v2_metadata: dict[str, Any] = field(default_factory=dict)
    shadow_compared: float | None = None  # v2's shadow comparisons with v1 (gateway counter)
    shadow_agreement: float | None = None
    guardrails: dict[str, list[str]] = field(default_factory=dict)  # the last verdicts seen per phase
    auto_phase: str | None = None
    auto_message: str = ""
    retrain_exit: int | None = None
    outcome: str = "not run"  # promoted, rolled_back, timed out, ...
    wall_s: float = 0.0
    processes_left: list[str] = field(default_factory=list)
    logs: str = ""

    def ok(self) -> bool:
        """The loop's acceptance: promoted, on time, accurate, nothing failed."""
        return (
            self.outcome == "promoted"
            and self.failed_requests == 0
            and self.promoted_inverted_test_accuracy is not None
            and self.v1_clean_test_accuracy is not None
            and self.promoted_inverted_test_accuracy >= self.v1_clean_test_accuracy - 0.02
        )


def metadata_summary(meta: dict[str, Any]) -> dict[str, Any]:
    """The parts of v2's metadata.json the report shows."""
    keep = ("reason", "parent_version", "production_version", "duration_seconds", "training_seconds")
    summary = {k: meta.get(k) for k in keep if k in meta}
    summary["metrics"] = meta.get("metrics", {})
    rows = meta.get("production_data") or {}
    summary["production_rows"] = {k: rows.get(k) for k in ("rows_read", "train_rows", "evaluation_rows")}
    return summary


def render(report: Report) -> str:
    """The report as text."""
    r = report
    lines = [f"outcome: {r.outcome}  (wall time {r.wall_s:.0f} s)"]
    lines.append(
        f"clean requests: {r.clean_requests}, alarm during clean traffic: {'yes' if r.clean_alarm else 'no'}"
    )
    lines.append(f"drift alarm after {r.drifted_requests_to_alarm} inverted requests")
    lines.append("stages (seconds since the first inverted request):")
    for stage, t in r.stages.items():
        note = f"  [{r.stage_notes[stage]}]" if stage in r.stage_notes else ""
        lines.append(f"  {stage:<18} {t:8.1f}{note}")
    if r.shadow_compared:
        lines.append(
            f"shadow: {r.shadow_compared:.0f} comparisons of v2 with v1, agreement {r.shadow_agreement:.4f}"
        )
    for phase, verdicts in r.guardrails.items():
        lines.append(f"guardrails at {phase} (last seen):")
        lines += [f"  {v}" for v in verdicts]
    if r.v2_metadata:
        m = r.v2_metadata
        lines.append(
            f"v2: reason {m.get('reason')}, parent v{m.get('parent_version')}, trained in "
            f"{m.get('training_seconds', 0):.1f} s (run {m.get('duration_seconds', 0):.1f} s), "
            f"production rows {m.get('production_rows')}"
        )
    acc = {
        "v1 on clean test": r.v1_clean_test_accuracy,
        "v1 on inverted test": r.v1_inverted_test_accuracy,
        f"v{r.promoted_version} (promoted) on inverted test": r.promoted_inverted_test_accuracy,
    }
    lines += [f"accuracy {k}: {v:.4f}" if v is not None else f"accuracy {k}: -" for k, v in acc.items()]
    lines.append(
        f"requests: {r.requests} ({r.drifted_requests} inverted), failed: {r.failed_requests}; "
        f"labels accepted {r.labels_accepted}, lost {r.labels_lost}"
    )
    lines += [f"  failure: {f}" for f in r.failures]
    if r.auto_phase and r.outcome != "promoted":
        lines.append(f"automated rollout: {r.auto_phase}: {r.auto_message}")
    if r.processes_left:
        lines.append(f"processes left running: {', '.join(r.processes_left)}")
    return "\n".join(lines)
