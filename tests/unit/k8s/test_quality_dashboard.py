"""The quality dashboard has a panel for every fleetserve_quality_* metric the monitor exports."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from fleetserve.drift.quality_monitor import QualityAnalyser
from fleetserve.drift.windows import QualityWindows

DASHBOARD = Path(__file__).resolve().parents[3] / "k8s" / "grafana" / "dashboards" / "fleetserve-quality.json"


def _exported() -> set[str]:
    windows = QualityWindows()
    analyser = QualityAnalyser(windows)
    now = time.time_ns()
    windows.add_prediction("digits", "1", "r:0", 3, 0.9, now)
    windows.add_label("r:0", 3, now + 1_000_000)
    analyser.refresh()
    return {family.name for family in analyser.collect()}


def test_every_quality_metric_has_a_panel() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    used = set(re.findall(r"fleetserve_quality_\w+", exprs))
    used = {u.removesuffix("_total") for u in used}
    exported = {n.removesuffix("_total") for n in _exported()}
    assert {
        "fleetserve_quality_accuracy",
        "fleetserve_quality_confusion",
        "fleetserve_quality_f1",
    } <= exported
    assert exported <= used, f"no panel for {sorted(exported - used)}"
    assert all(p["title"] for p in dashboard["panels"])
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
