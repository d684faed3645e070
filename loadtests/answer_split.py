"""Each answer's time split at the data plane, from the client's times and the server's log.

A client that gives each request its own ``x-request-id`` knows when it called and when the
answer came; the server's prediction log knows, per request id, when the data plane finished
(``time_unix_ns``) and how long it took (``latency_seconds``, from the decoded request to the
answer). Joined, per answer (ms):

- ``before``: from the client's call to the data plane's start (the client's gRPC, the wire,
  grpc.aio and decoding);
- ``server``: the data plane (validation, queue, batch, response);
- ``after``: from the data plane's end to the answer in the client (encoding, the way back).

Both clocks are this machine's wall clock (``time.time_ns``). Used by
``loadtests/latency_split.py`` and by the batching bench's overload run.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# What a traced call leaves: (request id, call start ns, answer ns, answered).
Traced = tuple[str, int, int, bool]


def new_request_id() -> str:
    """A request id for one traced call (32 hex characters, as fleetserve's own)."""
    return uuid.uuid4().hex


def logged_times(data_dir: Path) -> dict[str, tuple[int, float]]:
    """Request id -> (time_unix_ns, latency_seconds) of every prediction record under ``data_dir``."""
    from fleetserve.predlog.framing import read_frames
    from fleetserve.wire import fleet_pb2

    found: dict[str, tuple[int, float]] = {}
    for path in sorted(data_dir.rglob("predictions-*.bin")):
        with path.open("rb") as stream:
            for _, payload in read_frames(stream):
                record = fleet_pb2.PredictionRecord.FromString(payload)
                found[record.request_id] = (record.time_unix_ns, record.latency_seconds)
    return found


def split(traced: Sequence[Traced], logged: dict[str, tuple[int, float]]) -> list[dict[str, Any]]:
    """Per answered and logged request (ms): total, before, server, after; ``at_s``: its call."""
    rows = []
    for rid, start_ns, end_ns, answered in traced:
        if not answered or rid not in logged:
            continue
        done_ns, seconds = logged[rid]
        began_ns = done_ns - seconds * 1e9
        rows.append(
            {
                "id": rid,
                "at_s": start_ns / 1e9,
                "total": (end_ns - start_ns) / 1e6,
                "before": (began_ns - start_ns) / 1e6,
                "server": seconds * 1e3,
                "after": (end_ns - done_ns) / 1e6,
            }
        )
    return rows


def slowest(rows: Sequence[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The ``count`` answers that took longest, slowest first."""
    return sorted(rows, key=lambda r: -r["total"])[:count]


def over_limit(rows: Sequence[dict[str, Any]], limit_ms: float) -> tuple[int, int]:
    """How many answers took longer than ``limit_ms``, and how many of those were within it in
    the data plane (so the rest of their time went before or after it)."""
    over = [r for r in rows if r["total"] > limit_ms]
    return len(over), sum(1 for r in over if r["server"] <= limit_ms)
