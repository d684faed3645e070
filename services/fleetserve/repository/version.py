"""A loaded model version: its effective config, runtime, batcher and statistics."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from fleetserve.batching import v2batch
from fleetserve.batching.batcher import Batcher, BatchReport
from fleetserve.protocol import datatypes
from fleetserve.runtimes.base import Runtime, TensorSpec
from fleetserve.wire import model_config_pb2 as mc

from .config import config_specs
from .scheduling import Scheduling
from .stats import VersionStats

Tensors = dict[str, np.ndarray]


class ServedVersion:
    """One version of a model, ready to compute. `infer` is called on the event loop."""

    def __init__(
        self,
        name: str,
        version: int,
        config: mc.ModelConfig,
        runtime: Runtime,
        labels: list[str] | None,
        on_batch: Callable[[ServedVersion, BatchReport], None] | None = None,
        inline_below_s: float = 0.0,
    ) -> None:
        self.name = name
        self.version = version
        self.version_str = str(version)
        self.config = config
        self.runtime = runtime
        self.labels = labels
        self.inputs, self.outputs = config_specs(config)
        self.input_by_name: dict[str, TensorSpec] = {s.name: s for s in self.inputs}
        self.output_names = [s.name for s in self.outputs]
        self.max_batch_size = config.max_batch_size
        self.stats = VersionStats()
        self._on_batch = on_batch
        self.scheduling = Scheduling.from_config(config)
        sched = self.scheduling
        executors = sum(g.count for g in config.instance_group) or 1
        self.batcher: Batcher[Tensors, Tensors] = Batcher(
            self._run,
            # Requests are merged only where the config asks for dynamic batching, as in Triton;
            # otherwise each request runs alone (with its own batch dimension).
            max_batch_size=config.max_batch_size if sched.batching else 0,
            executors=executors,
            policy=sched.policy(),
            on_batch=self._record,
            inline_below_s=inline_below_s,
            preferred_batch_sizes=sched.preferred,
            max_queue_delay_s=sched.max_queue_delay_s,
            max_queue_size=sched.max_queue_size,
            name=f"{name}-v{version}",
        )

    @property
    def platform(self) -> str:
        return self.config.platform

    async def infer(self, tensors: Tensors, level: int = 0, deadline: float | None = None) -> Tensors:
        """Compute one request's outputs through the batcher (`level` from `scheduling.level`)."""
        if self.max_batch_size > 0:
            rows, key = v2batch.rows_of(tensors), v2batch.batch_key(tensors)
            return await self.batcher.submit(tensors, rows, key, priority=level, deadline=deadline)
        return await self.batcher.submit(tensors, priority=level, deadline=deadline)

    def _run(self, items: list[Tensors]) -> list[Tensors]:
        if self.max_batch_size <= 0:
            return [self.runtime.infer(items[0])]
        rows = [v2batch.rows_of(i) for i in items]
        outputs = self.runtime.infer(v2batch.merge(items))
        return v2batch.split(outputs, rows)

    def _record(self, report: BatchReport) -> None:
        self.stats.record_batch(report)
        if self._on_batch is not None:
            self._on_batch(self, report)

    def warm_up(self, runs: int = 3) -> None:
        """Run batches of zeros so the first request pays no lazy initialisation, and seed the
        latency model at two batch sizes (1 and up to 8 rows), enough to fit a * rows + b."""
        sizes = [1]
        if self.max_batch_size > 1 and self.scheduling.batching:
            sizes.append(min(self.max_batch_size, 8))
        for rows in sizes:
            tensors: Tensors = {}
            for spec in self.inputs:
                if spec.datatype == "BYTES":
                    return  # no generic zero value for strings
                shape = tuple(
                    rows if i == 0 and self.max_batch_size > 0 else (1 if d < 0 else d)
                    for i, d in enumerate(spec.shape)
                )
                tensors[spec.name] = np.zeros(shape, dtype=datatypes.BY_NAME[spec.datatype].dtype)
            self.runtime.infer(tensors)
            for _ in range(runs):
                started = time.perf_counter()
                self.runtime.infer(tensors)
                self.batcher.latency.observe(rows, time.perf_counter() - started)

    async def close(self) -> None:
        """Drain in-flight requests, then release the runtime."""
        await self.batcher.close()
        self.runtime.unload()
