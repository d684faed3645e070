"""The writer sidecar (`fleetserve predlog`): both streams -> Parquet, each record exactly once.

A Redis consumer group `fleetserve-predlog` on `fleetserve:predictions` and
`fleetserve:feedback`. Entries are gathered per stream into batches (at most `batch_records`,
at most `flush_s` old), each batch written by store.py (temporary name, fsync, rename), and
only then acknowledged (XACK). A writer killed at any moment leaves its batch pending; started
again under the same consumer name it first re-reads its own pending entries (XREADGROUP from
id 0), whose part files it finds already in place or writes now; entries that other, dead
consumers left pending for `claim_idle_s` are taken over with XAUTOCLAIM. Metrics (port 8011):
`fleetserve_predlog_records_total{sink="parquet"}`, `fleetserve_predlog_dropped_total`,
`fleetserve_predlog_lag_records` (entries not yet acknowledged: the group's lag plus pending).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, start_http_server
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .metrics import PredlogMetrics
from .redis_sink import FEEDBACK_STREAM, FIELD, PREDICTIONS_STREAM
from .settings import WriterSettings
from .store import Outcome, ParquetStore

log = logging.getLogger(__name__)

GROUP = "fleetserve-predlog"
STREAMS = (PREDICTIONS_STREAM, FEEDBACK_STREAM)
SINK = "parquet"
Entry = tuple[str, bytes | None]


class WriterMetrics(PredlogMetrics):
    """The CONTRACT.md predlog families plus files written and duplicates skipped."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.files = Counter(
            "fleetserve_predlog_files_total", "Parquet part files written", ["kind"], registry=registry
        )
        self.duplicates = Counter(
            "fleetserve_predlog_duplicates_total",
            "Records skipped because Parquet holds them already",
            ["kind"],
            registry=registry,
        )


class Writer:
    """The consumer loop (see the module docstring)."""

    def __init__(
        self, client: redis.Redis, store: ParquetStore, metrics: WriterMetrics, settings: WriterSettings
    ) -> None:
        self.client, self.store, self.metrics, self.settings = client, store, metrics, settings
        self._batches: dict[str, dict[str, bytes | None]] = {s: {} for s in STREAMS}
        self._started: dict[str, float] = {}
        self._next_claim = 0.0
        self._next_lag = 0.0
        self._down = False

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; then write what is gathered and return."""
        self.store.load()
        ready = False
        while not stop.is_set():
            try:
                if not ready:
                    self.setup()
                    self.recover()
                    ready = True
                self.step()
                if self._down:
                    log.info("Redis is reachable again")
                    self._down = False
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if not self._down:
                    log.warning("Redis unreachable (%s): retrying", exc)
                self._down, ready = True, False
                stop.wait(1.0)
            except OSError as exc:  # the batch stays gathered (and pending) and is written again
                log.error("cannot write Parquet under %s (%s): retrying in 5 s", self.store.out, exc)
                stop.wait(5.0)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("the consumer group is gone (Redis restarted empty?): creating it again")
                ready = False
        try:
            for stream in STREAMS:
                self._flush(stream)
        except RedisError as exc:
            log.warning("at stop, batches stay pending for the next start: %s", exc)

    def setup(self) -> None:
        """Create the consumer group on both streams (and the streams), if missing."""
        for stream in STREAMS:
            try:
                self.client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def recover(self) -> None:
        """Write (or find written) and acknowledge this consumer's pending entries."""
        for stream in STREAMS:
            while True:
                reply = self.client.xreadgroup(
                    GROUP, self.settings.consumer, {stream: "0"}, count=self.settings.batch_records
                )
                entries = _entries(reply).get(stream, [])
                if not entries:
                    break
                log.info("resuming %d pending entries of %s", len(entries), stream)
                # merged: what was gathered before a Redis outage stays (Redis may have lost it)
                self._gather(stream, entries)
                self._flush(stream)

    def step(self) -> None:
        """Read what is new (blocking briefly), take over abandoned entries, write due batches."""
        now = time.monotonic()
        for stream in STREAMS:
            if self._due(stream, now):
                self._flush(stream)
        room = min(self.settings.batch_records - len(b) for b in self._batches.values())
        deadlines = [t + self.settings.flush_s for t in self._started.values()]
        block_s = min([0.5, *(d - now for d in deadlines)])
        reply = self.client.xreadgroup(
            GROUP,
            self.settings.consumer,
            dict.fromkeys(STREAMS, ">"),
            count=max(1, room),
            block=max(1, int(block_s * 1000)),
        )
        for stream, entries in _entries(reply).items():
            self._gather(stream, entries)
        if time.monotonic() >= self._next_claim:
            self._claim()
            self._next_claim = time.monotonic() + self.settings.claim_idle_s / 2
        now = time.monotonic()
        for stream in STREAMS:
            if self._due(stream, now):
                self._flush(stream)
        if now >= self._next_lag:
            self._update_lag()
            self._next_lag = now + 1.0

    def _gather(self, stream: str, entries: list[Entry]) -> None:
        if entries:
            self._started.setdefault(stream, time.monotonic())
            self._batches[stream].update(entries)

    def _due(self, stream: str, now: float) -> bool:
        batch = self._batches[stream]
        if not batch:
            return False
        return (
            len(batch) >= self.settings.batch_records or now - self._started[stream] >= self.settings.flush_s
        )

    def _flush(self, stream: str) -> None:
        batch = self._batches[stream]
        if not batch:
            return
        entries = list(batch.items())
        write: Callable[[list[Entry]], Outcome]
        kind = "predictions" if stream == PREDICTIONS_STREAM else "feedback"
        write = self.store.write_predictions if stream == PREDICTIONS_STREAM else self.store.write_feedback
        outcome = write(entries)
        self.client.xack(stream, GROUP, *batch.keys())
        batch.clear()
        self._started.pop(stream, None)
        self._next_lag = 0.0  # the lag changed: show it at once
        m = self.metrics
        m.records.labels(SINK).inc(outcome.written)
        m.dropped.labels(SINK).inc(outcome.dropped)
        m.duplicates.labels(kind).inc(outcome.duplicates)
        m.files.labels(kind).inc(outcome.files)
        log.debug("%s: %d entries, %s", stream, len(entries), outcome)

    def _claim(self) -> None:
        for stream in STREAMS:
            room = self.settings.batch_records - len(self._batches[stream])
            if room <= 0:
                continue
            reply = self.client.xautoclaim(
                stream,
                GROUP,
                self.settings.consumer,
                min_idle_time=int(self.settings.claim_idle_s * 1000),
                start_id="0-0",
                count=room,
            )
            claimed = (
                [_entry(e) for e in reply[1]] if isinstance(reply, list | tuple) and len(reply) > 1 else []
            )
            if claimed:
                log.info("took over %d entries of %s left pending by another consumer", len(claimed), stream)
                self._gather(stream, claimed)

    def _update_lag(self) -> None:
        total = 0
        for stream in STREAMS:
            for group in self.client.xinfo_groups(stream):
                name = _text(group.get("name", b""))
                if name == GROUP:
                    total += int(group.get("lag") or 0) + int(group.get("pending") or 0)
        self.metrics.lag.set(total)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(raw: Any) -> Entry:
    entry_id, fields = raw
    payload = None
    if isinstance(fields, dict):
        payload = fields.get(FIELD.encode(), fields.get(FIELD))
    return _text(entry_id), payload if isinstance(payload, bytes) else None


def _entries(reply: Any) -> dict[str, list[Entry]]:
    """XREADGROUP's reply (RESP2 list or RESP3 dict) as {stream: [(id, payload)]}."""
    out: dict[str, list[Entry]] = {}
    items = reply.items() if isinstance(reply, dict) else (reply or [])
    for stream, entries in items:
        if isinstance(entries, list) and len(entries) == 1 and isinstance(entries[0], list):
            entries = entries[0]  # RESP3 wraps the entries once more
        out[_text(stream)] = [_entry(e) for e in entries]
    return out


def serve(settings: WriterSettings) -> None:
    """Run the writer until SIGTERM / SIGINT, with its metrics on `settings.metrics_port`.

    Raises `PortTaken` when the metrics port cannot be bound.
    """
    from fleetserve.engines.ports import PortTaken

    registry = CollectorRegistry()
    metrics = WriterMetrics(registry)
    try:
        server, _ = start_http_server(settings.metrics_port, addr=settings.host, registry=registry)
    except OSError as exc:
        what = f"port {settings.metrics_port} on {settings.host} (predlog writer metrics)"
        raise PortTaken(f"{what} is taken: {exc.strerror}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2.0, socket_timeout=10.0)
    log.info(
        "predlog writer: %s -> %s (metrics on %s:%d)",
        STREAMS,
        settings.out,
        settings.host,
        settings.metrics_port,
    )
    try:
        Writer(client, ParquetStore(settings.out), metrics, settings).run(stop)
    finally:
        client.close()
        server.shutdown()
