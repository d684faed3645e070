"""What grpc.aio itself costs per request when answers leave one by one or in groups.

The bare gRPC peer (``loadtests/peers.py``: canned answers, no model, no data plane) once per
group size: answers released at once (1) or held until N requests wait (at most
``--wait-ms`` after the first), i.e. the answers of a batch of N without the batch. Every peer is
pinned to the first core, the client (tritonclient.grpc.aio, this process, as in
``loadtests.batching``) on the second; closed loop on digits-shaped requests, in rounds, every
peer once per round. Per peer: req/s, the peer's CPU time per answered request (user + system,
all threads, from /proc) and the client's CPU share, means over the rounds.

Usage::

    python -m loadtests.grouped_answers [--groups 1,8,16,32,64] [--rounds 3] [--seconds 3]
        [--concurrency 64] [--wait-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from loadtests import batching
from loadtests.bench import PeerServer, bench_cores, pinned

MODEL = "digits"


class GroupedPeer(PeerServer):
    """The bare-grpc peer releasing its answers in groups of ``group``."""

    def __init__(
        self, model: batching.ModelUnderTest, core: int, cache: Path, group: int, wait_ms: float
    ) -> None:
        super().__init__("bare-grpc", model, core, cache)
        self.group, self.wait_ms = group, wait_ms
        self.log_path = cache / f"peer-bare-grpc-{model.name}-group{group}.log"

    def command(self) -> list[str]:
        return [*super().command(), "--group", str(self.group), "--group-wait-ms", str(self.wait_ms)]


async def measure(
    peers: dict[int, GroupedPeer], model: batching.ModelUnderTest, args: argparse.Namespace
) -> dict[int, list[tuple[float, float, float]]]:
    """(req/s, peer CPU µs per answer, client CPU %) of every peer in every round."""
    timeout = batching.MODELS[MODEL].slo_ms / 1e3 + batching.CLIENT_TIMEOUT_EXTRA_S
    found: dict[int, list[tuple[float, float, float]]] = {group: [] for group in peers}
    for index in range(args.rounds):
        for group, peer in peers.items():
            cpu0, wall0 = peer.cpu_seconds(), time.perf_counter()
            point = await batching.closed_point(peer.url, model, args.concurrency, args.seconds, 0.5, timeout)
            cpu1, wall1 = peer.cpu_seconds(), time.perf_counter()
            answered = point["req_per_s"] * (wall1 - wall0)  # the warm-up's answers too
            known = cpu0 is not None and cpu1 is not None and answered > 0
            per_answer = 1e6 * (cpu1 - cpu0) / answered if known else float("nan")
            found[group].append((point["req_per_s"], per_answer, point["client_cpu_pct"] or 0.0))
            print(
                f"  round {index + 1} group {group:<3} {point['req_per_s']:8.0f} req/s"
                f"  peer {per_answer:5.0f} µs CPU per answer  client CPU {point['client_cpu_pct']:.0f}%",
                flush=True,
            )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--groups", default="1,8,16,32,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--wait-ms", type=float, default=5.0)
    args = parser.parse_args(argv)
    groups = [int(g) for g in args.groups.split(",") if g.strip()]
    bench = batching.bench_model(MODEL)
    if bench is None:
        return 1
    model = bench.spec
    server_core, client_core = bench_cores()
    peers: dict[int, GroupedPeer] = {}
    try:
        for group in groups:
            peers[group] = GroupedPeer(model, server_core, bench.cache, group, args.wait_ms)
            peers[group].start()
        with pinned({client_core}):
            found = asyncio.run(measure(peers, model, args))
    finally:
        for peer in peers.values():
            peer.stop()
    print(f"\nbare-grpc peer, digits-shaped, closed loop c={args.concurrency}, mean of {args.rounds} rounds:")
    print("| answers released | req/s | peer CPU µs per answer | client CPU % |")
    print("|---|---|---|---|")
    for group, rows in found.items():
        rate, per_answer, client = (sum(r[i] for r in rows) / len(rows) for i in range(3))
        label = "one by one" if group == 1 else f"in groups of {group}"
        print(f"| {label} | {rate:,.0f} | {per_answer:.0f} | {client:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
