"""The Prometheus metrics of a gateway replica, named and labelled as in CONTRACT.md.

One `GatewayMetrics` per process, created at start-up and passed to whoever records; the
families live in their own registry, never in module globals.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

TIME_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class GatewayMetrics:
    """Metric families of the serving path."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "fleetserve_requests_total",
            "Inference requests answered",
            ["model", "version", "protocol", "route", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            "fleetserve_request_duration_seconds",
            "Time from request decoded to response ready",
            ["model", "version", "protocol"],
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.queue_duration = Histogram(
            "fleetserve_queue_duration_seconds",
            "Time a request waited for its batch",
            ["model", "version"],
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.compute_duration = Histogram(
            "fleetserve_compute_duration_seconds",
            "Time the runtime took for a batch",
            ["model", "version"],
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "fleetserve_batch_size",
            "Items per executed batch",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "fleetserve_queue_depth", "Requests waiting", ["model", "version"], registry=r
        )
        self.inflight = Gauge(
            "fleetserve_inflight_requests", "Requests being handled", ["protocol"], registry=r
        )
        self.rejected = Counter(
            "fleetserve_rejected_total",
            "Requests rejected before compute",
            ["model", "version", "reason"],
            registry=r,
        )
        self.batch_latency = Gauge(
            "fleetserve_batch_latency_seconds",
            "The fitted latency model of batches: seconds = per_row * rows + fixed",
            ["model", "version", "term"],
            registry=r,
        )
        self.route_weight = Gauge(
            "fleetserve_route_weight",
            "Percent of traffic the rollout plan routes",
            ["model", "version", "route"],
            registry=r,
        )
        self.shadow_compared = Counter(
            "fleetserve_shadow_compared_total",
            "Shadow answers compared with the primary's, per row",
            ["model", "version", "agree"],
            registry=r,
        )
        self.shadow_abs_diff = Histogram(
            "fleetserve_shadow_abs_diff",
            "Mean absolute difference between a shadow's outputs and the primary's",
            ["model", "version"],
            buckets=(1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.model_ready = Gauge(
            "fleetserve_model_ready", "1 when the version serves", ["model", "version"], registry=r
        )
