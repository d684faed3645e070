"""What the prediction log costs the server: digits over gRPC, closed loop, side by side.

One ``fleetserve serve`` per (log setting, batch policy), all pinned to the first core, the
client (tritonclient.grpc.aio, this process) on the second, as in ``loadtests.batching``. Log
settings: ``off`` (``FLEETSERVE_PREDLOG_SAMPLE_RATE=0``), ``no-linger``
(``FLEETSERVE_PREDLOG_LINGER_S=0``: a batch of records per wake-up) and ``default``. Policies:
``none`` and ``adaptive``. The points run in rounds, every server once per round, so that a
slow spell of the machine falls on all of them; each line is the mean over the rounds.

Usage::

    python -m loadtests.predlog_cost [--rounds 3] [--seconds 4] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests import batching
from loadtests.bench import bench_cores, pinned

LOG_SETTINGS: dict[str, dict[str, str]] = {
    "off": {"FLEETSERVE_PREDLOG_SAMPLE_RATE": "0"},
    "no-linger": {"FLEETSERVE_PREDLOG_LINGER_S": "0"},
    "default": {},
}
POLICY_LABELS = (batching.NO_BATCHING, batching.ADAPTIVE)
MODEL = "digits"


def start_server(
    model: batching.ModelUnderTest, base: Any, setting: str, policy: batching.Policy, cache: Path, core: int
) -> batching.PolicyServer:
    """A digits server for one log setting and policy (its environment set only while it starts)."""
    config = batching.policy_config(base, policy, batching.MODELS[MODEL])
    server = batching.PolicyServer(model, core, cache, config, f"{setting}-{policy.label}")
    saved = {key: os.environ.get(key) for key in LOG_SETTINGS[setting]}
    os.environ.update(LOG_SETTINGS[setting])
    try:
        server.start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return server


async def measure(
    servers: dict[tuple[str, str], batching.PolicyServer],
    model: batching.ModelUnderTest,
    rounds: int,
    seconds: float,
    concurrency: int,
) -> dict[tuple[str, str], list[float]]:
    """Req/s of every server in every round."""
    rates: dict[tuple[str, str], list[float]] = {key: [] for key in servers}
    timeout = batching.MODELS[MODEL].slo_ms / 1e3 + batching.CLIENT_TIMEOUT_EXTRA_S
    for index in range(rounds):
        for key, server in servers.items():
            point = await batching.closed_point(
                server.urls["grpc"], model, concurrency, seconds, 0.5, timeout
            )
            rates[key].append(point["req_per_s"])
            print(f"  round {index + 1} {key[0]:<10} {key[1]:<9} {point['req_per_s']:8.0f} req/s", flush=True)
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    found = batching.bench_model(MODEL)
    if found is None:
        return 1
    model = found.spec
    base = batching.read_config(found.folder / "config.pbtxt")
    policies = [p for p in batching.POLICIES if p.label in POLICY_LABELS]
    server_core, client_core = bench_cores()
    servers: dict[tuple[str, str], batching.PolicyServer] = {}
    try:
        for setting in LOG_SETTINGS:
            for policy in policies:
                servers[(setting, policy.label)] = start_server(
                    model, base, setting, policy, found.cache, server_core
                )
        with pinned({client_core}):
            rates = asyncio.run(measure(servers, model, args.rounds, args.seconds, args.concurrency))
    finally:
        for server in servers.values():
            server.stop()
    rounds = f"mean of {args.rounds} rounds of {args.seconds:g} s"
    print(f"\ndigits, gRPC closed loop c={args.concurrency}, {rounds}:")
    print(f"| log | {' | '.join(f'{p} req/s' for p in POLICY_LABELS)} | adaptive / none |")
    print(f"|---|{'---|' * (len(POLICY_LABELS) + 1)}")
    for setting in LOG_SETTINGS:
        means = [sum(rates[(setting, p)]) / len(rates[(setting, p)]) for p in POLICY_LABELS]
        print(f"| {setting} | {' | '.join(f'{m:,.0f}' for m in means)} | {means[1] / means[0]:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
