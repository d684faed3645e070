"""Cross-origin resource sharing for the REST server (FLEETSERVE_CORS_ORIGINS, none by default).

An allowed origin (or any, when the list holds "*") gets `Access-Control-Allow-Origin` on every
answer and its preflight (`OPTIONS` with `Access-Control-Request-Method`) answered 204; any other
origin's preflight is refused with 403 and a message naming the setting. Requests without an
`Origin` header (curl, tritonclient, same-origin pages) are untouched.
"""

from __future__ import annotations

from collections.abc import Iterable

from fleetserve.protocol.errors import ErrorCode, FleetError

Headers = list[tuple[bytes, bytes]]

METHODS = ("GET", "HEAD", "POST")
# Request headers a browser client may send: the v2 ones and the gateway's own.
ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    "content-encoding",
    "inference-header-content-length",
    "x-request-id",
    "x-fleetserve-route-key",
)
# Response headers scripts may read.
EXPOSED_HEADERS = b"x-request-id, inference-header-content-length, retry-after"
MAX_AGE_S = 600


class CorsPolicy:
    """Which origins may call the REST API from a browser."""

    def __init__(self, origins: Iterable[str] = ()) -> None:
        cleaned = [o.strip().rstrip("/") for o in origins if o.strip()]
        self.any = "*" in cleaned
        self.origins = frozenset(o.lower() for o in cleaned if o != "*")

    def allows(self, origin: str) -> bool:
        """Whether `origin` (scheme://host[:port], as browsers send it) may call."""
        return self.any or origin.lower() in self.origins

    def is_preflight(self, method: str, headers: dict[bytes, bytes]) -> bool:
        """A CORS preflight: OPTIONS with Origin and Access-Control-Request-Method."""
        return method == "OPTIONS" and b"origin" in headers and b"access-control-request-method" in headers

    def preflight(self, headers: dict[bytes, bytes]) -> Headers:
        """The headers of a 204 answer to a preflight; FleetError (403) when it is refused."""
        origin = headers[b"origin"].decode("latin-1")
        if not self.allows(origin):
            raise FleetError(
                ErrorCode.PERMISSION_DENIED,
                f"origin {origin} is not allowed to call this server (FLEETSERVE_CORS_ORIGINS)",
            )
        method = headers[b"access-control-request-method"].decode("latin-1").strip().upper()
        if method not in METHODS:
            raise FleetError(
                ErrorCode.PERMISSION_DENIED,
                f"cross-origin {method} is not allowed; allowed methods: {', '.join(METHODS)}",
            )
        asked = headers.get(b"access-control-request-headers", b"").decode("latin-1")
        refused = [h for h in (x.strip().lower() for x in asked.split(",")) if h and h not in ALLOWED_HEADERS]
        if refused:
            raise FleetError(
                ErrorCode.PERMISSION_DENIED,
                f"cross-origin request header(s) not allowed: {', '.join(refused)}",
            )
        return [
            *self._origin(origin),
            (b"access-control-allow-methods", ", ".join(METHODS).encode()),
            (b"access-control-allow-headers", ", ".join(ALLOWED_HEADERS).encode()),
            (b"access-control-max-age", str(MAX_AGE_S).encode()),
        ]

    def response_headers(self, headers: dict[bytes, bytes]) -> Headers:
        """The CORS headers of an ordinary answer (none when there is no allowed Origin)."""
        if not self.any and not self.origins:
            return []  # CORS off: answers never depend on Origin
        raw = headers.get(b"origin")
        if raw is None or not self.allows(raw.decode("latin-1")):
            return [] if self.any else [(b"vary", b"Origin")]
        origin = raw.decode("latin-1")
        return [*self._origin(origin), (b"access-control-expose-headers", EXPOSED_HEADERS)]

    def _origin(self, origin: str) -> Headers:
        if self.any:
            return [(b"access-control-allow-origin", b"*")]
        return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
