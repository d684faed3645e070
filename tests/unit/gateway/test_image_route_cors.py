"""The image route's query and answer helpers, and the REST server's CORS policy."""

from __future__ import annotations

import numpy as np
import pytest

from fleetserve.gateway.cors import CorsPolicy
from fleetserve.gateway.images import ImageQuery, parse_query, top_k
from fleetserve.gateway.outputs import classify
from fleetserve.protocol.errors import ErrorCode, FleetError

PAGE = "http://127.0.0.1:5173"


def test_query_defaults_and_values() -> None:
    assert parse_query(b"") == ImageQuery(5, None)
    assert parse_query(b"k=3&output=probabilities") == ImageQuery(3, "probabilities")


@pytest.mark.parametrize("query", [b"k=0", b"k=-1", b"k=abc", b"k=1001", b"top=3", b"k=%ff"])
def test_bad_query_is_400(query: bytes) -> None:
    with pytest.raises(FleetError) as exc:
        parse_query(query)
    assert exc.value.code is ErrorCode.INVALID_ARGUMENT


def test_top_k_reads_the_classification_extension_strings() -> None:
    scores = np.array([[0.1, 0.6, 0.3]], np.float32)
    rows = top_k(classify(scores, 2, ["cat", "dog: big", "cow"], batched=True))
    assert rows == [
        {"label": "dog: big", "index": 1, "score": pytest.approx(0.6)},
        {"label": "cow", "index": 2, "score": pytest.approx(0.3)},
    ]
    unlabelled = top_k(classify(np.array([2.0, -1.0, 5.0], np.float32), 3, None, batched=False))
    assert [r["label"] for r in unlabelled] == ["2", "0", "1"]


def _headers(**values: str) -> dict[bytes, bytes]:
    return {k.replace("_", "-").encode(): v.encode() for k, v in values.items()}


def test_no_origins_by_default_refuses_preflight_and_adds_nothing() -> None:
    cors = CorsPolicy()
    h = _headers(origin=PAGE, access_control_request_method="POST")
    assert cors.is_preflight("OPTIONS", h)
    with pytest.raises(FleetError) as exc:
        cors.preflight(h)
    assert exc.value.code is ErrorCode.PERMISSION_DENIED and "FLEETSERVE_CORS_ORIGINS" in exc.value.message
    assert cors.response_headers(_headers(origin=PAGE)) == []


def test_allowed_origin_preflight_and_answers() -> None:
    cors = CorsPolicy([PAGE + "/", "https://app.example"])
    h = _headers(
        origin=PAGE, access_control_request_method="POST", access_control_request_headers="Content-Type"
    )
    got = dict(cors.preflight(h))
    assert got[b"access-control-allow-origin"] == PAGE.encode()
    assert b"POST" in got[b"access-control-allow-methods"]
    assert b"content-type" in got[b"access-control-allow-headers"]
    answer = dict(cors.response_headers(_headers(origin=PAGE)))
    assert answer[b"access-control-allow-origin"] == PAGE.encode() and answer[b"vary"] == b"Origin"
    assert b"x-request-id" in answer[b"access-control-expose-headers"]
    # another origin gets no grant (and caches are told the answer depends on Origin)
    assert dict(cors.response_headers(_headers(origin="http://evil.example"))) == {b"vary": b"Origin"}
    with pytest.raises(FleetError):
        cors.preflight(_headers(origin="http://evil.example", access_control_request_method="POST"))


def test_preflight_refuses_methods_and_headers_outside_the_lists() -> None:
    cors = CorsPolicy(["*"])
    with pytest.raises(FleetError, match="cross-origin DELETE"):
        cors.preflight(_headers(origin=PAGE, access_control_request_method="DELETE"))
    asked = _headers(origin=PAGE, access_control_request_method="GET")
    asked[b"access-control-request-headers"] = b"x-secret"
    with pytest.raises(FleetError, match="x-secret"):
        cors.preflight(asked)
    ok = dict(cors.preflight(_headers(origin="http://any.example", access_control_request_method="GET")))
    assert ok[b"access-control-allow-origin"] == b"*"


def test_plain_options_is_not_a_preflight() -> None:
    cors = CorsPolicy(["*"])
    assert not cors.is_preflight("OPTIONS", _headers(origin=PAGE))
    assert not cors.is_preflight("POST", _headers(origin=PAGE, access_control_request_method="POST"))
