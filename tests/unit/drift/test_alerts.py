"""The alert state of a version: raising, clearing with hysteresis, and when retraining is due."""

from __future__ import annotations

import pytest

from fleetserve.drift.alerts import AlertPolicy, AlertState


def test_raised_after_consecutive_over_evaluations() -> None:
    state = AlertState(AlertPolicy(alert_after=3, clear_after=2))
    assert [state.update(o, not o, 0.0) for o in (True, True, False, True, True)] == [""] * 5
    assert not state.active
    assert state.update(True, False, 1.0) == "raised"
    assert state.active and state.raised_at == 1.0 and state.episodes == 1
    assert state.update(True, False, 2.0) == ""  # stays up


def test_cleared_only_after_consecutive_calm_evaluations() -> None:
    state = AlertState(AlertPolicy(alert_after=1, clear_after=2))
    assert state.update(True, False, 0.0) == "raised"
    # under the threshold but above the clearing level: not calm, the alert holds
    assert state.update(False, False, 1.0) == ""
    assert state.update(False, True, 2.0) == ""
    assert state.update(False, False, 3.0) == ""  # the calm run is broken
    assert state.update(False, True, 4.0) == ""
    assert state.update(False, True, 5.0) == "cleared"
    assert not state.active and state.raised_at is None
    assert state.update(True, False, 6.0) == "raised" and state.episodes == 2


def test_retraining_due_once_per_episode_after_evaluations_and_seconds() -> None:
    policy = AlertPolicy(alert_after=1, clear_after=1, retrain_after_evaluations=3, retrain_after_s=10.0)
    state = AlertState(policy)
    state.update(True, False, 100.0)
    assert not state.due(100.0)
    state.update(True, False, 101.0)
    state.update(True, False, 102.0)  # three over evaluations
    assert not state.due(105.0)  # up for 5 s only
    assert state.due(110.0)
    state.update(False, False, 111.0)  # one evaluation under the threshold: the run restarts
    assert not state.due(111.0)
    for t in (112.0, 113.0, 114.0):
        state.update(True, False, t)
    assert state.due(114.0)
    state.mark_retrained()
    assert not state.due(200.0)  # this episode had its retraining
    state.update(False, True, 201.0)  # cleared
    for t in (300.0, 301.0, 302.0):
        state.update(True, False, t)
    assert state.episodes == 2 and state.due(312.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alert_after": 0},
        {"clear_after": 0},
        {"clear_factor": 0.0},
        {"clear_factor": 1.5},
        {"retrain_after_s": -1},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AlertPolicy(**kwargs)  # type: ignore[arg-type]
