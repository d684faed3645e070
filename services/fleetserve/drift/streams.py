"""Where the monitor reads records from: the `RecordSource` interface and its Redis Streams
implementation (CONTRACT.md's `fleetserve:predictions` and `fleetserve:feedback`, each entry
carrying the serialized message in its field `record`).

The monitor keeps its own cursor and reads with XREAD (no consumer group: it acknowledges
nothing and takes nothing from the Parquet writer). It starts at `$` (what arrives from now
on; resolved once to the stream's last id, so nothing is skipped between reads or after a
reconnect) or at a given id (`0`: from the beginning). Each read drains the predictions
stream before reading feedback, so a label is rarely read before its prediction.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis.asyncio as aioredis
from google.protobuf.message import DecodeError
from redis.exceptions import RedisError

from fleetserve.wire import fleet_pb2

log = logging.getLogger(__name__)

PREDICTIONS = "fleetserve:predictions"
FEEDBACK = "fleetserve:feedback"
FIELD = b"record"
STREAM_ID = re.compile(r"^(\$|\d+(-\d+)?)$")


class SourceUnavailable(Exception):
    """The record source cannot be read now (the monitor keeps its values and retries)."""


@dataclass(slots=True)
class RecordBatch:
    """Records read in one go; predictions come before feedback in reading order."""

    predictions: list[fleet_pb2.PredictionRecord] = field(default_factory=list)
    feedback: list[fleet_pb2.FeedbackRecord] = field(default_factory=list)
    undecodable: dict[str, int] = field(default_factory=dict)  # per kind: predictions, feedback

    def __len__(self) -> int:
        return len(self.predictions) + len(self.feedback) + sum(self.undecodable.values())


class RecordSource(Protocol):
    """Prediction and feedback records, in order, from wherever they are logged."""

    async def read(self) -> RecordBatch:
        """The next records; waits a bounded time (about a second) when there are none.

        Raises SourceUnavailable when the source cannot be read.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def check_stream_id(value: str) -> str:
    """A valid XREAD start: `$` or a stream id (`0`, `1700000000000-0`)."""
    if not STREAM_ID.match(value):
        raise ValueError(f"stream start must be $ or a stream id such as 0 or 1700000000000-0, not {value!r}")
    return value


def _entries(reply: Any) -> list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """XREAD's reply as (stream, entries) pairs (RESP2 gives a list, RESP3 a dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in reply.items()]
    return [(stream, entries) for stream, entries in reply]


def _id_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreams:
    """A `RecordSource` over the two Redis streams, with its own cursors."""

    def __init__(
        self,
        url: str,
        start: str = "$",
        count: int = 1000,
        block_ms: int = 1000,
        predictions: str = PREDICTIONS,
        feedback: str = FEEDBACK,
        max_rounds: int = 20,
    ) -> None:
        self.url = url
        self.start = check_stream_id(start)
        self.count = count
        self.block_ms = block_ms
        self.streams = (predictions, feedback)
        self.max_rounds = max_rounds
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=2.0, socket_timeout=max(5.0, 2 * block_ms / 1000)
        )
        self._cursors: dict[str, str] | None = None

    @property
    def cursors(self) -> dict[str, str] | None:
        """The last id read per stream (None before the first successful read)."""
        return None if self._cursors is None else dict(self._cursors)

    async def read(self) -> RecordBatch:
        """Drain new predictions, then read feedback; wait up to block_ms when neither has any."""
        try:
            return await self._read()
        except (RedisError, OSError) as exc:
            raise SourceUnavailable(
                f"cannot read the streams at {self.url}: {exc or type(exc).__name__}"
            ) from None

    async def _read(self) -> RecordBatch:
        cursors = await self._resolve()
        predictions, feedback = self.streams
        batch = RecordBatch()
        for _ in range(self.max_rounds):
            n = await self._read_one(predictions, cursors, batch)
            if n < self.count:
                break
        await self._read_one(feedback, cursors, batch)
        if len(batch) == 0:
            # wait for anything new without taking it: the next read drains it in order
            await self._xread(cursors, count=1, block=self.block_ms)
        return batch

    async def _resolve(self) -> dict[str, str]:
        if self._cursors is not None:
            return self._cursors
        cursors: dict[str, str] = {}
        for stream in self.streams:
            if self.start != "$":
                cursors[stream] = self.start
                continue
            last = await self._client.xrevrange(stream, "+", "-", count=1)
            cursors[stream] = _id_text(last[0][0]) if last else "0-0"
        self._cursors = cursors
        log.info("reading %s from %s", ", ".join(self.streams), cursors)
        return cursors

    async def _xread(self, cursors: dict[str, str], count: int, block: int | None = None) -> Any:
        streams: dict[Any, Any] = dict(cursors)
        return await self._client.xread(streams, count=count, block=block)

    async def _read_one(self, stream: str, cursors: dict[str, str], batch: RecordBatch) -> int:
        reply = await self._xread({stream: cursors[stream]}, count=self.count)
        n = 0
        for _, entries in _entries(reply):
            for entry_id, fields in entries:
                n += 1
                cursors[stream] = _id_text(entry_id)
                self._decode(stream, fields, batch)
        return n

    def _decode(self, stream: str, fields: dict[bytes, bytes], batch: RecordBatch) -> None:
        raw = fields.get(FIELD)
        kind = "predictions" if stream == self.streams[0] else "feedback"
        try:
            if raw is None:
                raise DecodeError("no 'record' field")
            if kind == "predictions":
                batch.predictions.append(fleet_pb2.PredictionRecord.FromString(raw))
            else:
                batch.feedback.append(fleet_pb2.FeedbackRecord.FromString(raw))
        except DecodeError:
            batch.undecodable[kind] = batch.undecodable.get(kind, 0) + 1

    async def close(self) -> None:
        """Close the Redis connection pool."""
        await self._client.aclose()
