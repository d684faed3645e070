"""How a model version queues requests, from its config.pbtxt: batch policy, priority levels,
queue bound, and the deadline of each request.

Triton's `dynamic_batching` fields keep Triton's meaning (`preferred_batch_size`,
`max_queue_delay_microseconds`, `priority_levels`, `default_priority_level`,
`default_queue_policy`); fleetserve's own `parameters` add `latency_slo_ms`,
`latency_slo_headroom` and `batch_policy` (adaptive, the default; window, Triton's fixed window
of max_queue_delay_microseconds; none).

`latency_slo_ms` is the objective as a client sees it. The server's clock starts when the request
reaches the data plane, after the client sent it, the network carried it and the transport
decoded it, and stops before the answer travels back; so the batcher plans to be done within
`latency_slo_ms * (1 - latency_slo_headroom)` of arrival (headroom 0.1 by default). Measured
with the ResNet-18-shaped model (600 KB per request) at 120% load: with no headroom the server
met 100 ms on every request while the client saw a p99 of 110-112 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetserve.batching.policy import BatchPolicy, policy_named
from fleetserve.protocol.errors import invalid
from fleetserve.wire import model_config_pb2 as mc

from .config import ConfigError, parameter

DEFAULT_WINDOW_S = 0.001
DEFAULT_SLO_HEADROOM = 0.1


@dataclass(frozen=True, slots=True)
class Scheduling:
    """The queueing rules of one model version."""

    batching: bool  # dynamic_batching present: requests are merged
    policy_name: str
    window_s: float
    preferred: tuple[int, ...]
    max_queue_delay_s: float | None
    levels: int  # priority levels; 0 = one level
    default_level: int
    max_queue_size: int
    queue_timeout_s: float | None  # default_queue_policy timeout (REJECT)
    allow_timeout_override: bool
    slo_s: float | None  # latency_slo_ms
    slo_headroom: float = DEFAULT_SLO_HEADROOM  # latency_slo_headroom: the share left to the transport

    @classmethod
    def from_config(cls, config: mc.ModelConfig) -> Scheduling:
        """Read the rules; ConfigError names what is wrong."""
        db = config.dynamic_batching
        qp = db.default_queue_policy
        slo_text = parameter(config, "latency_slo_ms")
        try:
            slo_s = float(slo_text) / 1e3 if slo_text else None
        except ValueError:
            raise ConfigError(f"parameter latency_slo_ms must be a number, got '{slo_text}'") from None
        if slo_s is not None and slo_s <= 0:
            raise ConfigError("parameter latency_slo_ms must be positive")
        headroom_text = parameter(config, "latency_slo_headroom")
        try:
            headroom = float(headroom_text) if headroom_text else DEFAULT_SLO_HEADROOM
        except ValueError:
            raise ConfigError(
                f"parameter latency_slo_headroom must be a number, got '{headroom_text}'"
            ) from None
        if not 0 <= headroom < 1:
            raise ConfigError(f"parameter latency_slo_headroom must be in [0, 1), got {headroom:g}")
        delay = db.max_queue_delay_microseconds / 1e6 if db.max_queue_delay_microseconds else None
        name = parameter(config, "batch_policy", "adaptive")
        try:
            policy_named(name, delay or DEFAULT_WINDOW_S)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if db.priority_levels and not 1 <= (db.default_priority_level or 1) <= db.priority_levels:
            raise ConfigError("default_priority_level must lie within priority_levels")
        reject = qp.timeout_action == mc.ModelQueuePolicy.REJECT
        return cls(
            batching=config.HasField("dynamic_batching"),
            policy_name=name,
            window_s=delay or DEFAULT_WINDOW_S,
            preferred=tuple(sorted(int(p) for p in db.preferred_batch_size)),
            max_queue_delay_s=delay,
            levels=int(db.priority_levels),
            default_level=int(db.default_priority_level or (db.priority_levels and 1) or 0),
            max_queue_size=int(qp.max_queue_size),
            queue_timeout_s=qp.default_timeout_microseconds / 1e6
            if reject and qp.default_timeout_microseconds
            else None,
            allow_timeout_override=qp.allow_timeout_override,
            slo_s=slo_s,
            slo_headroom=headroom,
        )

    def policy(self) -> BatchPolicy:
        """A fresh policy object for a batcher."""
        return policy_named(self.policy_name, self.window_s)

    def level(self, priority: int) -> int:
        """The queue level of a request's `priority` (0: the model's default; 1 is served first)."""
        if not self.levels:
            return 0
        if priority == 0:
            return self.default_level
        if not 1 <= priority <= self.levels:
            raise invalid(f"priority {priority} is outside the model's priority levels 1..{self.levels}")
        return priority

    def deadline(
        self, arrival: float, timeout_s: float | None, transport_deadline: float | None
    ) -> float | None:
        """The earliest of: the model's SLO (less its headroom), the request's v2 `timeout`, the
        transport's deadline (gRPC) and the queue policy's timeout."""
        candidates = [transport_deadline] if transport_deadline is not None else []
        if self.slo_s is not None:
            candidates.append(arrival + self.slo_s * (1.0 - self.slo_headroom))
        if timeout_s is not None:
            candidates.append(arrival + timeout_s)
        if self.queue_timeout_s is not None and (timeout_s is None or not self.allow_timeout_override):
            candidates.append(arrival + self.queue_timeout_s)
        return min(candidates) if candidates else None
