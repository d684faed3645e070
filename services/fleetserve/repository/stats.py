"""Per-version inference statistics, in the shape of Triton's statistics extension."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fleetserve.batching.batcher import BatchReport


@dataclass(slots=True)
class Duration:
    """A count and the nanoseconds it took in total."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float, n: int = 1) -> None:
        self.count += n
        self.ns += int(seconds * 1e9)


@dataclass(slots=True)
class VersionStats:
    """Cumulative statistics of one model version. Updated on the event loop thread only."""

    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: dict[int, Duration] = field(default_factory=dict)

    def record_batch(self, report: BatchReport) -> None:
        """Account an executed batch (queue waits and compute time)."""
        self.execution_count += 1
        if report.failed:
            return
        self.inference_count += report.rows
        for q in report.queue_seconds:
            self.queue.add(q)
        self.compute_infer.add(report.compute_seconds, report.items)
        self.batches.setdefault(report.rows, Duration()).add(report.compute_seconds)

    def record_request(self, seconds: float, ok: bool) -> None:
        """Account an answered request."""
        (self.success if ok else self.fail).add(seconds)
        self.last_inference_ms = time.time_ns() // 1_000_000
