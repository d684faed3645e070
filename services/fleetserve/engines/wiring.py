"""The parts of one gateway replica, wired the same way by every engine.

Model manager (with the rollout plan's pinned versions), data plane, router, prediction log
and the batch metrics. An engine adds only how requests arrive (the local engine's uvicorn and
grpc.aio servers, Ray's proxies) and where runtimes run (`RuntimeOptions.placement`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from fleetserve.common.metrics import GatewayMetrics
from fleetserve.common.settings import ServeSettings
from fleetserve.gateway.dataplane import DataPlane
from fleetserve.predlog.log import PredictionLog, prediction_log
from fleetserve.repository.manager import ModelManager
from fleetserve.repository.version import ServedVersion
from fleetserve.rollout.router import Router
from fleetserve.rollout.stores import plan_store
from fleetserve.runtimes.base import RuntimeOptions

# The event loop shares the GIL with the prediction log's worker and the executor threads;
# Python hands the GIL over every 5 ms by default, so a thread busy in Python (building
# prediction records) could hold requests up to 5 ms. Measured on digits (gRPC, one core,
# the log at its default of every request): closed loop c=64 1,380-1,600 -> 1,700-1,800
# req/s; open loop at 400-800 req/s, p99 5.4-5.7 -> 4.8-4.9 ms.
GIL_SWITCH_INTERVAL_S = 0.0005


def share_the_gil_finely() -> None:
    """Set this process's GIL switch interval for a gateway replica (see GIL_SWITCH_INTERVAL_S)."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def batch_recorder(metrics: GatewayMetrics):  # type: ignore[no-untyped-def]
    """The batchers' on_batch hook: batch size, queue and compute time, queue depth and the
    latency model's coefficients, per model version (label children cached)."""
    children: dict[tuple[str, str], tuple] = {}  # type: ignore[type-arg]

    def record(sv: ServedVersion, report) -> None:  # type: ignore[no-untyped-def]
        key = (sv.name, sv.version_str)
        found = children.get(key)
        if found is None:
            found = (
                metrics.batch_size.labels(*key),
                metrics.queue_duration.labels(*key),
                metrics.compute_duration.labels(*key),
                metrics.queue_depth.labels(*key),
                metrics.batch_latency.labels(*key, "per_row"),
                metrics.batch_latency.labels(*key, "fixed"),
            )
            children[key] = found
        batch, queue, compute, depth, per_row, fixed = found
        batch.observe(report.rows)
        for q in report.queue_seconds:
            queue.observe(q)
        compute.observe(report.compute_seconds)
        depth.set(sv.batcher.depth)
        per_row.set(sv.batcher.latency.a)
        fixed.set(sv.batcher.latency.b)

    return record


@dataclass
class GatewayParts:
    """What serves requests in one replica, before any transport is attached."""

    metrics: GatewayMetrics
    plans: Any  # a plan store (file or Redis): rollout/stores.py
    manager: ModelManager
    predlog: PredictionLog
    dataplane: DataPlane


def build_gateway(
    settings: ServeSettings,
    *,
    inline_below_s: float,
    placement: Any = None,
    metrics: GatewayMetrics | None = None,
) -> GatewayParts:
    """Wire a replica's parts from its settings. `inline_below_s`: batches predicted faster than
    this run on the event loop (0: never); `placement`: where runtimes are created (None: here)."""
    metrics = metrics or GatewayMetrics()
    options = RuntimeOptions(
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        torch_threads=settings.torch_threads,
        placement=placement,
    )
    plans = plan_store(settings.redis_url, settings.model_repository)

    def plan_versions(model: str) -> set[int]:
        plan = plans.get(model)
        return plan.versions() if plan is not None else set()

    manager = ModelManager(
        settings.model_repository,
        options,
        default_max_batch_size=settings.default_max_batch_size,
        on_batch=batch_recorder(metrics),
        on_ready=lambda m, v, ok: metrics.model_ready.labels(m, v).set(1 if ok else 0),
        inline_below_s=inline_below_s,
        pinned=plan_versions,
    )
    predlog = prediction_log(settings.redis_url, settings.data_dir, metrics.registry)
    dataplane = DataPlane(
        manager,
        metrics,
        admin_token=settings.token(),
        control_mode=settings.model_control_mode,
        router=Router(plans),
        predlog=predlog,
    )
    return GatewayParts(metrics, plans, manager, predlog, dataplane)
