"""Prometheus metrics named and labelled as CONTRACT.md says, and the request id on every answer."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import grpc
import numpy as np
import tritonclient.grpc as tgrpc

from fleetserve.wire import inference_pb2 as pb
from tests.support.server import ServerProcess


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def _infer_rest(
    server: ServerProcess, headers: dict[str, str], model: str = "double"
) -> tuple[int, dict[str, str], dict]:
    body = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    ).encode()
    req = urllib.request.Request(
        f"{server.base}/v2/models/{model}/infer", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read())


def _sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line[line.index("{") : line.index("}")]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_request_id_rest_echoed_or_generated(server: ServerProcess) -> None:
    status, headers, body = _infer_rest(server, {"X-Request-ID": "client-abc-1"})
    assert status == 200
    assert headers["x-request-id"] == "client-abc-1"
    assert body["parameters"]["request_id"] == "client-abc-1"
    status, headers, body = _infer_rest(server, {})
    rid = headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid) and body["parameters"]["request_id"] == rid
    # errors carry it too
    status, headers, body = _infer_rest(server, {"X-Request-ID": "err-1"}, model="nope")
    assert status == 404 and headers["x-request-id"] == "err-1"


def test_request_id_grpc_trailing_metadata(server: ServerProcess) -> None:
    request = pb.ModelInferRequest(model_name="double")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(np.ones(4, dtype=np.float32).tobytes())
    with grpc.insecure_channel(server.grpc_url) as ch:
        call = ch.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        answer, info = call.with_call(request, metadata=(("x-request-id", "grpc-id-9"),), timeout=5)
        assert dict(info.trailing_metadata())["x-request-id"] == "grpc-id-9"
        assert answer.parameters["request_id"].string_param == "grpc-id-9"
        answer, info = call.with_call(request, timeout=5)
        rid = dict(info.trailing_metadata())["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", rid) and answer.parameters["request_id"].string_param == rid


def test_metrics_names_and_labels(server: ServerProcess) -> None:
    for _ in range(3):
        assert _infer_rest(server, {})[0] == 200
    assert _infer_rest(server, {}, model="double")[0] == 200
    bad = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    ).encode()
    req = urllib.request.Request(f"{server.base}/v2/models/double/infer", data=bad, method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)
    except urllib.error.HTTPError as e:
        assert e.code == 400
    c = tgrpc.InferenceServerClient(server.grpc_url)
    inp = tgrpc.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    c.infer("double", [inp])
    c.infer("double", [inp], model_version="1")
    c.close()

    text = _get(f"http://127.0.0.1:{server.metrics_port}/metrics")
    ok = dict(model="double", version="1", route="production", code="ok")
    assert (_sample(text, "fleetserve_requests_total", protocol="rest", **ok) or 0) >= 4
    assert (_sample(text, "fleetserve_requests_total", protocol="grpc", **ok) or 0) >= 1
    explicit = dict(model="double", version="1", protocol="grpc", route="explicit", code="ok")
    assert (_sample(text, "fleetserve_requests_total", **explicit) or 0) >= 1
    bad_labels = dict(model="double", version="1", protocol="rest", code="invalid_argument")
    assert (_sample(text, "fleetserve_requests_total", **bad_labels) or 0) >= 1
    # histograms with sub-millisecond buckets
    for name in (
        "fleetserve_request_duration_seconds",
        "fleetserve_queue_duration_seconds",
        "fleetserve_compute_duration_seconds",
    ):
        assert _sample(text, name + "_bucket", model="double", version="1", le="0.0001") is not None, name
        assert (_sample(text, name + "_count", model="double", version="1") or 0) >= 1, name
    assert (
        _sample(text, "fleetserve_request_duration_seconds_bucket", protocol="grpc", le="0.00025") is not None
    )
    assert (_sample(text, "fleetserve_batch_size_count", model="double", version="1") or 0) >= 1
    assert _sample(text, "fleetserve_batch_size_bucket", model="double", le="256.0") is not None
    assert _sample(text, "fleetserve_model_ready", model="digits", version="1") == 1.0
    assert _sample(text, "fleetserve_inflight_requests", protocol="rest") == 0.0
    assert _sample(text, "fleetserve_queue_depth", model="double", version="1") is not None
