"""What a batch and a queued item come to: reports, refusals, and checking a batch's results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class BatchReport:
    """What one executed batch did, for statistics and metrics."""

    items: int
    rows: int
    queue_seconds: list[float]
    compute_seconds: float
    failed: bool
    inline: bool = False


class BatcherClosed(Exception):
    """The batcher no longer takes items (its model version is being unloaded)."""


class Rejected(Exception):
    """An item refused (queue_full, deadline) or dropped from the queue (timeout)."""

    def __init__(self, reason: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s


def checked(results: Any, items: int) -> Any:
    """The results of a batch, or the exception that fails it (a wrong count fails it too:
    anything raised later would leave futures unanswered and the executor lost)."""
    if isinstance(results, BaseException):
        return results
    if not isinstance(results, list | tuple) or len(results) != items:
        got = f"{len(results)} results" if isinstance(results, list | tuple) else type(results).__name__
        return RuntimeError(f"batch of {items} items gave {got}")
    return results
