"""The rollout controller's HTTP API: a bare ASGI app (served by uvicorn, as the gateway is).

    GET  /v1/health                          liveness
    GET  /metrics                            Prometheus text of the controller's registry
    GET  /v1/models                          models with a plan
    GET  /v1/models/{model}                  plan, versions (metadata, stage), automated run
    POST /v1/models/{model}/stage            {"version": 3}
    POST /v1/models/{model}/canary           {"version": 3, "weight": 25}
    POST /v1/models/{model}/promote          {"version": 3}            (version optional)
    POST /v1/models/{model}/rollback         {"reason": "..."}         (version optional)
    POST /v1/models/{model}/auto             {"version": 3, "steps": [5, 25, 50, 100], ...,
                                              "judge_agreement": true, "require_accuracy": false}

Every POST may carry "actor" and "reason"; every POST needs `Authorization: Bearer <token>`
when a token is configured (401 without one, 403 with a wrong one). Errors are JSON
`{"error": ...}` with 400 / 401 / 403 / 404 / 405 / 409 / 413 / 503.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from . import transitions as tr
from .controller import RolloutController

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Response = tuple[int, bytes, list[tuple[bytes, bytes]]]

MAX_BODY_BYTES = 64 * 1024
COMMANDS = ("stage", "canary", "promote", "rollback", "auto")
_AUTO_FIELDS = (
    "steps",
    "shadow_requests",
    "shadow_s",
    "dwell_s",
    "poll_s",
    "timeout_s",
    "window_s",
    "baseline_window_s",
    "judge_agreement",
    "require_accuracy",
)


class HttpError(Exception):
    """An answer other than 200, with its message."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


class RolloutApi:
    """The HTTP API over one controller."""

    def __init__(self, controller: RolloutController, registry: CollectorRegistry, token: str | None) -> None:
        self.controller = controller
        self.registry = registry
        self._token = token or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            status, body, headers = await self._route(scope, receive)
        except HttpError as exc:
            status, body, headers = exc.status, orjson.dumps({"error": exc.message}), exc.headers
        except tr.RolloutError as exc:
            status, body, headers = exc.status, orjson.dumps({"error": exc.message}), []
        if not any(k == b"content-type" for k, _ in headers):
            headers = [(b"content-type", b"application/json"), *headers]
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _route(self, scope: Scope, receive: Receive) -> Response:
        method = scope["method"]
        path = scope["path"].rstrip("/") or "/"
        parts = path.strip("/").split("/")
        if path == "/metrics":
            _method(method, "GET")
            return 200, generate_latest(self.registry), [(b"content-type", CONTENT_TYPE_LATEST.encode())]
        if parts[:1] != ["v1"]:
            raise HttpError(404, f"no route {path}")
        if parts == ["v1", "health"]:
            _method(method, "GET")
            return _json({"status": "ok"})
        if parts == ["v1", "models"]:
            _method(method, "GET")
            return _json({"models": self.controller.models()})
        if len(parts) == 3 and parts[1] == "models":
            _method(method, "GET")
            return _json(await asyncio.to_thread(self.controller.status, parts[2]))
        if len(parts) == 4 and parts[1] == "models" and parts[3] in COMMANDS:
            _method(method, "POST")
            self._authorize(scope)
            body = await _read_json(scope, receive)
            return await self._command(parts[2], parts[3], body)
        raise HttpError(404, f"no route {path}")

    async def _command(self, model: str, command: str, body: dict[str, Any]) -> Response:
        c = self.controller
        actor = _text(body, "actor", 100) or "api"
        note = _text(body, "reason", 500)
        if command == "stage":
            await c.stage(model, _version(body, required=True), actor, note)
        elif command == "canary":
            await c.canary(model, _version(body, required=True), _weight(body), actor, note)
        elif command == "promote":
            await c.promote(model, _version(body, required=False), actor, note)
        elif command == "rollback":
            await c.rollback(model, _version(body, required=False), actor, note)
        else:
            overrides = {k: body[k] for k in _AUTO_FIELDS if body.get(k) is not None}
            if isinstance(overrides.get("steps"), str):
                overrides["steps"] = [s for s in overrides["steps"].split(",") if s.strip()]
            await c.auto(model, _version(body, required=True), overrides, actor)
            return _json(await asyncio.to_thread(c.status, model), 202)
        return _json(await asyncio.to_thread(c.status, model))

    def _authorize(self, scope: Scope) -> None:
        if self._token is None:
            return
        value = ""
        for key, raw in scope["headers"]:
            if key == b"authorization":
                value = raw.decode("latin-1")
        token = value[7:].strip() if value[:7].lower() == "bearer " else ""
        if not token:
            raise HttpError(
                401,
                "this call needs 'Authorization: Bearer <admin token>'",
                [(b"www-authenticate", b'Bearer realm="fleetserve"')],
            )
        if not hmac.compare_digest(token.encode(), self._token.encode()):
            raise HttpError(403, "the admin token is not valid")


def _json(data: Any, status: int = 200) -> Response:
    return status, orjson.dumps(data), []


def _method(method: str, allowed: str) -> None:
    if method != allowed:
        raise HttpError(
            405, f"method {method} not allowed here (use {allowed})", [(b"allow", allowed.encode())]
        )


async def _read_json(scope: Scope, receive: Receive) -> dict[str, Any]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "client disconnected before the body arrived")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HttpError(413, f"request body over the limit of {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise HttpError(400, "request body must be a JSON object")
    return data


def _version(body: dict[str, Any], required: bool) -> Any:
    value = body.get("version")
    if value is None:
        if required:
            raise HttpError(400, "'version' is required")
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise HttpError(400, f"'version' must be a positive integer, not {value!r}")
    return value


def _weight(body: dict[str, Any]) -> float:
    value = body.get("weight")
    if value is None:
        raise HttpError(400, "'weight' is required (percent of traffic, 0..100)")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise HttpError(400, f"'weight' must be a number, not {value!r}") from None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 100:
        raise HttpError(400, f"'weight' must be a percentage within 0..100, not {value!r}")
    return float(value)


def _text(body: dict[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise HttpError(400, f"'{key}' must be a string of at most {limit} characters")
    return value
