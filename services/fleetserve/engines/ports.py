"""Binding listening sockets up front, so a taken port is a clear error naming it."""

from __future__ import annotations

import socket


class PortTaken(Exception):
    """A port that a process wanted is in use."""


def bind(host: str, port: int, what: str) -> socket.socket:
    """A listening TCP socket on host:port, or PortTaken naming the port and who wanted it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it a response written in two parts waits out the peer's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortTaken(f"port {port} on {host} ({what}) is taken: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def check_free(host: str, port: int, what: str) -> None:
    """Raise PortTaken when host:port cannot be bound now."""
    bind(host, port, what).close()


def is_free(host: str, port: int) -> bool:
    """Whether host:port can be bound now, as a server of this project would bind it."""
    try:
        check_free(host, port, "a free-port check")
    except PortTaken:
        return False
    return True
