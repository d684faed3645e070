"""Prediction-log test helpers: entries like the gateway submits, and a sink in memory."""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np

from fleetserve.predlog.entry import LogEntry, Logged
from fleetserve.predlog.index import MemoryIndex, requests_of
from fleetserve.wire import fleet_pb2


class MemorySink:
    """A `Sink` in memory."""

    name = "memory"

    def __init__(self) -> None:
        self.records: list[fleet_pb2.PredictionRecord] = []
        self.feedback: list[fleet_pb2.FeedbackRecord] = []
        self.index = MemoryIndex()
        self.batches = 0
        self.closed = False
        self.retries = 0

    async def start(self) -> None:
        pass

    async def write(self, records: list[fleet_pb2.PredictionRecord]) -> None:
        self.batches += 1
        self.records.extend(records)
        self.index.add(requests_of(records))

    async def write_feedback(self, records: list[fleet_pb2.FeedbackRecord]) -> None:
        self.feedback.extend(records)
        self.index.label(records)

    async def retry(self) -> None:
        self.retries += 1

    async def lookup(self, request_ids: Iterable[str]) -> dict[str, Logged]:
        return self.index.lookup(request_ids)

    def waiting(self) -> int:
        return 0

    async def close(self) -> None:
        self.closed = True


def log_entry(request_id: str, items: int = 1, model: str = "digits", version: str = "1") -> LogEntry:
    """An entry of a batched request with `items` items of an 8x8 image and 10 scores."""
    rng = np.random.default_rng(zlib.crc32(request_id.encode()))
    return LogEntry(
        request_id=request_id,
        time_ns=1_700_000_000_000_000_000,
        model=model,
        version=version,
        route="production",
        route_key=None,
        protocol="rest",
        latency_s=0.002,
        inputs={"image": rng.random((items, 1, 8, 8), np.float32)},
        outputs={"probabilities": rng.random((items, 10), np.float32)},
        batched=True,
        labels=[str(i) for i in range(10)],
        first_output="probabilities",
    )
