"""What the gateway hands the prediction log, and what the log remembers of a prediction."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class LogEntry:
    """One answered inference request, as the gateway saw it.

    `inputs` / `outputs` are the request's tensors by name; when `batched`, their first axis is
    the items of the request (one record per item), otherwise the whole tensor is one item.
    `first_output` names the output whose top-k classes the records carry; `labels` are the
    class names of that output (labels.txt), if any.
    """

    request_id: str
    time_ns: int
    model: str
    version: str
    route: str
    route_key: str | None
    protocol: str
    latency_s: float
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    batched: bool
    labels: list[str] | None
    first_output: str


@dataclass(slots=True)
class Logged:
    """What the index knows of one logged request: enough to accept and route its feedback.

    `labels` maps item index -> class index of the labels already given for that request.
    """

    model: str
    version: str
    route: str
    items: int
    time_ns: int
    labels: dict[int, int] = field(default_factory=dict)
