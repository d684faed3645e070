"""`PredictionLog`: what the gateway holds. Takes entries without blocking, logs them behind.

`submit` runs on the event loop after each answered request and only appends to a bounded
deque (a full buffer drops the entry and counts its items). A background task (`start` /
`stop`) takes up to `batch_entries` entries at a time, turns them into records in a worker
thread (records.py) and hands them to the sink. Woken by a first entry, it lingers up to
`linger_s` (or until `batch_entries` are there) before it takes them: each batch costs two
hand-overs to the worker thread, the sink's write and a GIL shared with the loop, and answers
that trickle in one by one (no batching, or a slow model) otherwise made a batch each. Measured
on digits over gRPC on one core at c=64, every request logged (`python -m loadtests.predlog_cost`):
without batching 1,391 req/s without the linger, 1,777 with it and 1,819 with the log off; with
the adaptive batcher 2,010, 2,164 and 2,394. `lookup` and `record_feedback` serve the
feedback API; `lookup` first waits (briefly) until the entries already submitted are written,
so feedback may follow its prediction at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry

from fleetserve.wire import fleet_pb2

from .entry import LogEntry, Logged
from .file_sink import FileSink
from .metrics import PredlogMetrics
from .records import item_count, records_of
from .redis_sink import RedisStreamSink
from .settings import LogSettings
from .sink import Sink

log = logging.getLogger(__name__)


class PredictionLog:
    """The emitter side of the prediction log (see the module docstring)."""

    def __init__(
        self,
        sink: Sink,
        metrics: PredlogMetrics,
        *,
        capacity: int = 10_000,
        sample_rate: float = 1.0,
        tensor_sample_rate: float = 0.0,
        top_k: int = 5,
        batch_entries: int = 256,
        linger_s: float = 0.02,
        idle_retry_s: float = 1.0,
        rng: random.Random | None = None,
    ) -> None:
        self.sink, self.metrics = sink, metrics
        self.capacity, self.sample_rate, self.tensor_sample_rate = capacity, sample_rate, tensor_sample_rate
        self.top_k, self.batch_entries, self.idle_retry_s = top_k, batch_entries, idle_retry_s
        self.linger_s = linger_s
        self._rng = rng or random.Random()
        self._tensor_rng = random.Random(self._rng.random())  # drawn in the worker thread
        self._buffer: deque[LogEntry] = deque()
        self._dropped = metrics.dropped.labels(sink.name)
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._idle = False
        self._full = asyncio.Event()  # set while lingering, once batch_entries are buffered
        self._lingering = False
        self._hurry = 0  # lookups waiting for the log to catch up
        self._stopping = False
        self._submitted = 0  # entries buffered so far
        self._done = 0  # entries handed to the sink so far
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        metrics.lag.set_function(self.waiting)

    def submit(self, entry: LogEntry) -> None:
        """Log an answered request, later. O(1); never blocks, never raises."""
        try:
            if self.sample_rate < 1.0 and self._rng.random() >= self.sample_rate:
                return
            if len(self._buffer) >= self.capacity or self._stopping:
                self._dropped.inc(_items(entry))
                return
            self._buffer.append(entry)
            self._submitted += 1
            if self._idle:
                self._idle = False
                self._wake.set()
            elif self._lingering and len(self._buffer) >= self.batch_entries:
                self._full.set()
        except Exception:  # the request path must never fail because of its log
            log.exception("prediction log: an entry could not be taken")

    def waiting(self) -> int:
        """Entries buffered plus records the sink holds back (e.g. spilled)."""
        return len(self._buffer) + self.sink.waiting()

    async def start(self) -> None:
        """Prepare the sink and start the background task."""
        if self._task is not None:
            return
        await self.sink.start()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="fleetserve-predlog")

    async def stop(self, within_s: float = 10.0) -> None:
        """Write what is buffered (for at most `within_s` seconds), then close the sink."""
        task, self._task = self._task, None
        self._stopping = True
        self._wake.set()
        self._full.set()
        if task is not None:
            try:
                await asyncio.wait_for(task, within_s)
            except TimeoutError:
                log.warning("prediction log: %d entries not written at stop", len(self._buffer))
        await self.sink.close()

    async def lookup(self, request_ids: Iterable[str], wait_s: float = 2.0) -> dict[str, Logged]:
        """What the index knows of these request ids (unknown ids are left out).

        Waits up to `wait_s` for the entries submitted before the call to be written first.
        Raises `PredlogUnavailable` when the index cannot be read (Redis unreachable).
        """
        await self._caught_up(wait_s)
        return await self.sink.lookup(request_ids)

    async def record_feedback(self, records: list[fleet_pb2.FeedbackRecord]) -> None:
        """Write feedback records (to the feedback stream or file) and label the index."""
        await self.sink.write_feedback(records)

    async def _caught_up(self, within_s: float) -> None:
        target = self._submitted
        self._hurry += 1  # someone waits for what is buffered: no lingering for more
        self._full.set()
        try:
            await self._wait_done(target, within_s)
        finally:
            self._hurry -= 1

    async def _wait_done(self, target: int, within_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while self._done < target and self._task is not None and not self._task.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)

    async def _run(self) -> None:
        while True:
            if not self._buffer:
                if self._stopping:
                    return
                self._idle = True
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.idle_retry_s)
                except TimeoutError:
                    try:
                        await self.sink.retry()
                    except Exception:
                        log.exception("prediction log: retrying the sink failed")
                continue
            await self._linger()
            batch = [self._buffer.popleft() for _ in range(min(self.batch_entries, len(self._buffer)))]
            try:
                records = await asyncio.to_thread(self._records, batch)
                await self.sink.write(records)
            except Exception:  # a bad entry must not stop the log
                self._dropped.inc(sum(_items(e) for e in batch))
                log.exception("prediction log: a batch of %d entries could not be logged", len(batch))
            self._done += len(batch)
            self._progress.set()

    async def _linger(self) -> None:
        """Wait up to linger_s for a full batch (not when stopping or when a lookup waits)."""
        if self.linger_s <= 0 or self._stopping or self._hurry or len(self._buffer) >= self.batch_entries:
            return
        self._full.clear()
        self._lingering = True
        try:
            await asyncio.wait_for(self._full.wait(), self.linger_s)
        except TimeoutError:
            pass
        finally:
            self._lingering = False

    def _records(self, batch: list[LogEntry]) -> list[fleet_pb2.PredictionRecord]:
        records, failed = records_of(batch, self.top_k, self.tensor_sample_rate, self._tensor_rng)
        if failed:  # entries the gateway built wrong are dropped and counted
            self._dropped.inc(sum(_items(e) for e in failed))
            if not self._failing:
                log.warning(
                    "prediction log: %d entries gave no records, e.g. %s",
                    len(failed),
                    getattr(failed[0], "request_id", "?"),
                )
            self._failing = True
        return records


def _items(entry: LogEntry) -> int:
    try:
        return item_count(entry)
    except (AttributeError, IndexError, TypeError):
        return 1


def prediction_log(
    redis_url: str | None,
    data_dir: Path,
    registry: CollectorRegistry,
    settings: LogSettings | None = None,
) -> PredictionLog:
    """The gateway's prediction log: to Redis Streams when `redis_url` is set (spilling to
    `data_dir/spill` while Redis is down), else to files in `data_dir`. `settings` default to
    `LogSettings()` (environment `FLEETSERVE_PREDLOG_*`)."""
    s = settings or LogSettings()
    metrics = PredlogMetrics(registry)
    sink: Sink
    if redis_url:
        sink = RedisStreamSink(
            redis_url,
            Path(data_dir) / "spill",
            metrics,
            maxlen=s.maxlen,
            ttl_s=s.ttl_s,
            spill_max_bytes=s.spill_max_bytes,
        )
    else:
        sink = FileSink(Path(data_dir), metrics, index_capacity=s.index_capacity)
    return PredictionLog(
        sink,
        metrics,
        capacity=s.capacity,
        sample_rate=s.sample_rate,
        tensor_sample_rate=s.tensor_sample_rate,
        top_k=s.top_k,
        batch_entries=s.batch_entries,
        linger_s=s.linger_s,
    )
