"""Batch policies: how many queued items an idle executor takes."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Protocol


class Queued(Protocol):
    """What a policy sees of a queued item."""

    @property
    def size(self) -> int:
        """Rows the item brings to a batch (its own batch dimension)."""
        ...

    @property
    def key(self) -> Hashable:
        """Items batch together only when their keys are equal."""
        ...

    @property
    def cancelled(self) -> bool:
        """The caller no longer waits for this item."""
        ...


class BatchPolicy(Protocol):
    """Chooses the items of the next batch from the head of the queue."""

    def take(self, queue: Sequence[Queued], max_batch_size: int) -> list[int]:
        """Indexes into `queue` of the next batch, in queue order; empty to wait."""
        ...


class GreedyPolicy:
    """Dispatch at once what is queued, up to `max_batch_size` rows of the head item's key.

    No waiting at low load; while executors are busy, items accumulate and the next idle
    executor takes them together.
    """

    def take(self, queue: Sequence[Queued], max_batch_size: int) -> list[int]:
        chosen: list[int] = []
        rows = 0
        key: Hashable = None
        limit = max(max_batch_size, 1)
        for i, item in enumerate(queue):
            if item.cancelled:
                continue
            if not chosen:
                key = item.key
            elif item.key != key or max_batch_size == 0:
                continue
            if chosen and rows + item.size > limit:
                break
            chosen.append(i)
            rows += item.size
            if rows >= limit:
                break
        return chosen
