"""The quality analyser: prediction and feedback records into `QualityWindows`, and the
windows' metrics as `fleetserve_quality_*` families.

Exported (gauges unless noted; `class`, `true` and `predicted` are class indices):

- `fleetserve_quality_accuracy`, `fleetserve_quality_ece` {model, version} (once labelled)
- `fleetserve_quality_labelled_ratio` {model, version}: labelled / predicted items in the window
- `fleetserve_quality_labelled_items`, `fleetserve_quality_predicted_items` {model, version}
- `fleetserve_quality_precision`, `_recall`, `_f1` {model, version, class}
- `fleetserve_quality_confusion` {model, version, true, predicted}: items in the window
- `fleetserve_quality_label_delay_seconds` {model, version, quantile="0.5"|"0.95"} and
  `fleetserve_quality_label_delay_mean_seconds` {model, version}
- counters `fleetserve_quality_unknown_labels_total`, `fleetserve_quality_replaced_labels_total`,
  `fleetserve_quality_evicted_predictions_total`, `fleetserve_quality_unscored_records_total`
  (predictions without a top class); gauges `fleetserve_quality_pending_predictions`,
  `fleetserve_quality_waiting_labels`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from fleetserve.wire import fleet_pb2

from .windows import JoinCounts, QualitySnapshot, QualityWindows

MV = ["model", "version"]


def _gauge(name: str, doc: str, labels: list[str] = MV) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class QualityAnalyser:
    """An `Analyser` of model quality over labelled predictions."""

    def __init__(self, windows: QualityWindows) -> None:
        self.windows = windows
        self.unscored = 0
        self._snapshots: list[QualitySnapshot] = []
        self._counts: JoinCounts = windows.counts()

    def on_predictions(self, records: Sequence[fleet_pb2.PredictionRecord]) -> None:
        """Hold each scored item until its label arrives."""
        for r in records:
            if not r.top:
                self.unscored += 1
                continue
            best = r.top[0]
            confidence = r.confidence if r.confidence or not best.score else best.score
            self.windows.add_prediction(
                r.model, r.version, r.record_id, best.index, float(confidence), r.time_unix_ns
            )

    def on_feedback(self, records: Sequence[fleet_pb2.FeedbackRecord]) -> None:
        """Join each label to its prediction(s), or replace the label given before."""
        for r in records:
            self.windows.add_label(r.record_id, r.label, r.time_unix_ns)

    def refresh(self) -> None:
        """Recompute every version's metrics."""
        self._snapshots = self.windows.snapshots()
        self._counts = self.windows.counts()

    @property
    def snapshots(self) -> list[QualitySnapshot]:
        """The metrics of the last refresh, one per version."""
        return list(self._snapshots)

    def collect(self) -> Iterable[Metric]:
        """The `fleetserve_quality_*` families of the last refresh."""
        accuracy = _gauge("fleetserve_quality_accuracy", "Accuracy over the labelled items in the window")
        ratio = _gauge(
            "fleetserve_quality_labelled_ratio", "Share of the window's predicted items that have a label"
        )
        labelled = _gauge("fleetserve_quality_labelled_items", "Labelled items in the window")
        predicted = _gauge("fleetserve_quality_predicted_items", "Predicted items in the window's age")
        ece = _gauge(
            "fleetserve_quality_ece", "Expected calibration error (equal-width confidence bins) in the window"
        )
        mvc = [*MV, "class"]
        precision = _gauge("fleetserve_quality_precision", "Per-class precision in the window", mvc)
        recall = _gauge("fleetserve_quality_recall", "Per-class recall in the window", mvc)
        f1 = _gauge("fleetserve_quality_f1", "Per-class F1 in the window", mvc)
        confusion = _gauge(
            "fleetserve_quality_confusion",
            "Labelled items in the window by true and predicted class",
            [*MV, "true", "predicted"],
        )
        delay = _gauge(
            "fleetserve_quality_label_delay_seconds",
            "Quantiles of the time from prediction to label in the window",
            [*MV, "quantile"],
        )
        delay_mean = _gauge(
            "fleetserve_quality_label_delay_mean_seconds", "Mean time from prediction to label in the window"
        )
        for s in self._snapshots:
            mv = [s.model, s.version]
            labelled.add_metric(mv, float(s.labelled))
            predicted.add_metric(mv, float(s.predicted))
            if not math.isnan(s.labelled_ratio):
                ratio.add_metric(mv, s.labelled_ratio)
            if s.labelled == 0:
                continue
            accuracy.add_metric(mv, s.accuracy)
            ece.add_metric(mv, s.ece)
            sc = s.scores
            for i, cls in enumerate(sc.classes.tolist()):
                precision.add_metric([*mv, str(cls)], float(sc.precision[i]))
                recall.add_metric([*mv, str(cls)], float(sc.recall[i]))
                f1.add_metric([*mv, str(cls)], float(sc.f1[i]))
            names = [str(c) for c in s.confusion_classes.tolist()]
            for i, true in enumerate(names):
                for j, pred in enumerate(names):
                    confusion.add_metric([*mv, true, pred], float(s.confusion[i, j]))
            delay.add_metric([*mv, "0.5"], s.delay.p50)
            delay.add_metric([*mv, "0.95"], s.delay.p95)
            delay_mean.add_metric(mv, s.delay.mean)
        yield from (accuracy, ratio, labelled, predicted, ece, precision, recall, f1, confusion)
        yield from (delay, delay_mean)
        yield from self._join_metrics(self._counts)

    def _join_metrics(self, c: JoinCounts) -> Iterable[Metric]:
        for name, doc, value in (
            ("unknown_labels", "Labels whose prediction was never seen (or evicted)", c.unknown_labels),
            ("replaced_labels", "Labels that replaced a pair's earlier label", c.replaced_labels),
            ("evicted_predictions", "Predictions evicted unlabelled from the join", c.evicted_predictions),
            ("unscored_records", "Prediction records without a top class", self.unscored),
        ):
            family = CounterMetricFamily(f"fleetserve_quality_{name}", doc)
            family.add_metric([], float(value))
            yield family
        pending = GaugeMetricFamily("fleetserve_quality_pending_predictions", "Predictions awaiting a label")
        pending.add_metric([], float(c.pending_predictions))
        waiting = GaugeMetricFamily(
            "fleetserve_quality_waiting_labels", "Labels read before their prediction, waiting for it"
        )
        waiting.add_metric([], float(c.waiting_labels))
        yield pending
        yield waiting
