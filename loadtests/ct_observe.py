"""What the continuous-training loop reads back: the drift monitor's metrics (alert, records
taken, retraining) and the rollout controller's status (versions, plan history, automated run),
and the stage times it notes from them.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _get(url: str, timeout_s: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        return bytes(r.read())


def scrape(url: str) -> Samples:
    """Every sample of a /metrics page, keyed by name and sorted labels."""
    text = _get(url).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    """One sample's value, or None."""
    return samples.get((name, tuple(sorted(labels.items()))))


class Monitor:
    """The drift monitor's metrics for the model."""

    def __init__(self, metrics_url: str, model: str = "digits") -> None:
        self.url, self.model = metrics_url, model
        self.samples: Samples = {}

    def refresh(self) -> Monitor:
        """Read the metrics again."""
        self.samples = scrape(self.url)
        return self

    def records(self, version: str) -> float:
        """Items the monitor has taken into the version's window so far."""
        return (
            sample(self.samples, "fleetserve_drift_records_total", model=self.model, version=version) or 0.0
        )

    def alert(self, version: str) -> bool:
        """Whether the version's drift alert is raised."""
        return sample(self.samples, "fleetserve_drift_alert", model=self.model, version=version) == 1.0

    def retrain_started(self, version: str) -> bool:
        """Whether the retrain command was started for the version."""
        name = "fleetserve_drift_retrain_triggers_total"
        return (sample(self.samples, name, model=self.model, version=version, outcome="started") or 0) >= 1

    def retraining(self) -> bool:
        """Whether a retrain command of the model runs now."""
        return sample(self.samples, "fleetserve_drift_retrain_running", model=self.model) == 1.0

    def wait_records(self, version: str, n: int, within_s: float = 60.0) -> None:
        """Until the monitor has taken `n` records of the version (and refreshed its figures)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.refresh().records(version) >= n:
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"the drift monitor took {self.records(version):.0f} of {n} records in {within_s:g} s"
        )


class Controller:
    """The rollout controller's view of the model."""

    def __init__(self, base_url: str, model: str = "digits") -> None:
        self.base, self.model = base_url, model

    def status(self) -> dict[str, Any]:
        """GET /v1/models/<model>: plan, versions, automated run."""
        return dict(json.loads(_get(f"{self.base}/v1/models/{self.model}")))


@dataclass
class Stages:
    """Wall-clock times (Unix seconds) of the loop's stages, noted as they are observed."""

    times: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def mark(self, stage: str, at: float | None = None, note: str = "") -> None:
        """Note a stage the first time it is seen."""
        if stage not in self.times:
            self.times[stage] = time.time() if at is None else at
            if note:
                self.notes[stage] = note

    def seen(self, stage: str) -> bool:
        """Whether the stage was noted."""
        return stage in self.times

    def from_controller(self, status: dict[str, Any], version: int) -> None:
        """Publication (the version folder's time) and the plan's transitions of `version`."""
        for row in status.get("versions") or []:
            if row.get("version") == version and row.get("published_at"):
                self.mark("v2_published", float(row["published_at"]))
        history = (status.get("plan") or {}).get("history") or []
        for t in history:
            if t.get("version") != version:
                continue
            to, detail = t.get("to_stage"), t.get("detail") or {}
            if to == "shadow":
                self.mark("shadow", float(t["time"]), f"by {t.get('actor')} ({t.get('reason')})")
            elif to == "canary":
                weight = detail.get("weight")
                self.mark(
                    f"canary_{weight:g}" if isinstance(weight, int | float) else "canary", float(t["time"])
                )
            elif to == "production":
                self.mark("promoted", float(t["time"]), f"by {t.get('actor')} ({t.get('reason')})")
            elif to == "rolled_back":
                self.mark("rolled_back", float(t["time"]), f"{t.get('reason')}: {detail.get('message', '')}")


def prometheus_value(base_url: str, query: str) -> float | None:
    """The value of an instant PromQL query with one result (None when it has none)."""
    answer = json.loads(_get(f"{base_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"))
    result = answer.get("data", {}).get("result") or []
    return float(result[0]["value"][1]) if result else None


def reachable(url: str) -> bool:
    """Whether GET url answers at all."""
    try:
        _get(url, 2.0)
    except (urllib.error.URLError, OSError):
        return False
    return True
