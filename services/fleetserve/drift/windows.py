"""Sliding windows of labelled predictions per (model, version), and the join that fills them.

A prediction waits in a bounded map by record id until its label arrives (the oldest are
evicted past `max_pending` record ids). A label joins every waiting prediction of its record
id (the primary's and any shadow's), making a (prediction, label) pair in that version's
window; a label for a pair already in a window replaces the pair's label. A label whose
prediction is not known yet waits `label_grace_s` (the two streams are read separately, so
a label can be read before its prediction); unmatched after that, it is counted as unknown
and dropped (with `label_grace_s=0`, at once).

Each version's window keeps the last `max_items` pairs joined within `max_age_s`; the
labelled ratio is the share of the predictions seen within `max_age_s` that have a label.
Time comes from an injected clock (the monitor's time of arrival, not the records' own).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from fleetserve.common.clock import Clock, SystemClock

from . import quality as q

Key = tuple[str, str]  # (model, version)


@dataclass(slots=True)
class _Prediction:
    key: Key
    record_id: str
    predicted: int
    confidence: float
    time_ns: int
    seen_at: float
    labelled: bool = False
    recent: bool = True  # still among the window's recent predictions


@dataclass(slots=True)
class _Pair:
    record_id: str
    label: int
    predicted: int
    confidence: float
    delay_s: float
    joined_at: float


@dataclass(slots=True)
class _EarlyLabel:
    label: int
    time_ns: int
    arrived: float
    matched: bool = False


@dataclass(slots=True)
class _Window:
    pairs: deque[_Pair] = field(default_factory=deque)
    by_id: dict[str, _Pair] = field(default_factory=dict)
    recent: deque[_Prediction] = field(default_factory=deque)
    recent_labelled: int = 0


@dataclass(frozen=True, slots=True)
class QualitySnapshot:
    """The quality metrics of one version's window at one moment."""

    model: str
    version: str
    labelled: int  # pairs in the window
    predicted: int  # predictions seen within the age window
    labelled_ratio: float  # share of those predictions that have a label
    accuracy: float
    scores: q.ClassScores
    confusion_classes: q.IntArray
    confusion: q.IntArray
    ece: float
    delay: q.Delay


@dataclass(frozen=True, slots=True)
class JoinCounts:
    """What the join did since start: labels it could not place, predictions it evicted, ..."""

    unknown_labels: int
    replaced_labels: int
    evicted_predictions: int
    duplicate_predictions: int
    pending_predictions: int
    waiting_labels: int


class QualityWindows:
    """Per-version sliding windows of joined (prediction, label) pairs (module docstring)."""

    def __init__(
        self,
        max_items: int = 5000,
        max_age_s: float = 3600.0,
        max_pending: int = 100_000,
        max_predictions: int = 100_000,
        label_grace_s: float = 60.0,
        max_waiting_labels: int = 10_000,
        bins: int = q.DEFAULT_BINS,
        clock: Clock | None = None,
    ) -> None:
        if min(max_items, max_pending, max_predictions) < 1:
            raise ValueError("window bounds must be at least 1")
        self.max_items = max_items
        self.max_age_s = max_age_s
        self.max_pending = max_pending
        self.max_predictions = max_predictions
        self.label_grace_s = label_grace_s
        self.max_waiting_labels = max_waiting_labels
        self.bins = bins
        self.clock: Clock = clock or SystemClock()
        self._windows: dict[Key, _Window] = {}
        self._pending: OrderedDict[str, list[_Prediction]] = OrderedDict()
        self._early: OrderedDict[str, _EarlyLabel] = OrderedDict()
        self._unknown = 0
        self._replaced = 0
        self._evicted = 0
        self._duplicates = 0

    # --- input -------------------------------------------------------------------------------

    def add_prediction(
        self, model: str, version: str, record_id: str, predicted: int, confidence: float, time_ns: int
    ) -> None:
        """Take one predicted item (its top-1 class and score, and when it was predicted)."""
        now = self.clock.monotonic()
        key = (model, version)
        window = self._windows.setdefault(key, _Window())
        waiting = self._pending.get(record_id, [])
        if record_id in window.by_id or any(p.key == key for p in waiting):
            self._duplicates += 1
            return
        pred = _Prediction(key, record_id, int(predicted), float(confidence), int(time_ns), now)
        window.recent.append(pred)
        self._expire_early(now)
        early = self._early.get(record_id)
        if early is not None:
            early.matched = True
            self._join(pred, early.label, early.time_ns, now)
        else:
            self._pending.setdefault(record_id, []).append(pred)
            while len(self._pending) > self.max_pending:
                _, evicted = self._pending.popitem(last=False)
                self._evicted += len(evicted)
        self._prune(window, now)

    def add_label(self, record_id: str, label: int, time_ns: int) -> None:
        """Take the true class of an item: joined to its prediction(s), or replacing a label."""
        now = self.clock.monotonic()
        label = int(label)
        found = False
        for window in self._windows.values():
            pair = window.by_id.get(record_id)
            if pair is not None:
                found = True
                self._replaced += 1
                pair.label = label
        for pred in self._pending.pop(record_id, []):
            found = True
            self._join(pred, label, time_ns, now)
        self._expire_early(now)
        early = self._early.get(record_id)
        if early is not None:  # a newer label for one still waiting (or matched in its grace)
            early.label, early.time_ns = label, int(time_ns)
        elif not found:
            if self.label_grace_s > 0 and self.max_waiting_labels > 0:
                self._early[record_id] = _EarlyLabel(label, int(time_ns), now)
                while len(self._early) > self.max_waiting_labels:
                    _, dropped = self._early.popitem(last=False)
                    self._unknown += 0 if dropped.matched else 1
            else:
                self._unknown += 1

    # --- output ------------------------------------------------------------------------------

    def keys(self) -> list[Key]:
        """The (model, version) pairs with a window, sorted."""
        return sorted(self._windows)

    def snapshot(self, model: str, version: str) -> QualitySnapshot | None:
        """The metrics of one version's window now (None: no window)."""
        window = self._windows.get((model, version))
        if window is None:
            return None
        self._prune(window, self.clock.monotonic())
        pairs = window.pairs
        labels = np.fromiter((p.label for p in pairs), dtype=np.int64, count=len(pairs))
        predicted = np.fromiter((p.predicted for p in pairs), dtype=np.int64, count=len(pairs))
        confidence = np.fromiter((p.confidence for p in pairs), dtype=np.float64, count=len(pairs))
        delays = np.fromiter((p.delay_s for p in pairs), dtype=np.float64, count=len(pairs))
        classes, matrix = q.confusion_matrix(labels, predicted)
        return QualitySnapshot(
            model=model,
            version=version,
            labelled=len(pairs),
            predicted=len(window.recent),
            labelled_ratio=q.labelled_share(window.recent_labelled, len(window.recent)),
            accuracy=q.accuracy(labels, predicted),
            scores=q.precision_recall_f1(labels, predicted, classes),
            confusion_classes=classes,
            confusion=matrix,
            ece=q.expected_calibration_error(confidence, labels == predicted, self.bins),
            delay=q.label_delay(delays),
        )

    def snapshots(self) -> list[QualitySnapshot]:
        """The metrics of every version's window; windows left empty by age are dropped."""
        now = self.clock.monotonic()
        self._expire_early(now)
        out: list[QualitySnapshot] = []
        for key in self.keys():
            window = self._windows[key]
            self._prune(window, now)
            if not window.pairs and not window.recent:
                del self._windows[key]
                continue
            snap = self.snapshot(*key)
            if snap is not None:
                out.append(snap)
        return out

    def counts(self) -> JoinCounts:
        """Totals of the join since start, and what waits now."""
        return JoinCounts(
            unknown_labels=self._unknown,
            replaced_labels=self._replaced,
            evicted_predictions=self._evicted,
            duplicate_predictions=self._duplicates,
            pending_predictions=sum(len(v) for v in self._pending.values()),
            waiting_labels=sum(1 for e in self._early.values() if not e.matched),
        )

    # --- internals ---------------------------------------------------------------------------

    def _join(self, pred: _Prediction, label: int, time_ns: int, now: float) -> None:
        window = self._windows.setdefault(pred.key, _Window())
        pred.labelled = True
        if pred.recent:
            window.recent_labelled += 1
        delay = (int(time_ns) - pred.time_ns) / 1e9
        pair = _Pair(pred.record_id, label, pred.predicted, pred.confidence, delay, now)
        window.pairs.append(pair)
        window.by_id[pred.record_id] = pair
        self._prune(window, now)

    def _prune(self, window: _Window, now: float) -> None:
        cutoff = now - self.max_age_s
        pairs = window.pairs
        while pairs and (len(pairs) > self.max_items or pairs[0].joined_at < cutoff):
            old = pairs.popleft()
            if window.by_id.get(old.record_id) is old:
                del window.by_id[old.record_id]
        recent = window.recent
        while recent and (len(recent) > self.max_predictions or recent[0].seen_at < cutoff):
            pred = recent.popleft()
            pred.recent = False
            if pred.labelled:
                window.recent_labelled -= 1

    def _expire_early(self, now: float) -> None:
        cutoff = now - self.label_grace_s
        while self._early:
            record_id, early = next(iter(self._early.items()))
            if early.arrived >= cutoff:
                break
            del self._early[record_id]
            if not early.matched:
                self._unknown += 1
