"""The REST adapter: a bare ASGI app that translates HTTP to data-plane calls and back.

Routing and decoding only; what to answer is the data plane's. A bare ASGI callable (not a
framework router) because the v2 path set is small and fixed and this sits on the hot path.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from fleetserve.protocol import proto_json, rest_codec
from fleetserve.protocol.errors import ErrorCode, FleetError, invalid

from . import web_assets
from .cors import CorsPolicy
from .dataplane import DataPlane
from .errors import HTTP_STATUS
from .image_decode import ImageLimits
from .images import ImageClassifier, parse_query
from .request_ids import request_id
from .rollout_view import rollout_view

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
_JSON = (b"content-type", b"application/json")
_CSP = (b"content-security-policy", web_assets.CSP)
_NO_SNIFF = (b"x-content-type-options", b"nosniff")
_MODEL_ACTIONS = ("", "infer", "ready", "config", "stats", "image", "rollout")


class RestApp:
    """The v2 REST API over one data plane, the image route, and the built-in web page at `/`."""

    def __init__(
        self,
        dataplane: DataPlane,
        max_request_bytes: int,
        cors_origins: Iterable[str] = (),
        image_limits: ImageLimits | None = None,
    ) -> None:
        self.dp = dataplane
        self.max_bytes = max_request_bytes
        self.cors = CorsPolicy(cors_origins)
        self.images = ImageClassifier(dataplane, image_limits)
        self.assets = web_assets.WebAssets()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k: v for k, v in scope["headers"]}
        rid = request_id(headers.get(b"x-request-id", b"").decode("latin-1"))
        extra: list[tuple[bytes, bytes]] = []
        try:
            if self.cors.is_preflight(scope["method"], headers):
                status, body, extra = 204, b"", self.cors.preflight(headers)
            else:
                status, body, extra = await self._route(scope, headers, receive, rid)
                extra = [*extra, *self.cors.response_headers(headers)]
        except FleetError as exc:
            status = HTTP_STATUS[exc.code]
            body = orjson.dumps({"error": exc.message})
            if exc.retry_after_s is not None:
                extra = [(b"retry-after", str(max(1, round(exc.retry_after_s))).encode())]
            if not self.cors.is_preflight(scope["method"], headers):
                extra = [*extra, *self.cors.response_headers(headers)]
        typed = status == 204 or any(k == b"content-type" for k, _ in extra)
        out_headers = [
            *(() if typed else (_JSON,)),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", rid.encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        await send({"type": "http.response.body", "body": body})

    async def _route(
        self, scope: Scope, headers: dict[bytes, bytes], receive: Receive, rid: str
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        parts = scope["path"].strip("/").split("/")
        method = scope["method"]
        asset = self.assets.get(scope["path"])
        if asset is not None:
            _method(method, "GET")
            return 200, asset.body, [(b"content-type", asset.content_type), _CSP, _NO_SNIFF]
        if not parts or parts[0] != "v2":
            raise FleetError(ErrorCode.NOT_FOUND, f"no route {scope['path']}")
        rest = parts[1:]
        if not rest:
            _method(method, "GET")
            m = self.dp.server_metadata()
            return _ok({"name": m.name, "version": m.version, "extensions": list(m.extensions)})
        if rest[0] == "health" and len(rest) == 2:
            _method(method, "GET")
            if rest[1] == "live":
                return _status(self.dp.live())
            if rest[1] == "ready":
                return _status(self.dp.ready())
        elif rest[0] == "models":
            return await self._models(method, rest[1:], headers, receive, rid, scope.get("query_string", b""))
        elif rest[0] == "repository":
            return await self._repository(method, rest[1:], headers, receive)
        elif rest == ["feedback"]:
            _method(method, "POST")
            result = await self.dp.feedback(
                rest_codec.parse_json(await self._body(headers, receive)), _bearer(headers)
            )
            return _ok(dataclasses.asdict(result))
        raise FleetError(ErrorCode.NOT_FOUND, f"no route {scope['path']}")

    async def _models(
        self,
        method: str,
        rest: list[str],
        headers: dict[bytes, bytes],
        receive: Receive,
        rid: str,
        query_string: bytes = b"",
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if rest == ["stats"]:
            _method(method, "GET")
            return _ok(proto_json.to_dict(self.dp.model_statistics()))
        if not rest or not rest[0]:
            raise FleetError(ErrorCode.NOT_FOUND, "no route /v2/models")
        name, tail, version = rest[0], rest[1:], ""
        if len(tail) >= 2 and tail[0] == "versions":
            version, tail = tail[1], tail[2:]
        action = tail[0] if len(tail) == 1 else ("" if not tail else None)
        if action not in _MODEL_ACTIONS:
            raise FleetError(ErrorCode.NOT_FOUND, f"no route /v2/models/{'/'.join(rest)}")
        if action == "infer":
            _method(method, "POST")
            body = await self._body(headers, receive)
            hlen = headers.get(b"inference-header-content-length")
            header_length = _int_header(hlen, "Inference-Header-Content-Length") if hlen is not None else None
            request = rest_codec.decode_infer_request(body, header_length, name, version, rid)
            route_key = headers.get(b"x-fleetserve-route-key")
            if route_key is not None:
                request.route_key = route_key.decode("latin-1")
            response = await self.dp.infer(request, "rest")
            payload, json_length = rest_codec.encode_infer_response(response)
            extra = [(b"inference-header-content-length", str(json_length).encode())] if json_length else []
            return 200, payload, extra
        if action == "image":
            _method(method, "POST")
            query = parse_query(query_string)
            body = await self._body(headers, receive, self.images.max_bytes)
            route_key = headers.get(b"x-fleetserve-route-key")
            answer = await self.images.classify(
                body,
                headers.get(b"content-type", b"").decode("latin-1"),
                name,
                version,
                rid,
                query,
                route_key.decode("latin-1") if route_key is not None else None,
            )
            return _ok(answer)
        _method(method, "GET")
        if action == "rollout":
            if version:
                raise FleetError(
                    ErrorCode.NOT_FOUND, "rollout plans are per model: GET /v2/models/{m}/rollout"
                )
            return _ok(rollout_view(self.dp, name))
        if action == "":
            m = self.dp.model_metadata(name, version)
            return _ok(
                {
                    "name": m.name,
                    "versions": list(m.versions),
                    "platform": m.platform,
                    "inputs": [
                        {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in m.inputs
                    ],
                    "outputs": [
                        {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in m.outputs
                    ],
                }
            )
        if action == "ready":
            return _status(self.dp.model_ready(name, version))
        if action == "config":
            return _ok(proto_json.to_dict(self.dp.model_config(name, version)))
        if action == "stats":
            return _ok(proto_json.to_dict(self.dp.model_statistics(name, version)))
        raise FleetError(ErrorCode.NOT_FOUND, f"no route /v2/models/{'/'.join(rest)}")

    async def _repository(
        self, method: str, rest: list[str], headers: dict[bytes, bytes], receive: Receive
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        _method(method, "POST")
        body = await self._body(headers, receive)
        params = rest_codec.parse_json(body) if body.strip() else {}
        if not isinstance(params, dict):
            raise invalid("repository request body must be a JSON object")
        if rest == ["index"]:
            ready = params.get("ready", False)
            if not isinstance(ready, bool):
                raise invalid("repository index 'ready' must be true or false")
            rows = self.dp.repository_index(ready)
            index = [
                {"name": r.name, "version": r.version, "state": r.state, "reason": r.reason} for r in rows
            ]
            return 200, orjson.dumps(index), []
        if len(rest) == 3 and rest[0] == "models" and rest[2] in ("load", "unload"):
            token = _bearer(headers)
            load_params = params.get("parameters") or {}
            if not isinstance(load_params, dict):
                raise invalid("'parameters' of a load / unload request must be a JSON object")
            if rest[2] == "load":
                await self.dp.load_model(rest[1], token, load_params)
            else:
                await self.dp.unload_model(rest[1], token, load_params)
            return 200, b"", []
        raise FleetError(ErrorCode.NOT_FOUND, f"no route /v2/repository/{'/'.join(rest)}")

    async def _body(self, headers: dict[bytes, bytes], receive: Receive, limit: int | None = None) -> bytes:
        max_bytes = self.max_bytes if limit is None else min(limit, self.max_bytes)
        length = headers.get(b"content-length")
        if length is not None and _int_header(length, "Content-Length") > max_bytes:
            raise FleetError(ErrorCode.PAYLOAD_TOO_LARGE, f"request body over the limit of {max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise invalid("client disconnected before the body arrived")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                raise FleetError(
                    ErrorCode.PAYLOAD_TOO_LARGE, f"request body over the limit of {max_bytes} bytes"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        encoding = headers.get(b"content-encoding", b"").lower()
        if encoding in (b"gzip", b"deflate"):
            body = self._decompress(body, encoding)
        elif encoding not in (b"", b"identity"):
            raise FleetError(
                ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"Content-Encoding {encoding.decode()} not supported"
            )
        return body

    def _decompress(self, body: bytes, encoding: bytes) -> bytes:
        d = zlib.decompressobj(wbits=31 if encoding == b"gzip" else 15)
        try:
            out = d.decompress(body, self.max_bytes + 1)
        except zlib.error as exc:
            raise invalid(f"body is not valid {encoding.decode()}: {exc}") from None
        if len(out) > self.max_bytes or d.unconsumed_tail:
            raise FleetError(
                ErrorCode.PAYLOAD_TOO_LARGE, f"decompressed body over the limit of {self.max_bytes} bytes"
            )
        return out


def _ok(value: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    return 200, orjson.dumps(value), []


def _status(ok: bool) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    return (200 if ok else 503), b"", []


def _method(method: str, expected: str) -> None:
    if method != expected and not (expected == "GET" and method == "HEAD"):
        raise FleetError(ErrorCode.METHOD_NOT_ALLOWED, f"method {method} not allowed here; use {expected}")


def _int_header(value: bytes, name: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise invalid(f"header {name} must be an integer, got {value[:32]!r}") from None


def _bearer(headers: dict[bytes, bytes]) -> str | None:
    value = headers.get(b"authorization", b"").decode("latin-1")
    return value[7:].strip() if value[:7].lower() == "bearer " else None
