"""GreedyPolicy: which queued items the next batch takes."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import pytest

from fleetserve.batching.policy import GreedyPolicy


@dataclass
class Item:
    size: int = 1
    key: Hashable = None
    cancelled: bool = False


def take(items: list[Item], max_batch_size: int) -> list[int]:
    return GreedyPolicy().take(items, max_batch_size)


def test_empty_queue_takes_nothing() -> None:
    assert take([], 8) == []


def test_takes_everything_that_fits_in_queue_order() -> None:
    assert take([Item(1), Item(3), Item(2)], 8) == [0, 1, 2]


def test_stops_at_max_batch_size_rows() -> None:
    # 1 + 3 + 2 = 6 rows fit in 6; the fourth item starts the next batch
    assert take([Item(1), Item(3), Item(2), Item(1)], 6) == [0, 1, 2]


def test_a_request_is_never_split_across_batches() -> None:
    # 3 + 2 = 5 > 4: the 2-row item waits whole for the next batch
    items = [Item(3), Item(2), Item(1)]
    assert take(items, 4) == [0]


def test_successive_batches_never_exceed_the_limit() -> None:
    queue = [Item(s) for s in (1, 3, 2, 4, 1, 1, 2)]
    batches = []
    while queue:
        chosen = take(queue, 4)
        assert chosen
        batches.append([queue[i].size for i in chosen])
        queue = [q for i, q in enumerate(queue) if i not in chosen]
    assert batches == [[1, 3], [2], [4], [1, 1, 2]]
    assert all(sum(b) <= 4 for b in batches)


def test_oversized_head_item_goes_alone() -> None:
    assert take([Item(10), Item(1)], 4) == [0]


def test_keys_separate_incompatible_items() -> None:
    items = [Item(1, "a"), Item(1, "b"), Item(2, "a"), Item(1, "b")]
    assert take(items, 8) == [0, 2]
    assert take(items[1:], 8) == [0, 2]


def test_head_key_decides() -> None:
    items = [Item(1, (3, 224)), Item(1, (3, 112)), Item(1, (3, 224))]
    assert take(items, 8) == [0, 2]


def test_cancelled_items_are_skipped() -> None:
    items = [Item(1, cancelled=True), Item(2), Item(2, cancelled=True), Item(1)]
    assert take(items, 8) == [1, 3]


def test_cancelled_items_do_not_count_towards_rows() -> None:
    items = [Item(2), Item(4, cancelled=True), Item(2)]
    assert take(items, 4) == [0, 2]


def test_only_cancelled_items_take_nothing() -> None:
    assert take([Item(cancelled=True), Item(cancelled=True)], 8) == []


@pytest.mark.parametrize("max_batch_size", [0, 1])
def test_no_batching_takes_one_item(max_batch_size: int) -> None:
    assert take([Item(1), Item(1), Item(1)], max_batch_size) == [0]
