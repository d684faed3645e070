"""QualityWindows: the prediction-label join, replaced labels, eviction, and the windows by
count and by age, with an injected clock."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fleetserve.common.clock import FakeClock
from fleetserve.drift import quality as q
from fleetserve.drift.windows import QualityWindows

NS = 1_000_000_000
T0 = 1_700_000_000 * NS


def make(clock: FakeClock, **kwargs: object) -> QualityWindows:
    options: dict[str, object] = {"label_grace_s": 0.0, **kwargs}
    return QualityWindows(clock=clock, **options)  # type: ignore[arg-type]


def predict(
    w: QualityWindows, rid: str, pred: int, conf: float = 0.9, version: str = "1", t: int = T0
) -> None:
    w.add_prediction("digits", version, rid, pred, conf, t)


def snap(w: QualityWindows, version: str = "1") -> q.ClassScores | None:
    s = w.snapshot("digits", version)
    return None if s is None else s.scores


def test_join_computes_the_metrics_of_the_pairs() -> None:
    clock = FakeClock()
    w = make(clock)
    rng = np.random.default_rng(0)
    truth, preds, confs, delays = [], [], [], []
    for i in range(200):
        p = int(rng.integers(0, 4))
        c = float(rng.random())
        predict(w, f"r{i}:0", p, c, t=T0 + i * NS)
        if i % 4 == 0:  # a quarter labelled
            label = p if rng.random() < 0.8 else int(rng.integers(0, 4))
            w.add_label(f"r{i}:0", label, T0 + i * NS + (i + 1) * NS // 2)
            truth.append(label)
            preds.append(p)
            confs.append(c)
            delays.append((i + 1) / 2)
    s = w.snapshot("digits", "1")
    assert s is not None
    assert (s.labelled, s.predicted, s.labelled_ratio) == (50, 200, 0.25)
    assert s.accuracy == q.accuracy(truth, preds)
    ref = q.precision_recall_f1(truth, preds)
    np.testing.assert_array_equal(s.scores.f1, ref.f1)
    np.testing.assert_array_equal(s.confusion, q.confusion_matrix(truth, preds)[1])
    assert s.ece == pytest.approx(q.expected_calibration_error(confs, np.equal(truth, preds)), abs=1e-15)
    assert s.delay == q.label_delay(delays)
    assert w.counts().pending_predictions == 150


def test_unlabelled_version_has_ratio_zero_and_no_accuracy() -> None:
    w = make(FakeClock())
    predict(w, "a:0", 1)
    s = w.snapshot("digits", "1")
    assert s is not None and s.labelled == 0 and s.labelled_ratio == 0.0
    assert math.isnan(s.accuracy) and math.isnan(s.ece)
    assert w.snapshot("digits", "9") is None


def test_a_label_joins_every_version_that_predicted_the_item() -> None:
    w = make(FakeClock())
    predict(w, "a:0", 3, version="1")  # production
    predict(w, "a:0", 5, version="2")  # its shadow, same request
    w.add_label("a:0", 3, T0 + NS)
    one, two = w.snapshot("digits", "1"), w.snapshot("digits", "2")
    assert one is not None and two is not None
    assert (one.accuracy, two.accuracy) == (1.0, 0.0)
    assert one.labelled_ratio == two.labelled_ratio == 1.0
    assert w.keys() == [("digits", "1"), ("digits", "2")]


def test_a_replaced_label_replaces_the_pairs_label() -> None:
    w = make(FakeClock())
    predict(w, "a:0", 3)
    predict(w, "b:0", 4)
    w.add_label("a:0", 3, T0 + NS)
    w.add_label("b:0", 1, T0 + NS)
    s = w.snapshot("digits", "1")
    assert s is not None and s.accuracy == 0.5
    w.add_label("b:0", 4, T0 + 5 * NS)  # corrected
    s = w.snapshot("digits", "1")
    assert s is not None and s.accuracy == 1.0 and s.labelled == 2
    assert s.delay.mean == 1.0  # the delay stays that of the first label
    assert w.counts().replaced_labels == 1


def test_unknown_labels_are_counted_and_ignored() -> None:
    w = make(FakeClock())
    predict(w, "a:0", 3)
    w.add_label("nope:0", 3, T0)
    w.add_label("a:1", 3, T0)
    s = w.snapshot("digits", "1")
    assert s is not None and s.labelled == 0
    assert w.counts().unknown_labels == 2


def test_a_label_read_before_its_prediction_waits_its_grace() -> None:
    clock = FakeClock()
    w = QualityWindows(label_grace_s=10.0, clock=clock)
    w.add_label("a:0", 3, T0 + 2 * NS)
    w.add_label("b:0", 3, T0 + 2 * NS)
    assert w.counts().waiting_labels == 2
    clock.advance(5)
    predict(w, "a:0", 3)  # arrives within the grace: joined
    predict(w, "a:0", 1, version="2")  # a shadow's record too
    s1, s2 = w.snapshot("digits", "1"), w.snapshot("digits", "2")
    assert s1 is not None and s1.accuracy == 1.0 and s1.delay.mean == 2.0
    assert s2 is not None and s2.accuracy == 0.0
    assert w.counts().waiting_labels == 1 and w.counts().unknown_labels == 0
    clock.advance(6)  # b's grace is over
    predict(w, "b:0", 3)
    s1 = w.snapshot("digits", "1")
    assert s1 is not None and s1.labelled == 1 and s1.predicted == 2
    counts = w.counts()
    assert counts.unknown_labels == 1 and counts.waiting_labels == 0


def test_pending_predictions_are_bounded_oldest_evicted() -> None:
    w = make(FakeClock(), max_pending=3)
    for i in range(5):
        predict(w, f"r{i}:0", 1)
    counts = w.counts()
    assert counts.evicted_predictions == 2 and counts.pending_predictions == 3
    w.add_label("r0:0", 1, T0)  # evicted: unknown now
    w.add_label("r4:0", 1, T0)
    s = w.snapshot("digits", "1")
    assert s is not None and s.labelled == 1
    assert s.predicted == 5 and s.labelled_ratio == 0.2  # the evicted still count as predicted
    assert w.counts().unknown_labels == 1


def test_duplicate_predictions_are_ignored() -> None:
    w = make(FakeClock())
    predict(w, "a:0", 1)
    predict(w, "a:0", 2)
    w.add_label("a:0", 1, T0)
    predict(w, "a:0", 2)  # replayed after its label
    s = w.snapshot("digits", "1")
    assert s is not None and s.predicted == 1 and s.accuracy == 1.0
    assert w.counts().duplicate_predictions == 2


def test_window_by_count_keeps_the_last_labelled_items() -> None:
    w = make(FakeClock(), max_items=3)
    for i in range(5):
        predict(w, f"r{i}:0", 1)
        w.add_label(f"r{i}:0", 1 if i >= 2 else 0, T0)
    s = w.snapshot("digits", "1")
    assert s is not None and s.labelled == 3 and s.accuracy == 1.0  # r0 and r1 (wrong) left
    assert s.predicted == 5 and s.labelled_ratio == 1.0
    w.add_label("r0:0", 1, T0)  # its pair left the window: unknown
    assert w.counts().unknown_labels == 1


def test_window_by_age() -> None:
    clock = FakeClock()
    w = make(clock, max_age_s=60.0)
    predict(w, "old:0", 1)
    w.add_label("old:0", 0, T0)
    clock.advance(30)
    predict(w, "new:0", 1)
    predict(w, "unl:0", 1)
    w.add_label("new:0", 1, T0)
    s = w.snapshot("digits", "1")
    assert s is not None and (s.labelled, s.predicted, s.accuracy) == (2, 3, 0.5)
    clock.advance(31)  # "old" was joined and seen 61 s ago
    s = w.snapshot("digits", "1")
    assert s is not None and (s.labelled, s.predicted, s.accuracy) == (1, 2, 1.0)
    assert s.labelled_ratio == 0.5
    clock.advance(30)  # all gone: the version's window goes too
    assert w.snapshots() == []
    assert w.keys() == []


def test_snapshots_cover_every_version_sorted() -> None:
    w = make(FakeClock())
    predict(w, "a:0", 1, version="2")
    predict(w, "a:0", 1, version="1")
    assert [(s.model, s.version) for s in w.snapshots()] == [("digits", "1"), ("digits", "2")]


def test_bounds_are_validated() -> None:
    with pytest.raises(ValueError):
        QualityWindows(max_items=0)
