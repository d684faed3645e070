"""The local file sink, the default when no Redis is configured.

Append-only files of framed records (framing.py) in one folder: `predictions-YYYYMMDD.bin` and
`feedback-YYYYMMDD.bin` (UTC date of the write), flushed after each batch. The index for
feedback is in memory (`MemoryIndex`): with this sink, feedback is accepted only by the replica
that served the prediction, and only for its most recent `index_capacity` requests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from google.protobuf.message import Message
from prometheus_client import CollectorRegistry

from fleetserve.wire import fleet_pb2

from .entry import Logged
from .framing import frames
from .index import MemoryIndex, requests_of
from .metrics import PredlogMetrics

log = logging.getLogger(__name__)

PREDICTIONS = "predictions"
FEEDBACK = "feedback"


def file_name(kind: str, unix_s: float) -> str:
    """The file of one kind of record ("predictions" or "feedback") for a moment's UTC date."""
    return f"{kind}-{time.strftime('%Y%m%d', time.gmtime(unix_s))}.bin"


class _Appender:
    """An append-only file per kind and day, reopened when the date changes."""

    def __init__(self, directory: Path, kind: str, fsync: bool) -> None:
        self.directory, self.kind, self.fsync = directory, kind, fsync
        self._lock = threading.Lock()
        self._name = ""
        self._file: BinaryIO | None = None

    def append(self, data: bytes) -> None:
        with self._lock:
            name = file_name(self.kind, time.time())
            if name != self._name or self._file is None:
                self._close()
                self.directory.mkdir(parents=True, exist_ok=True)
                self._file = (self.directory / name).open("ab")
                self._name = name
            self._file.write(data)
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _serialized(records: Iterable[Message]) -> bytes:
    return frames(r.SerializeToString() for r in records)


class FileSink:
    """A `Sink` writing framed records to files in `directory` (see the module docstring)."""

    name = "file"

    def __init__(
        self,
        directory: Path,
        metrics: PredlogMetrics | None = None,
        index_capacity: int = 1_000_000,
        fsync: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.metrics = metrics or PredlogMetrics(CollectorRegistry())
        self.index = MemoryIndex(index_capacity)
        self._failing = False
        self._files = {k: _Appender(self.directory, k, fsync) for k in (PREDICTIONS, FEEDBACK)}

    async def start(self) -> None:
        """Create the folder."""
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)

    async def write(self, records: list[fleet_pb2.PredictionRecord]) -> None:
        """Append prediction records; on a disk error they are dropped and counted."""
        await self._append(PREDICTIONS, records)
        self.index.add(requests_of(records))

    async def write_feedback(self, records: list[fleet_pb2.FeedbackRecord]) -> None:
        """Append feedback records and label the requests in the memory index."""
        await self._append(FEEDBACK, records)
        self.index.label(records)

    async def _append(self, kind: str, records: Sequence[Message]) -> None:
        if not records:
            return
        appender = self._files[kind]
        try:
            await asyncio.to_thread(lambda: appender.append(_serialized(records)))
        except OSError as exc:
            if not self._failing:
                log.warning("prediction log: cannot write to %s (%s): dropping records", self.directory, exc)
            self._failing = True
            self.metrics.dropped.labels(self.name).inc(len(records))
            return
        self._failing = False
        self.metrics.records.labels(self.name).inc(len(records))

    async def retry(self) -> None:
        """Nothing to retry."""

    async def lookup(self, request_ids: Iterable[str]) -> dict[str, Logged]:
        """The requests this replica logged, among the ids."""
        return self.index.lookup(request_ids)

    def waiting(self) -> int:
        """Nothing waits: a batch is on disk when `write` returns."""
        return 0

    async def close(self) -> None:
        """Close the files."""
        for appender in self._files.values():
            await asyncio.to_thread(appender.close)
