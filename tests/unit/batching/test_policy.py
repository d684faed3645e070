"""Batch policies: which queued items the next batch takes, and when a policy waits."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import pytest

from fleetserve.batching.latency import LatencyModel
from fleetserve.batching.policy import (
    AdaptivePolicy,
    FixedWindowPolicy,
    Limits,
    NoBatchingPolicy,
    compatible,
    policy_named,
)


@dataclass
class Item:
    size: int = 1
    key: Hashable = None
    enqueued: float = 0.0
    deadline: float | None = None
    checked: bool = True


def model(per_row: float, fixed: float) -> LatencyModel:
    lm = LatencyModel(warmup=2)
    for n in (1, 2, 4, 8, 16):
        lm.observe(n, per_row * n + fixed)
    return lm


FLAT = model(0.001, 0.001)  # 1 ms per row + 1 ms


def test_empty_queue_takes_nothing() -> None:
    assert compatible([], Limits(8)) == []
    assert AdaptivePolicy().choose([], Limits(8), 0.0, FLAT).take == []


def test_takes_everything_that_fits_in_queue_order() -> None:
    assert compatible([Item(1), Item(3), Item(2)], Limits(8)) == [0, 1, 2]


def test_stops_at_max_batch_size_rows() -> None:
    assert compatible([Item(1), Item(3), Item(2), Item(1)], Limits(6)) == [0, 1, 2]


def test_a_request_is_never_split_across_batches() -> None:
    # 3 + 2 = 5 > 4: the 2-row item waits whole for the next batch (and keeps its place)
    assert compatible([Item(3), Item(2), Item(1)], Limits(4)) == [0]


def test_keys_separate_incompatible_items() -> None:
    items = [Item(1, "a"), Item(1, "b"), Item(1, "a"), Item(1, "b")]
    assert compatible(items, Limits(8)) == [0, 2]


def test_no_merging_when_max_batch_size_is_zero() -> None:
    assert compatible([Item(1), Item(1)], Limits(0)) == [0]


def test_adaptive_without_deadlines_takes_the_largest_batch() -> None:
    items = [Item(1) for _ in range(10)]
    assert AdaptivePolicy().choose(items, Limits(8), 0.0, FLAT).take == list(range(8))


def test_adaptive_shrinks_the_batch_to_meet_the_oldest_deadline() -> None:
    # predicted: 1 ms per row + 1 ms; the head must be answered within 5.5 ms
    items = [Item(1, deadline=0.0055)] + [Item(1) for _ in range(9)]
    assert AdaptivePolicy().choose(items, Limits(8), 0.0, FLAT).take == [0, 1, 2, 3]  # 4 rows: 5 ms


def test_adaptive_uses_the_earliest_deadline_in_the_batch() -> None:
    items = [Item(1), Item(1), Item(1, deadline=0.0035), Item(1)]
    # with 3 rows predicted 4 ms > 3.5 ms: cut to 2 rows (3 ms), which drops the tight item
    assert AdaptivePolicy().choose(items, Limits(8), 0.0, FLAT).take == [0, 1]


def test_adaptive_drops_what_cannot_meet_its_deadline_even_alone() -> None:
    items = [Item(1, deadline=0.0001), Item(1), Item(1, deadline=0.0015), Item(1, deadline=0.003)]
    decision = AdaptivePolicy().choose(items, Limits(8), 0.0, FLAT)  # one row: 2 ms
    assert decision.drop == [0, 2] and decision.take == []
    # the rest, once those are gone: the batch that meets the 3 ms deadline (1 row: 2 ms)
    assert AdaptivePolicy().choose([items[1], items[3]], Limits(8), 0.0, FLAT).take == [0]


def test_adaptive_takes_a_head_admission_did_not_check() -> None:
    """An idle batcher's probe (taken whatever the model said) is computed, never dropped."""
    items = [Item(1, deadline=0.0001, checked=False), Item(1)]
    decision = AdaptivePolicy().choose(items, Limits(8), 0.0, FLAT)
    assert decision.take == [0] and decision.drop == []


def test_adaptive_in_warm_up_ignores_deadlines() -> None:
    items = [Item(1, deadline=0.0001), Item(1)]
    assert AdaptivePolicy().choose(items, Limits(8), 0.0, LatencyModel()).take == [0, 1]


def test_adaptive_prefers_a_preferred_batch_size() -> None:
    items = [Item(1) for _ in range(7)]
    assert AdaptivePolicy().choose(items, Limits(8, preferred=(2, 4)), 0.0, FLAT).take == [0, 1, 2, 3]


def test_window_waits_until_due_then_dispatches() -> None:
    policy = FixedWindowPolicy(0.005)
    items = [Item(1, enqueued=1.0), Item(1, enqueued=1.001)]
    early = policy.choose(items, Limits(8), 1.002, FLAT)
    assert early.take == [] and early.wait_until == pytest.approx(1.005)
    assert policy.choose(items, Limits(8), 1.005, FLAT).take == [0, 1]


def test_window_dispatches_at_once_when_full() -> None:
    items = [Item(4, enqueued=1.0), Item(4, enqueued=1.0)]
    assert FixedWindowPolicy(0.005).choose(items, Limits(8), 1.0, FLAT).take == [0, 1]


def test_window_dispatches_at_the_largest_preferred_size() -> None:
    items = [Item(1, enqueued=1.0) for _ in range(4)]
    assert FixedWindowPolicy(0.005).choose(items, Limits(8, preferred=(4,)), 1.0, FLAT).take == [0, 1, 2, 3]


def test_no_batching_takes_one_item() -> None:
    assert NoBatchingPolicy().choose([Item(1), Item(1)], Limits(8), 0.0, FLAT).take == [0]


def test_policy_named() -> None:
    assert isinstance(policy_named("", 0.001), AdaptivePolicy)
    assert isinstance(policy_named("window", 0.001), FixedWindowPolicy)
    assert isinstance(policy_named("none", 0.001), NoBatchingPolicy)
    with pytest.raises(ValueError, match="adaptive, window, none"):
        policy_named("fifo", 0.001)


# --- adaptive, with the event loop saturated: coalesce within the deadline budget

CHEAP = model(0.00001, 0.00005)  # 10 µs per row + 50 µs: a batch that runs on the loop


def test_adaptive_dispatches_a_lone_request_at_once_unless_the_loop_is_saturated() -> None:
    items = [Item(enqueued=1.0, deadline=1.010)]
    assert AdaptivePolicy().choose(items, Limits(64), 1.0, CHEAP).take == [0]
    waiting = AdaptivePolicy().choose(items, Limits(64), 1.0, CHEAP, saturated=True)
    # half of the 10 ms budget, the default share
    assert waiting.take == [] and waiting.wait_until == pytest.approx(1.005)


def test_adaptive_coalescing_ends_at_the_due_time_or_a_full_batch() -> None:
    policy = AdaptivePolicy(coalesce_share=0.5, coalesce_max_s=0.005)
    items = [Item(enqueued=1.0, deadline=1.004), Item(enqueued=1.001, deadline=1.005)]
    assert policy.choose(items, Limits(64), 1.0015, CHEAP, saturated=True).wait_until == pytest.approx(1.002)
    assert policy.choose(items, Limits(64), 1.002, CHEAP, saturated=True).take == [0, 1]
    # a full batch (max_batch_size, or the largest preferred size) goes at once
    assert policy.choose(items, Limits(2), 1.0015, CHEAP, saturated=True).take == [0, 1]
    assert policy.choose(items, Limits(64, (2,)), 1.0015, CHEAP, saturated=True).take == [0, 1]


def test_adaptive_coalescing_is_bounded_by_its_cap_and_max_queue_delay() -> None:
    policy = AdaptivePolicy(coalesce_share=0.5, coalesce_max_s=0.005)
    slack = [Item(enqueued=1.0, deadline=2.0)]  # a 1 s budget: the cap decides
    assert policy.choose(slack, Limits(64), 1.0, CHEAP, saturated=True).wait_until == pytest.approx(1.005)
    lone = [Item(enqueued=1.0)]
    assert policy.choose(lone, Limits(64), 1.0, CHEAP, saturated=True).wait_until == pytest.approx(1.005)
    bounded = Limits(64, max_queue_delay_s=0.001)
    assert policy.choose(slack, bounded, 1.0, CHEAP, saturated=True).wait_until == pytest.approx(1.001)


def test_adaptive_does_not_wait_when_deadlines_already_cut_the_batch() -> None:
    # 8 rows would take 8 ms + 1 ms: past the head's deadline, so the batch is cut and sent
    items = [Item(enqueued=1.0, deadline=1.006) for _ in range(8)]
    decision = AdaptivePolicy().choose(items, Limits(64), 1.0, FLAT, saturated=True)
    assert decision.take and len(decision.take) < 8


def test_unbatched_models_never_wait() -> None:
    items = [Item(enqueued=1.0, deadline=1.010)]
    assert AdaptivePolicy().choose(items, Limits(0), 1.0, CHEAP, saturated=True).take == [0]
