"""Prometheus families of the prediction log, in a registry that the caller passes in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class PredlogMetrics:
    """The CONTRACT.md families: records written and dropped per sink, and the lag."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.records = Counter(
            "fleetserve_predlog_records_total",
            "Records (predictions and feedback) a sink has taken",
            ["sink"],
            registry=registry,
        )
        self.dropped = Counter(
            "fleetserve_predlog_dropped_total",
            "Records dropped without being logged (full buffer, full spill, or not encodable)",
            ["sink"],
            registry=registry,
        )
        self.lag = Gauge(
            "fleetserve_predlog_lag_records",
            "Records waiting: in the gateway, buffered or spilled; in the writer, not yet in Parquet",
            registry=registry,
        )
