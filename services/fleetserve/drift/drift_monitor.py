"""The drift analyser: sliding windows of item features per model version, scored against the
version's reference profile, an alert per version, and retraining when drift persists.

Each version's window holds its last `window_items` items (count-based; every route, shadow
included). Once it holds `min_items`, it is scored every `evaluate_every` new items
(`scoring.score_window`), so when an alert fires depends only on the records, not on timing.
The alert follows `alerts.AlertState`; its transitions are logged with the number of records
the version had when it fired. When retraining is due (`AlertState.due`, checked after every
evaluation and every refresh) the `Retrainer` runs the configured command, once per episode.
Records of a version without a reference profile are counted, not scored.

Exported (gauges unless noted):

- `fleetserve_drift_score` {model, version, feature, test}: the last evaluation's scores
  (test psi / ks for input features and the confidence, psi / js for `class`, drop for the
  confidence), `fleetserve_drift_ks_pvalue` {model, version, feature}
- `fleetserve_drift_alert` {model, version}: 1 while the alert is up
- `fleetserve_drift_window_items` {model, version}; `fleetserve_drift_threshold` {test}
- counters `fleetserve_drift_records_total`, `fleetserve_drift_evaluations_total`,
  `fleetserve_drift_alerts_total` (alerts raised) {model, version},
  `fleetserve_drift_retrain_triggers_total` {model, version, outcome: started, failed,
  no_command}, `fleetserve_drift_unreferenced_records_total` {model, version};
  gauge `fleetserve_drift_retrain_running` {model}
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from fleetserve.common.clock import Clock, SystemClock
from fleetserve.wire import fleet_pb2

from .alerts import AlertPolicy, AlertState
from .features import ItemFeatures, item_features
from .references import ReferenceStore
from .retrain import FINAL, Retrainer
from .scoring import Score, Thresholds, WindowScores, score_window

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (model, version)
MV = ["model", "version"]
TESTS = ("psi", "ks", "js", "drop")


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    """The size of each version's window and how often it is scored."""

    window_items: int = 300
    min_items: int = 250
    evaluate_every: int = 10

    def __post_init__(self) -> None:
        if min(self.window_items, self.min_items, self.evaluate_every) < 1:
            raise ValueError("window_items, min_items and evaluate_every must be at least 1")
        if self.min_items > self.window_items:
            raise ValueError(f"min_items ({self.min_items}) exceeds window_items ({self.window_items})")


@dataclass(slots=True)
class _Version:
    items: deque[ItemFeatures]
    alert: AlertState
    records: int = 0
    since_evaluation: int = 0
    evaluations: int = 0
    scores: WindowScores | None = None
    over: list[Score] = field(default_factory=list)
    waiting: str = ""  # the last not-settling retrain outcome logged (running, cooldown)


@dataclass(frozen=True, slots=True)
class DriftSnapshot:
    """One version's drift figures at the last refresh."""

    model: str
    version: str
    records: int
    window_items: int
    evaluations: int
    alert: bool
    alerts: int
    scores: WindowScores | None
    ks_pvalues: dict[str, float]


def _describe(over: Sequence[Score], thresholds: Thresholds) -> str:
    return ", ".join(f"{s.feature} {s.test}={s.value:.3f} > {thresholds.limit(s.test):g}" for s in over)


class DriftAnalyser:
    """An `Analyser` of input and output drift against each version's reference profile."""

    def __init__(
        self,
        references: ReferenceStore,
        window: WindowPolicy | None = None,
        thresholds: Thresholds | None = None,
        policy: AlertPolicy | None = None,
        retrainer: Retrainer | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.references = references
        self.window = window or WindowPolicy()
        self.thresholds = thresholds or Thresholds()
        self.policy = policy or AlertPolicy()
        self.clock: Clock = clock or SystemClock()
        self.retrainer = retrainer or Retrainer(None, clock=self.clock)
        self._versions: dict[Key, _Version] = {}
        self.unreferenced: dict[Key, int] = {}
        self._snapshots: list[DriftSnapshot] = []
        self._pvalues: dict[Key, tuple[WindowScores, dict[str, float]]] = {}  # of the scores exported

    def on_predictions(self, records: Sequence[fleet_pb2.PredictionRecord]) -> None:
        """Take prediction records into their version's window, scoring it when due."""
        for r in records:
            key = (r.model, r.version)
            reference = self.references.get(*key)
            if reference is None:
                self.unreferenced[key] = self.unreferenced.get(key, 0) + 1
                continue
            v = self._versions.get(key)
            if v is None:
                v = self._versions[key] = _Version(
                    deque(maxlen=self.window.window_items), AlertState(self.policy)
                )
            v.items.append(item_features(r))
            v.records += 1
            v.since_evaluation += 1
            if len(v.items) >= self.window.min_items and v.since_evaluation >= self.window.evaluate_every:
                self._evaluate(key, v, score_window(v.items, reference, self.thresholds.eps))

    def on_feedback(self, records: Sequence[fleet_pb2.FeedbackRecord]) -> None:
        """Labels play no part in drift."""

    def _evaluate(self, key: Key, v: _Version, scores: WindowScores) -> None:
        v.since_evaluation = 0
        v.evaluations += 1
        v.scores = scores
        t = self.thresholds
        v.over = scores.over(t)
        now = self.clock.monotonic()
        transition = v.alert.update(bool(v.over), not scores.over(t, self.policy.clear_factor), now)
        model, version = key
        if transition == "raised":
            log.warning(
                "drift alert raised for %s v%s after %d records (window %d): %s",
                model,
                version,
                v.records,
                len(v.items),
                _describe(v.over, t),
            )
        elif transition == "cleared":
            log.info(
                "drift alert cleared for %s v%s after %d records: highest score %.3f",
                model,
                version,
                v.records,
                scores.highest(),
            )
        self._retrain_if_due(key, v, now)

    def _retrain_if_due(self, key: Key, v: _Version, now: float) -> None:
        if v.alert.retrained and v.alert.active and self.retrainer.failed(key[0]):
            # the episode's retraining failed while drift persists: ask again (after retry_s)
            v.alert.retrained = False
        if not v.alert.due(now):
            return
        features = [f"{s.feature}:{s.test}" for s in v.over]
        result = self.retrainer.trigger(*key, features)
        if result.outcome in FINAL:
            v.alert.mark_retrained()
            v.waiting = ""
            if result.outcome != "started":  # started and failed are logged by the retrainer
                log.warning("drift persists on %s v%s (%s): %s", *key, ", ".join(features), result.detail)
        elif result.outcome != v.waiting:
            v.waiting = result.outcome
            log.info("drift persists on %s v%s; retraining waits: %s", *key, result.detail)

    def refresh(self) -> None:
        """Check the time-based retraining condition, reap commands, snapshot the figures."""
        now = self.clock.monotonic()
        self.retrainer.poll()
        for key, v in self._versions.items():
            self._retrain_if_due(key, v, now)
        self._snapshots = [self._snapshot(key, v) for key, v in sorted(self._versions.items())]

    def _snapshot(self, key: Key, v: _Version) -> DriftSnapshot:
        pvalues: dict[str, float] = {}
        if v.scores is not None:  # p-values cost scipy time: once per new evaluation exported
            cached = self._pvalues.get(key)
            if cached is None or cached[0] is not v.scores:
                cached = self._pvalues[key] = (v.scores, v.scores.ks_pvalues())
            pvalues = cached[1]
        return DriftSnapshot(
            model=key[0],
            version=key[1],
            records=v.records,
            window_items=len(v.items),
            evaluations=v.evaluations,
            alert=v.alert.active,
            alerts=v.alert.episodes,
            scores=v.scores,
            ks_pvalues=pvalues,
        )

    @property
    def snapshots(self) -> list[DriftSnapshot]:
        """The figures of the last refresh, one per version."""
        return list(self._snapshots)

    def collect(self) -> Iterable[Metric]:
        """The `fleetserve_drift_*` families of the last refresh."""
        score = GaugeMetricFamily(
            "fleetserve_drift_score",
            "Drift score of a feature by test, last evaluation",
            labels=[*MV, "feature", "test"],
        )
        pvalue = GaugeMetricFamily(
            "fleetserve_drift_ks_pvalue",
            "Kolmogorov-Smirnov p-value of a feature, last evaluation",
            labels=[*MV, "feature"],
        )
        alert = GaugeMetricFamily(
            "fleetserve_drift_alert", "1 while the version's drift alert is up", labels=MV
        )
        window = GaugeMetricFamily(
            "fleetserve_drift_window_items", "Items in the version's drift window", labels=MV
        )
        records = CounterMetricFamily(
            "fleetserve_drift_records", "Records taken into drift windows", labels=MV
        )
        evaluations = CounterMetricFamily(
            "fleetserve_drift_evaluations", "Drift window evaluations", labels=MV
        )
        alerts = CounterMetricFamily("fleetserve_drift_alerts", "Drift alerts raised", labels=MV)
        for s in self._snapshots:
            mv = [s.model, s.version]
            alert.add_metric(mv, 1.0 if s.alert else 0.0)
            window.add_metric(mv, float(s.window_items))
            records.add_metric(mv, float(s.records))
            evaluations.add_metric(mv, float(s.evaluations))
            alerts.add_metric(mv, float(s.alerts))
            if s.scores is None:
                continue
            for sc in s.scores.scores:
                score.add_metric([*mv, sc.feature, sc.test], sc.value)
            for feature, p in s.ks_pvalues.items():
                pvalue.add_metric([*mv, feature], p)
        yield from (score, pvalue, alert, window, records, evaluations, alerts)
        yield from self._other_metrics()

    def _other_metrics(self) -> Iterable[Metric]:
        threshold = GaugeMetricFamily(
            "fleetserve_drift_threshold", "A drift test's threshold", labels=["test"]
        )
        for test in TESTS:
            threshold.add_metric([test], self.thresholds.limit(test))
        triggers = CounterMetricFamily(
            "fleetserve_drift_retrain_triggers",
            "Retraining triggered by drift, by outcome",
            labels=[*MV, "outcome"],
        )
        for (model, version, outcome), n in sorted(self.retrainer.outcomes.items()):
            triggers.add_metric([model, version, outcome], float(n))
        running = GaugeMetricFamily(
            "fleetserve_drift_retrain_running", "1 while a retrain command runs", labels=["model"]
        )
        for model in sorted(self.retrainer.running()):
            running.add_metric([model], 1.0)
        unreferenced = CounterMetricFamily(
            "fleetserve_drift_unreferenced_records",
            "Records of versions without a reference profile",
            labels=MV,
        )
        for (model, version), n in sorted(self.unreferenced.items()):
            unreferenced.add_metric([model, version], float(n))
        yield from (threshold, triggers, running, unreferenced)
