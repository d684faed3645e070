"""Where the rollout controller reads its guardrail metrics: a Prometheus HTTP API.

`MetricsSource` is what the controller depends on (tests pass a fake); `PrometheusSource`
queries a real Prometheus server. A query that returns no samples is `None` (no data yet);
a server that cannot be reached or answers with an error raises `MetricsUnavailable`, which
the controller treats as "cannot judge" and never as "healthy".
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import aiohttp


class MetricsUnavailable(Exception):
    """The metrics backend could not answer a query (unreachable, timeout, error status)."""


class MetricsSource(Protocol):
    """An instant PromQL query evaluated to one number."""

    async def query(self, promql: str) -> float | None:
        """The sum of the result's sample values; None when the result holds no samples.

        Raises MetricsUnavailable when the backend cannot answer.
        """
        ...


def sum_result(data: dict[str, Any]) -> float | None:
    """The sum of the values of a Prometheus `data` object (vector or scalar); NaN samples skipped."""
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        samples: list[Any] = [result[1]]
    elif kind == "vector" and isinstance(result, list):
        samples = [s.get("value", [None, None])[1] for s in result if isinstance(s, dict)]
    else:
        raise MetricsUnavailable(f"unexpected Prometheus result type {kind!r}")
    total = 0.0
    found = False
    for raw in samples:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            continue
        if math.isnan(value):  # histogram_quantile and 0/0 give NaN where there is no data
            continue
        total += value
        found = True
    return total if found else None


class PrometheusSource:
    """Instant queries against `GET <url>/api/v1/query` of a Prometheus server."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def query(self, promql: str) -> float | None:
        """Evaluate `promql` now; the sum of the sample values, None when there are none."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        try:
            async with self._session.get(f"{self.url}/api/v1/query", params={"query": promql}) as resp:
                text = await resp.text()
                if resp.content_type != "application/json":
                    raise MetricsUnavailable(
                        f"Prometheus at {self.url} answered HTTP {resp.status}: {text[:200]}"
                    )
                body = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise MetricsUnavailable(
                f"cannot query Prometheus at {self.url}: {exc or type(exc).__name__}"
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", body) if isinstance(body, dict) else body
            raise MetricsUnavailable(f"Prometheus at {self.url} rejected {promql!r}: {error}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise MetricsUnavailable(f"Prometheus at {self.url} answered without data")
        return sum_result(data)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
