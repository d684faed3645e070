"""Benchmark of the local cluster: throughput through nginx with 1 and with 2 gateway replicas,
side by side, in one run on this machine.

For each replica count, ``fleetserve up`` (nginx, the replicas, Redis, Prometheus and the
sidecars, as ``make run`` starts them) runs on ports shifted by a free offset, on a copy of the
model repository holding only the model under test; then closed-loop ``tritonclient`` aio
clients in this process (the ones of ``loadtests/bench.py``: gRPC, and REST with binary
tensors) send to nginx at each concurrency of the sweep. The cluster is stopped before the next
replica count starts. Everything shares this machine's cores: the client, nginx and the
sidecars take their part, so the 2-replica figure is what two replicas give here, not twice
one.

The model's ``latency_slo_ms`` is dropped from the copy by default (``--keep-slo`` keeps it):
with it, requests that wait longer are refused (504 / DEADLINE_EXCEEDED) and saturation shows
as errors instead of throughput.

Usage::

    python -m loadtests.cluster_bench [--model digits] [--replicas 1,2] [--duration 10] \\
        [--warmup 2] [--concurrency 4,16] [--protocols grpc,rest] [--keep-slo] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fleetserve.cluster.layout import cluster_ports
from fleetserve.cluster.settings import UpSettings
from fleetserve.engines.ports import is_free
from loadtests.bench import drop_latency_slo, load_model_spec, run_sweep

PROJECT_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 180.0


def _csv(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="loadtests.cluster_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="digits")
    p.add_argument("--repository", type=Path, default=PROJECT_ROOT / "model_repository")
    p.add_argument("--replicas", default="1,2", help="replica counts to compare (comma-separated)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per point")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before each point's window")
    p.add_argument("--concurrency", default="4,16", help="closed-loop clients per point")
    p.add_argument("--protocols", default="grpc,rest")
    p.add_argument("--keep-slo", action="store_true", help="keep the model's latency_slo_ms")
    p.add_argument("--json", type=Path, help="write the results here too")
    return p.parse_args(argv)


def free_offset(replicas: int) -> int:
    """A port offset at which every port of the cluster is free (all below the ephemeral range)."""
    rng = random.Random(os.getpid())
    for _ in range(200):
        offset = rng.randrange(-5000, 12000)
        if all(is_free("127.0.0.1", p) for p in cluster_ports(UpSettings(port_offset=offset), replicas)):
            return offset
    raise RuntimeError("no port offset with every port of the cluster free")


def bench_repository(source: Path, model: str, keep_slo: bool, into: Path) -> Path:
    """A repository with only `model` (without its latency SLO unless `keep_slo`)."""
    repo = into / "models"
    shutil.copytree(source / model, repo / model)
    config = repo / model / "config.pbtxt"
    if not keep_slo and config.is_file():
        drop_latency_slo(config)
    return repo


@contextmanager
def cluster(repo: Path, data_dir: Path, replicas: int) -> Iterator[dict[str, str]]:
    """`fleetserve up` with `replicas` replicas; yields the front URLs per protocol."""
    offset = free_offset(replicas)
    cmd = [sys.executable, "-m", "fleetserve.cli", "up", "--model-repository", str(repo)]
    cmd += ["--data-dir", str(data_dir), "--replicas", str(replicas), "--port-offset", str(offset)]
    out_path = data_dir.parent / f"up-{replicas}.out"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"fleetserve up exited:\n{out_path.read_text(errors='replace')}")
                try:
                    state = json.loads((data_dir / "cluster.json").read_text())
                except (OSError, ValueError):
                    state = {}
                if state.get("status") == "running":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"fleetserve up not running within {READY_TIMEOUT_S} s")
                time.sleep(0.2)
            http = UpSettings().http_port + offset
            yield {"rest": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{http + 1}"}
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(results: dict[int, list[dict[str, Any]]]) -> str:
    """One row per (protocol, concurrency): req/s, p50 and p99 per replica count, and the ratio."""
    counts = sorted(results)
    head = ["protocol", "conc"]
    for n in counts:
        head += [f"{n}r req/s", f"{n}r p50 ms", f"{n}r p99 ms", f"{n}r errors"]
    if len(counts) > 1:
        head.append(f"{counts[-1]}r/{counts[0]}r")
    rows = [head]
    for i, first in enumerate(results[counts[0]]):
        row = [first["protocol"], str(first["concurrency"])]
        for n in counts:
            point = results[n][i]
            row += [
                _fmt(point["req_per_s"]),
                _fmt(point["p50_ms"], 2),
                _fmt(point["p99_ms"], 2),
                str(point["errors"]),
            ]
        if len(counts) > 1:
            base = first["req_per_s"]
            last = results[counts[-1]][i]["req_per_s"]
            row.append(f"{last / base:.2f}" if base else "-")
        rows.append(row)
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table (and write JSON when asked)."""
    args = parse_args(argv)
    replica_counts = [int(n) for n in _csv(args.replicas)]
    concurrencies = [int(c) for c in _csv(args.concurrency)]
    protocols = _csv(args.protocols)
    results: dict[int, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        repo = bench_repository(args.repository, args.model, args.keep_slo, Path(tmp))
        model = load_model_spec(repo / args.model)
        for n in replica_counts:
            print(f"== {n} replica(s) behind nginx ({args.model}, {os.cpu_count()} cores)", flush=True)
            with cluster(repo, Path(tmp) / f"data-{n}", n) as urls:
                results[n] = asyncio.run(
                    run_sweep(urls, model, protocols, concurrencies, args.duration, args.warmup, f"{n}r")
                )
    print()
    print(
        f"cluster bench: {args.model} through nginx, {args.duration:g} s per point, "
        f"{'with' if args.keep_slo else 'without'} the latency SLO, {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}"
    )
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps({str(n): pts for n, pts in results.items()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
