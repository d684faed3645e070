"""What the batcher keeps per queued item, and its executor threads."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Pending(Generic[T, R]):
    """A queued item: its payload, rows, batch key, the future its caller awaits, its timing."""

    __slots__ = (
        "checked",
        "deadline",
        "enqueued",
        "future",
        "item",
        "key",
        "priority",
        "size",
        "taken",
        "timer",
    )

    def __init__(
        self,
        item: T,
        size: int,
        key: Hashable,
        future: asyncio.Future[R],
        enqueued: float,
        priority: int,
        deadline: float | None,
    ) -> None:
        self.item = item
        self.size = size
        self.key = key
        self.future = future
        self.enqueued = enqueued
        self.priority = priority
        self.deadline = deadline
        self.taken = False
        self.checked = False  # admission checked its deadline against the latency model
        self.timer: asyncio.TimerHandle | None = None

    @property
    def live(self) -> bool:
        """Still waiting: not taken into a batch, and its caller has not gone away."""
        return not self.taken and not self.future.done()


class Executor:
    """One thread that runs one batch at a time: `execute(self, batch)` for each job put."""

    def __init__(self, name: str, execute: Callable[[Executor, list[Any]], None]) -> None:
        self.jobs: queue.SimpleQueue[list[Any] | None] = queue.SimpleQueue()
        self.busy_until = 0.0  # predicted end of its batch (the batcher's clock)
        self.dispatched = 0.0  # when its batch was handed over
        self._execute = execute
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            batch = self.jobs.get()
            if batch is None:  # close
                return
            self._execute(self, batch)
