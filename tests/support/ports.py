"""Free loopback ports for servers the tests start."""

from __future__ import annotations

import socket


def free_ports(n: int) -> list[int]:
    """n distinct ports free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
