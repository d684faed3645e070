"""Where the time of each answer goes: before the data plane, in it, or after it.

One ``fleetserve serve`` (adaptive, the batching bench's config for the model) pinned to the
first core; Poisson arrivals from this process on the second, sent by the batching bench's own
open-loop client (tritonclient.grpc.aio), each request with its own ``x-request-id``. Afterwards
the client's times are joined, by request id, with the server's prediction log
(``loadtests/answer_split.py``: ``before`` the data plane, in it (``server``), ``after`` it).
It prints the distribution of each and the slowest answers with their split.

Usage::

    python -m loadtests.latency_split [--model resnet18] [--rate 12.5] [--seconds 120] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from loadtests import batching, openloop
from loadtests.answer_split import Traced, logged_times, over_limit, slowest, split
from loadtests.bench import bench_cores, pinned
from loadtests.stats import percentile

SLOWEST = 15


def report(rows: list[dict[str, Any]], kinds: dict[str, int], slo_ms: float) -> list[str]:
    """The distribution of each part and the slowest answers."""
    counted = ", ".join(f"{kinds[k]} {k}" for k in sorted(kinds))
    lines = [f"{len(rows)} answers joined with the prediction log; {sum(kinds.values())} sent: {counted}"]
    if not rows:
        return lines
    for part in ("total", "before", "server", "after"):
        values = [r[part] for r in rows]
        p50, p99, p999 = (percentile(values, q) for q in (50.0, 99.0, 99.9))
        lines.append(
            f"  {part:<7} p50 {p50:7.1f}  p99 {p99:7.1f}  p99.9 {p999:7.1f}  max {max(values):7.1f} ms"
        )
    over, within = over_limit(rows, slo_ms)
    lines.append(f"  over the {slo_ms:g} ms SLO: {over}; of them within it in the data plane: {within}")
    first = min(r["at_s"] for r in rows)
    lines.append(f"slowest {SLOWEST} (ms; at: seconds into the run):")
    lines.append("    total   before   server    after       at")
    for r in slowest(rows, SLOWEST):
        lines.append(
            f"  {r['total']:7.1f}  {r['before']:7.1f}  {r['server']:7.1f}  {r['after']:7.1f}"
            f"  {r['at_s'] - first:7.1f}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="resnet18", choices=sorted(batching.MODELS))
    parser.add_argument("--rate", type=float, default=12.5, help="arrivals a second")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not (0 < args.rate <= 5000 and 0 < args.seconds <= 1800):
        parser.error("--rate must be within (0, 5000] and --seconds within (0, 1800]")
    found = batching.bench_model(args.model)
    if found is None:
        return 1
    model = found.spec
    settings = batching.MODELS[args.model]
    policy = next(p for p in batching.POLICIES if p.label == batching.ADAPTIVE)
    config = batching.policy_config(batching.read_config(found.folder / "config.pbtxt"), policy, settings)
    server_core, client_core = bench_cores()
    server = batching.PolicyServer(model, server_core, found.cache, config, "latency-split")
    schedule = openloop.poisson_schedule(args.rate, args.seconds, np.random.default_rng(args.seed))
    timeout = settings.slo_ms / 1e3 + batching.CLIENT_TIMEOUT_EXTRA_S
    traced: list[Traced] = []
    try:
        server.start()
        with pinned({client_core}):
            records, _ = asyncio.run(
                batching.open_records(server.urls["grpc"], model, schedule, timeout, traced)
            )
        time.sleep(batching.SPLIT_LOG_WAIT_S)  # the log's last records
        assert server.data_dir is not None
        logged = logged_times(server.data_dir)
    finally:
        server.stop()
    print(f"{args.model}, adaptive, {args.rate:g} req/s Poisson for {args.seconds:g} s (gRPC):")
    kinds = collections.Counter(r.kind for r in records)
    print("\n".join(report(split(traced, logged), dict(kinds), settings.slo_ms)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
