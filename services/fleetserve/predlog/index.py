"""The index of logged requests that the feedback API looks ids up in.

With Redis it is two hashes per request, written with the records (redis_sink.py); with the
file sink it is `MemoryIndex`, bounded, in the memory of the replica that served the request.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable

from fleetserve.wire import fleet_pb2

from .entry import Logged

PREDICTION_PREFIX = "fleetserve:prediction:"
LABELS_PREFIX = "fleetserve:labels:"
DEFAULT_TTL_S = 7 * 24 * 3600


def prediction_key(request_id: str) -> str:
    """Redis hash of a logged request: model, version, route, items, time_ns."""
    return PREDICTION_PREFIX + request_id


def labels_key(request_id: str) -> str:
    """Redis hash of a request's labels: item index -> class index."""
    return LABELS_PREFIX + request_id


def requests_of(records: Iterable[fleet_pb2.PredictionRecord]) -> dict[str, Logged]:
    """The requests the records belong to (items: highest item index + 1), in first-seen order.

    The records of one request are built and written together, so a batch holds all of them.
    """
    found: dict[str, Logged] = {}
    for r in records:
        seen = found.get(r.request_id)
        if seen is None:
            found[r.request_id] = Logged(r.model, r.version, r.route, r.item_index + 1, r.time_unix_ns)
        elif r.item_index >= seen.items:
            seen.items = r.item_index + 1
    return found


class MemoryIndex:
    """The most recent `capacity` logged requests (oldest forgotten first), with their labels."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._requests: OrderedDict[str, tuple[str, str, str, int, int]] = OrderedDict()
        self._labels: dict[str, dict[int, int]] = {}

    def __len__(self) -> int:
        return len(self._requests)

    def add(self, requests: dict[str, Logged]) -> None:
        """Remember requests, forgetting the oldest beyond the capacity."""
        for rid, logged in requests.items():
            # interned names: a million entries share a handful of model / version / route strings
            model, version, route = (sys.intern(s) for s in (logged.model, logged.version, logged.route))
            self._requests[rid] = (model, version, route, logged.items, logged.time_ns)
            self._requests.move_to_end(rid)
        while len(self._requests) > self.capacity:
            old, _ = self._requests.popitem(last=False)
            self._labels.pop(old, None)

    def lookup(self, request_ids: Iterable[str]) -> dict[str, Logged]:
        """What is known of each id that the index holds."""
        out: dict[str, Logged] = {}
        for rid in request_ids:
            found = self._requests.get(rid)
            if found is not None:
                out[rid] = Logged(*found, labels=dict(self._labels.get(rid, {})))
        return out

    def label(self, records: Iterable[fleet_pb2.FeedbackRecord]) -> None:
        """Record labels of requests the index holds (others are ignored)."""
        for r in records:
            if r.request_id in self._requests:
                self._labels.setdefault(r.request_id, {})[r.item_index] = r.label
