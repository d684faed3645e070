"""What `fleetserve up` tells: the table of what runs where, what was left out, and the state
file (cluster.json in the data dir) that scripts and tests read."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from .components import Cluster, LeftOut
from .process import ManagedProcess


def console() -> Console:
    """A console that keeps URLs whole when the output is not a terminal (logs, pipes)."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=200, soft_wrap=False)


def table(cluster: Cluster, processes: Sequence[ManagedProcess]) -> Table:
    """The processes: name, role, pid, listeners and URLs, log file."""
    t = Table(
        title=f"fleetserve up: {len(cluster.replicas)} replica(s) of {cluster.settings.model_repository}"
    )
    t.add_column("process", no_wrap=True, style="bold")
    t.add_column("role")
    t.add_column("pid", justify="right", no_wrap=True)
    t.add_column("URLs", no_wrap=True)
    t.add_column("log", no_wrap=True)
    root = cluster.layout.root
    for p in processes:
        c = p.component
        t.add_row(c.name, c.role, str(p.pid or "-"), "\n".join(c.urls), str(c.log.relative_to(root)))
    return t


def left_out_lines(left: Sequence[LeftOut]) -> list[str]:
    """One line per part left out: the consequence and the command that would add it."""
    lines = []
    for item in left:
        remedy = f" (add it: {item.remedy})" if item.remedy else ""
        lines.append(f"left out {item.part}: {item.consequence}{remedy}")
    return lines


def front_lines(cluster: Cluster) -> list[str]:
    """Where clients go."""
    p = cluster.ports
    lines = [
        f"page     {p.url(p.http, '/')}   (upload an image or draw a digit)",
        f"REST     {p.url(p.http, '/v2')}   (infer: POST /v2/models/<model>/infer)",
        f"gRPC     {p.address(p.grpc)}   (inference.GRPCInferenceService)",
    ]
    if not cluster.behind_nginx:
        lines.append(f"metrics  {p.url(p.replicas[0].metrics, '/metrics')}")
    if any(c.name == "prometheus" for c in cluster.components):
        lines.append(f"Prometheus {p.url(p.prometheus, '/graph')}")
    lines.append(f"logs     {cluster.layout.logs}")
    return lines


def write_state(cluster: Cluster, processes: Sequence[ManagedProcess], status: str) -> None:
    """Rewrite cluster.json (atomically): status, front URLs and every process's pid and ports."""
    p = cluster.ports
    state = {
        "status": status,
        "pid": os.getpid(),
        "http": p.url(p.http),
        "grpc": p.address(p.grpc),
        "redis_url": cluster.redis_url,
        "prometheus": p.url(p.prometheus)
        if any(c.name == "prometheus" for c in cluster.components)
        else None,
        "left_out": [item.part for item in cluster.left_out],
        "processes": [
            {
                "name": m.name,
                "pid": m.pid,
                "alive": m.exit_code() is None and m.pid is not None,
                "starts": m.starts,
                "ports": {lst.what: lst.port for lst in m.component.listeners},
                "urls": list(m.component.urls),
                "log": str(m.component.log),
            }
            for m in processes
        ],
    }
    path = cluster.layout.state_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)
