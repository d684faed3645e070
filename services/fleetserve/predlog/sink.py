"""The interface between the prediction log and where its records go."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from fleetserve.wire import fleet_pb2

from .entry import Logged


class PredlogUnavailable(Exception):
    """The index of logged predictions cannot be read now (Redis unreachable)."""


class Sink(Protocol):
    """Where records go. `write` and `write_feedback` never raise: a sink that cannot take
    records keeps them (spill) or drops and counts them; `lookup` may raise PredlogUnavailable."""

    name: str

    async def start(self) -> None:
        """Prepare (e.g. replay what an earlier process left in its spill file)."""
        ...

    async def write(self, records: list[fleet_pb2.PredictionRecord]) -> None:
        """Store prediction records, the records of each request together, and index their requests."""
        ...

    async def write_feedback(self, records: list[fleet_pb2.FeedbackRecord]) -> None:
        """Store feedback records and update the labels of the index."""
        ...

    async def retry(self) -> None:
        """Called when idle: retry what waits (e.g. replay spilled records once Redis is back)."""
        ...

    async def lookup(self, request_ids: Iterable[str]) -> dict[str, Logged]:
        """What the index knows of each of these ids (unknown ids are left out)."""
        ...

    def waiting(self) -> int:
        """Records taken but not yet where they belong (e.g. spilled while Redis is down)."""
        ...

    async def close(self) -> None:
        """Flush and release what the sink holds."""
        ...
