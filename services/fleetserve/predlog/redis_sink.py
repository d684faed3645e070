"""The Redis Streams sink: `XADD` with an approximate `MAXLEN`, and a spill file while Redis is down.

Prediction records go to `fleetserve:predictions`, feedback to `fleetserve:feedback`, each
entry's field `record` holding the serialized message. In the same pipeline as a batch's XADDs
the index is written: per request the hash `fleetserve:prediction:<request_id>` (model,
version, route, items, time_ns), and with feedback the hash `fleetserve:labels:<request_id>`
(item -> label), both with a TTL.

While Redis cannot be reached, batches are appended to a spill file per stream in `spill_dir`
(spill.py); Redis is tried again with a growing back-off, and once it answers the spill is
replayed in order before any newer batch (which meanwhile goes to the spill too), then removed.
Records are dropped, and counted, only when the spill is at its cap. A batch whose pipeline
failed half-way may reach the stream twice; the writer sidecar drops duplicates by record id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fleetserve.wire import fleet_pb2

from .entry import Logged
from .index import DEFAULT_TTL_S, labels_key, prediction_key, requests_of
from .metrics import PredlogMetrics
from .sink import PredlogUnavailable
from .spill import SpillFile

log = logging.getLogger(__name__)

PREDICTIONS_STREAM = "fleetserve:predictions"
FEEDBACK_STREAM = "fleetserve:feedback"
FIELD = "record"
_TRANSIENT = ("OOM", "READONLY", "LOADING", "MISCONF", "BUSY", "TRYAGAIN", "MASTERDOWN")
Record = fleet_pb2.PredictionRecord | fleet_pb2.FeedbackRecord


def _transient(exc: BaseException) -> bool:
    """Whether an error means "Redis cannot take this now" (spill) rather than "never" (drop)."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_TRANSIENT)


class RedisStreamSink:
    """A `Sink` over Redis Streams with a local spill (see the module docstring)."""

    name = "redis"

    def __init__(
        self,
        url: str,
        spill_dir: Path,
        metrics: PredlogMetrics | None = None,
        *,
        maxlen: int = 1_000_000,
        ttl_s: int = DEFAULT_TTL_S,
        spill_max_bytes: int = 512 * 1024 * 1024,
        chunk_records: int = 1000,
        replay_chunks: int = 20,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.url = url
        self.metrics = metrics or PredlogMetrics(CollectorRegistry())
        self.maxlen, self.ttl_s = maxlen, ttl_s
        self.chunk_records, self.replay_chunks = chunk_records, replay_chunks
        self.max_backoff_s = max_backoff_s
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=1.0, socket_timeout=2.0, retry=Retry(NoBackoff(), 0)
        )
        self._spills = {
            PREDICTIONS_STREAM: SpillFile(Path(spill_dir) / "predictions.bin", spill_max_bytes),
            FEEDBACK_STREAM: SpillFile(Path(spill_dir) / "feedback.bin", spill_max_bytes),
        }
        self._locks = {s: asyncio.Lock() for s in self._spills}
        self._down = False
        self._backoff = 0.0
        self._retry_at = 0.0

    async def start(self) -> None:
        """Open the spill files, picking up what an earlier process left for replay."""
        for spill in self._spills.values():
            await asyncio.to_thread(spill.open)
            if not spill.empty():
                log.info("%d records wait in %s for replay to Redis", spill.count, spill.path)

    async def write(self, records: list[fleet_pb2.PredictionRecord]) -> None:
        """XADD prediction records and index their requests (spilled while Redis is down)."""
        await self._write(PREDICTIONS_STREAM, records)

    async def write_feedback(self, records: list[fleet_pb2.FeedbackRecord]) -> None:
        """XADD feedback records and set the labels they give (spilled while Redis is down)."""
        await self._write(FEEDBACK_STREAM, records)

    async def retry(self) -> None:
        """Replay spilled records if Redis may be back."""
        for stream, lock in self._locks.items():
            if not self._spills[stream].empty():
                async with lock:
                    await self._replay(stream)

    async def lookup(self, request_ids: Iterable[str]) -> dict[str, Logged]:
        """The logged requests among the ids; PredlogUnavailable when Redis cannot be reached."""
        ids = list(dict.fromkeys(request_ids))
        if not ids:
            return {}
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for rid in ids:
                    pipe.hgetall(prediction_key(rid))
                    pipe.hgetall(labels_key(rid))
                replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise PredlogUnavailable(f"the prediction index in Redis cannot be read: {exc}") from exc
        found: dict[str, Logged] = {}
        for i, rid in enumerate(ids):
            logged, labels = _text(replies[2 * i]), _text(replies[2 * i + 1])
            try:
                found[rid] = Logged(
                    model=logged["model"],
                    version=logged["version"],
                    route=logged["route"],
                    items=int(logged["items"]),
                    time_ns=int(logged["time_ns"]),
                    labels={int(k): int(v) for k, v in labels.items()},
                )
            except (KeyError, ValueError):
                continue  # unknown (or not a hash of ours)
        return found

    def waiting(self) -> int:
        """Records in the spill files."""
        return sum(s.count for s in self._spills.values())

    async def close(self) -> None:
        """Try a last replay, then close the spill files and the connection."""
        if not self._down or time.monotonic() >= self._retry_at:
            await self.retry()
        for spill in self._spills.values():
            await asyncio.to_thread(spill.close)
        await self.client.aclose()

    async def _write(self, stream: str, records: list[Any]) -> None:
        if not records:
            return
        spill = self._spills[stream]
        async with self._locks[stream]:
            if not spill.empty():
                await self._replay(stream)
            if spill.empty() and self._may_try():
                try:
                    await self._send(stream, records)
                    self._up()
                    return
                except (RedisError, OSError) as exc:
                    if not _transient(exc):
                        log.warning("Redis refused a batch for %s, dropped: %s", stream, exc)
                        self.metrics.dropped.labels(self.name).inc(len(records))
                        return
                    self._failed(exc)
            payloads = [r.SerializeToString() for r in records]
            try:
                spilled = await asyncio.to_thread(spill.append, payloads)
            except OSError as exc:
                log.warning("cannot spill to %s (%s): records dropped", spill.path, exc)
                spilled = False
            if spilled:
                self.metrics.records.labels("spill").inc(len(records))
            else:
                self.metrics.dropped.labels(self.name).inc(len(records))

    async def _replay(self, stream: str) -> None:
        """Send spilled records to Redis, oldest first, a bounded number of chunks per call."""
        spill = self._spills[stream]
        kind = fleet_pb2.PredictionRecord if stream == PREDICTIONS_STREAM else fleet_pb2.FeedbackRecord

        def parse(payload: bytes) -> Any:
            try:
                return kind.FromString(payload)
            except DecodeError:
                return None

        for _ in range(self.replay_chunks):
            if spill.empty() or not self._may_try():
                return
            read, end = await asyncio.to_thread(spill.read_batch, self.chunk_records, parse, _request_of)
            records = [r for r in read if r is not None]
            if len(records) < len(read):
                log.warning("%d undecodable records in %s skipped", len(read) - len(records), spill.path)
                self.metrics.dropped.labels(self.name).inc(len(read) - len(records))
            try:
                await self._send(stream, records)
            except (RedisError, OSError) as exc:
                if _transient(exc):
                    self._failed(exc)
                    return
                log.warning("Redis refused spilled records for %s, dropped: %s", stream, exc)
                self.metrics.dropped.labels(self.name).inc(len(records))
            await asyncio.to_thread(spill.commit, end, len(read))
            self._up()
            if spill.empty():
                log.info("replayed the spilled records of %s", stream)

    async def _send(self, stream: str, records: list[Any]) -> None:
        """One pipeline: XADD per record, then the index (raises on a transient failure)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for r in records:
                pipe.xadd(stream, {FIELD: r.SerializeToString()}, maxlen=self.maxlen, approximate=True)
            if stream == PREDICTIONS_STREAM:
                for rid, logged in requests_of(records).items():
                    key = prediction_key(rid)
                    pipe.hset(
                        key,
                        mapping={
                            "model": logged.model,
                            "version": logged.version,
                            "route": logged.route,
                            "items": logged.items,
                            "time_ns": logged.time_ns,
                        },
                    )
                    pipe.expire(key, self.ttl_s)
            else:
                for r in records:
                    pipe.hset(labels_key(r.request_id), str(r.item_index), str(r.label))
                    pipe.expire(labels_key(r.request_id), self.ttl_s)
            replies = await pipe.execute(raise_on_error=False)
        errors = [e for e in replies if isinstance(e, Exception)]
        for e in errors:
            if _transient(e):
                raise e
        failed = sum(isinstance(e, Exception) for e in replies[: len(records)])
        if errors:
            log.warning("Redis refused part of a batch for %s: %s", stream, errors[0])
        if failed:
            self.metrics.dropped.labels(self.name).inc(failed)
        self.metrics.records.labels(self.name).inc(len(records) - failed)

    def _may_try(self) -> bool:
        return not self._down or time.monotonic() >= self._retry_at

    def _failed(self, exc: BaseException) -> None:
        if not self._down:
            log.warning("Redis at %s is unreachable (%s): spilling records to disk", _redacted(self.url), exc)
        self._down = True
        self._backoff = min(self.max_backoff_s, max(0.25, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff

    def _up(self) -> None:
        if self._down:
            log.info("Redis at %s is reachable again", _redacted(self.url))
        self._down, self._backoff = False, 0.0


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _request_of(record: Record | None) -> str:
    if record is None:
        return ""
    return record.request_id if isinstance(record, fleet_pb2.PredictionRecord) else record.record_id


def _text(reply: Any) -> dict[str, str]:
    if not isinstance(reply, dict):
        return {}
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in reply.items()
    }
