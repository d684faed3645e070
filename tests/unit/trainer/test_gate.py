"""The publishing gate's decisions and the figures its messages name."""

from __future__ import annotations

import pytest

from fleetserve.trainer.gate import GateRefused, decide

PARENT = {"test_accuracy": 0.97, "production_accuracy": 0.40}


def test_no_production_version_passes() -> None:
    decision = decide({"test_accuracy": 0.5}, None, reason="drift")
    assert decision.passed
    assert "no production version" in decision.message()


def test_held_out_within_the_margin_passes_and_beyond_it_is_refused() -> None:
    assert decide({"test_accuracy": 0.965}, PARENT, reason="manual", margin=0.01, parent_version=1).passed
    refused = decide({"test_accuracy": 0.95}, PARENT, reason="manual", margin=0.01, parent_version=1)
    assert not refused.passed
    message = refused.message()
    assert "0.9500" in message and "0.9700" in message and "0.0200" in message and "0.0100" in message
    assert "v1" in message
    assert decide({"test_accuracy": 0.95}, PARENT, reason="manual", margin=0.03, parent_version=1).passed


def test_manual_retraining_does_not_need_to_beat_production_data() -> None:
    decision = decide({"test_accuracy": 0.97, "production_accuracy": 0.30}, PARENT, reason="manual")
    assert decision.passed
    assert any("not gated" in c for c in decision.checks)


def test_drift_retraining_must_be_better_on_recent_production_data() -> None:
    better = decide(
        {"test_accuracy": 0.97, "production_accuracy": 0.90}, PARENT, reason="drift", parent_version=1
    )
    assert better.passed
    same = decide(
        {"test_accuracy": 0.97, "production_accuracy": 0.40}, PARENT, reason="drift", parent_version=1
    )
    assert not same.passed
    assert "recent production accuracy 0.4000 is not better than v1's 0.4000" in same.message()


def test_drift_retraining_without_production_data_is_refused() -> None:
    decision = decide({"test_accuracy": 0.99}, {"test_accuracy": 0.97}, reason="drift", parent_version=2)
    assert not decision.passed
    assert "--production-data" in decision.message()


def test_both_failures_are_named() -> None:
    decision = decide(
        {"test_accuracy": 0.5, "production_accuracy": 0.1}, PARENT, reason="drift", parent_version=1
    )
    assert len(decision.failures) == 2
    error = GateRefused(decision)
    assert "held-out accuracy 0.5000" in str(error) and "0.1000" in str(error)
    assert error.decision is decision


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="reason"):
        decide({"test_accuracy": 1.0}, None, reason="bored")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="margin"):
        decide({"test_accuracy": 1.0}, None, reason="manual", margin=-0.1)
    with pytest.raises(ValueError, match="test_accuracy"):
        decide({}, PARENT, reason="manual")
