"""Readiness probes: is a started process serving yet? Each answers quickly, never raises."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Protocol


class Probe(Protocol):
    """A readiness check of one process."""

    def ready(self) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class HttpProbe:
    """Ready when GET `url` answers 200."""

    url: str
    timeout_s: float = 1.0

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def describe(self) -> str:
        return f"GET {self.url} -> 200"


@dataclass(frozen=True)
class RedisProbe:
    """Ready when Redis answers PING with PONG."""

    host: str
    port: int
    timeout_s: float = 1.0

    def ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout_s) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def describe(self) -> str:
        return f"PING {self.host}:{self.port} -> PONG"


@dataclass(frozen=True)
class AllProbes:
    """Ready when every one of `probes` is."""

    probes: tuple[Probe, ...]

    def ready(self) -> bool:
        return all(p.ready() for p in self.probes)

    def describe(self) -> str:
        return " and ".join(p.describe() for p in self.probes)
