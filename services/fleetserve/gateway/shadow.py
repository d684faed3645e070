"""Shadow traffic: after the primary has answered, the same inputs go to each shadow version;
their outputs are compared with the primary's and never reach the client. A shadow that fails
or is slow changes nothing for the primary: it runs as its own task, bounded in number."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from fleetserve.common.metrics import GatewayMetrics
from fleetserve.repository.version import ServedVersion

log = logging.getLogger(__name__)
Tensors = dict[str, np.ndarray]


def compare(primary: Tensors, shadow: Tensors) -> tuple[list[bool], float | None]:
    """Per-row top-1 agreement on the first output both have with a class axis, and the mean
    absolute difference over every output both have with the same shape."""
    agree: list[bool] = []
    diffs: list[float] = []
    for name, p in primary.items():
        s = shadow.get(name)
        if s is None or s.shape != p.shape or p.dtype.kind not in "fiub":
            continue
        diffs.append(float(np.mean(np.abs(p.astype(np.float64) - s.astype(np.float64)))) if p.size else 0.0)
        if not agree and p.ndim >= 2 and p.shape[-1] > 1:
            agree = list(
                np.argmax(p.reshape(p.shape[0], -1), axis=1) == np.argmax(s.reshape(s.shape[0], -1), axis=1)
            )
    return agree, (sum(diffs) / len(diffs) if diffs else None)


class ShadowRunner:
    """Runs shadow requests in the background and records how they compare."""

    def __init__(self, metrics: GatewayMetrics, max_pending: int = 64) -> None:
        self._metrics = metrics
        self._max_pending = max_pending
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0

    def schedule(
        self, shadows: list[ServedVersion], tensors: Tensors, primary: Tensors, protocol: str
    ) -> None:
        """Start one background comparison per shadow version (dropped past `max_pending`)."""
        loop = asyncio.get_running_loop()
        for sv in shadows:
            if len(self._tasks) >= self._max_pending:
                self.dropped += 1
                continue
            task = loop.create_task(self._run(sv, tensors, primary, protocol))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, sv: ServedVersion, tensors: Tensors, primary: Tensors, protocol: str) -> None:
        started = time.perf_counter()
        code = "ok"
        try:
            output = await sv.infer(tensors)
        except Exception as exc:  # a shadow's failure is only counted, never raised
            code = getattr(getattr(exc, "code", None), "value", "internal")
            log.debug("shadow %s v%s failed: %s", sv.name, sv.version, exc)
            output = None
        m = self._metrics
        m.requests.labels(sv.name, sv.version_str, protocol, "shadow", code).inc()
        m.request_duration.labels(sv.name, sv.version_str, protocol).observe(time.perf_counter() - started)
        if output is None:
            return
        agree, diff = compare(primary, output)
        if agree:
            n_true = sum(agree)
            m.shadow_compared.labels(sv.name, sv.version_str, "true").inc(n_true)
            m.shadow_compared.labels(sv.name, sv.version_str, "false").inc(len(agree) - n_true)
        if diff is not None:
            m.shadow_abs_diff.labels(sv.name, sv.version_str).observe(diff)

    async def drain(self) -> None:
        """Wait for the running comparisons (at shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def pending(self) -> list[Any]:
        """The running comparisons."""
        return list(self._tasks)
