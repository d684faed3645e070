"""The monitor loop: records from a `RecordSource` go to every `Analyser`; each second the
analysers recompute their figures, which the monitor exports as a Prometheus collector.

Analysers are the extension point: the quality analyser (labels) and the drift analyser
(input and output profiles against a version's reference), each a class with the four
methods of `Analyser`. While the source cannot be read, the analysers are not refreshed:
the exported values stay the last ones computed, and the monitor retries with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from fleetserve.wire import fleet_pb2

from .streams import RecordBatch, RecordSource, SourceUnavailable

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
KINDS = ("predictions", "feedback")


class Analyser(Protocol):
    """One consumer of the records (quality, drift, ...)."""

    def on_predictions(self, records: Sequence[fleet_pb2.PredictionRecord]) -> None:
        """Take prediction records, in stream order."""
        ...

    def on_feedback(self, records: Sequence[fleet_pb2.FeedbackRecord]) -> None:
        """Take feedback records, in stream order."""
        ...

    def refresh(self) -> None:
        """Recompute the figures `collect` exports (called every refresh period)."""
        ...

    def collect(self) -> Iterable[Metric]:
        """The metric families of the last refresh."""
        ...


class Monitor(Collector):
    """Feeds records to analysers, refreshes them, and exports their metrics (`collect`)."""

    def __init__(
        self,
        source: RecordSource,
        analysers: Sequence[Analyser],
        refresh_s: float = 1.0,
        retry_s: tuple[float, float] = (0.5, 5.0),
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.source = source
        self.analysers = list(analysers)
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        self._sleep = sleep
        self.up = False
        self.records = dict.fromkeys(KINDS, 0)
        self.undecodable = dict.fromkeys(KINDS, 0)
        self.failures = 0  # failed reads of the source
        self.errors = 0  # analyser exceptions (logged)

    def feed(self, batch: RecordBatch) -> None:
        """Hand one batch to every analyser: its predictions first, then its feedback."""
        self.records["predictions"] += len(batch.predictions)
        self.records["feedback"] += len(batch.feedback)
        for kind, n in batch.undecodable.items():
            self.undecodable[kind] = self.undecodable.get(kind, 0) + n
        for analyser in self.analysers:
            try:
                if batch.predictions:
                    analyser.on_predictions(batch.predictions)
                if batch.feedback:
                    analyser.on_feedback(batch.feedback)
            except Exception:  # one analyser's bug must not stop the others or the reading
                self.errors += 1
                log.exception("analyser %s failed on a batch", type(analyser).__name__)

    def refresh(self) -> None:
        """Recompute every analyser's figures."""
        for analyser in self.analysers:
            try:
                analyser.refresh()
            except Exception:
                self.errors += 1
                log.exception("analyser %s failed to refresh", type(analyser).__name__)

    async def read_once(self) -> bool:
        """Read and feed one batch; False when the source could not be read."""
        try:
            batch = await self.source.read()
        except SourceUnavailable as exc:
            self.failures += 1
            if self.up or self.failures == 1:
                log.warning("%s; keeping the last values and retrying", exc)
            self.up = False
            return False
        if not self.up:
            again = f" again after {self.failures} failed reads" if self.failures else ""
            log.info("reading records%s", again)
        self.up = True
        self.feed(batch)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Read, feed and refresh until `stop` is set."""
        refreshing = asyncio.create_task(self._refresh_loop(stop))
        delay = self.retry_s[0]
        try:
            while not stop.is_set():
                if await self.read_once():
                    delay = self.retry_s[0]
                    await asyncio.sleep(0)  # let the refresh and the metrics server run
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(self.retry_s[1], delay * 2)
        finally:
            refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refreshing
            self.refresh()

    async def _refresh_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.up:
                self.refresh()
            await self._sleep(self.refresh_s)

    def collect(self) -> Iterable[Metric]:
        """The monitor's own metrics, then every analyser's (a prometheus_client collector)."""
        up = GaugeMetricFamily(
            "fleetserve_monitor_stream_up", "1 while the monitor can read its record source"
        )
        up.add_metric([], 1.0 if self.up else 0.0)
        yield up
        records = CounterMetricFamily(
            "fleetserve_monitor_records", "Records the monitor has read", labels=["stream"]
        )
        bad = CounterMetricFamily(
            "fleetserve_monitor_undecodable_records",
            "Stream entries that were not a record of their stream's type",
            labels=["stream"],
        )
        for kind in KINDS:
            records.add_metric([kind], float(self.records.get(kind, 0)))
            bad.add_metric([kind], float(self.undecodable.get(kind, 0)))
        yield records
        yield bad
        for analyser in self.analysers:
            yield from analyser.collect()
