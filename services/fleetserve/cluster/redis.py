"""Redis for the prediction stream and rollout plans, as CONTRACT.md has it: append-only,
fsync every second."""

from __future__ import annotations

from pathlib import Path


def command(binary: str, host: str, port: int, folder: Path) -> list[str]:
    """redis-server in the foreground on host:port, its append-only file in `folder`."""
    return [
        binary,
        "--bind",
        host,
        "--port",
        str(port),
        "--dir",
        str(folder),
        "--daemonize",
        "no",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--protected-mode",
        "yes",
    ]


def url(host: str, port: int) -> str:
    """The redis:// URL of that server, database 0."""
    shown = f"[{host}]" if ":" in host else host
    return f"redis://{shown}:{port}/0"
