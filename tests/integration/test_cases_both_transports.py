"""One set of JSON cases (tests/cases/infer.json) drives REST JSON, REST binary and gRPC; the
three answers must be identical and equal to the case's expectation."""

from __future__ import annotations

import json
import struct
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from fleetserve.gateway.errors import GRPC_STATUS, HTTP_STATUS
from fleetserve.protocol import datatypes
from fleetserve.wire import inference_pb2 as pb
from tests.support.server import ServerProcess

CASES = json.loads((Path(__file__).resolve().parents[1] / "cases" / "infer.json").read_text())
BY_HTTP = {v: k.name for k, v in HTTP_STATUS.items()}
BY_GRPC = {v: k.name for k, v in reversed(list(GRPC_STATUS.items()))}
Result = dict[str, Any]


def _path(case: dict[str, Any]) -> str:
    version = f"/versions/{case['version']}" if case.get("version") else ""
    return f"/v2/models/{case['model']}{version}/infer"


def _array(tensor: dict[str, Any]) -> np.ndarray:
    dt = datatypes.BY_NAME[tensor["datatype"]]
    flat = np.asarray(tensor["data"], dtype=object if dt.size == 0 else dt.dtype).reshape(-1)
    if dt.size == 0:
        flat = np.array([s.encode() for s in flat], dtype=object)
    return flat


def _raw(tensor: dict[str, Any]) -> bytes:
    flat = _array(tensor)
    if flat.dtype == object:
        return b"".join(struct.pack("<I", len(b)) + b for b in flat)
    return flat.tobytes()


def _from_raw(raw: bytes, datatype: str) -> list[Any]:
    dt = datatypes.BY_NAME[datatype]
    if dt.size == 0:
        items, i = [], 0
        while i < len(raw):
            (n,) = struct.unpack_from("<I", raw, i)
            items.append(raw[i + 4 : i + 4 + n].decode())
            i += 4 + n
        return items
    return np.frombuffer(raw, dtype=dt.dtype).tolist()


def _post(base: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(base + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _rest_error(status: int, body: bytes) -> Result:
    return {"error": BY_HTTP[status], "message": json.loads(body)["error"]}


def rest_json(server: ServerProcess, case: dict[str, Any]) -> Result:
    body = {"inputs": case["inputs"]}
    if "outputs" in case:
        body["outputs"] = case["outputs"]
    status, _, raw = _post(
        server.base, _path(case), json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    if status != 200:
        return _rest_error(status, raw)
    answer = json.loads(raw)
    outputs = [{k: o[k] for k in ("name", "datatype", "shape", "data")} for o in answer["outputs"]]
    return {"version": answer["model_version"], "outputs": outputs}


def rest_binary(server: ServerProcess, case: dict[str, Any]) -> Result:
    inputs, blobs = [], []
    for t in case["inputs"]:
        raw = _raw(t)
        blobs.append(raw)
        inputs.append(
            {k: t[k] for k in ("name", "datatype", "shape")} | {"parameters": {"binary_data_size": len(raw)}}
        )
    header: dict[str, Any] = {"inputs": inputs, "parameters": {"binary_data_output": True}}
    if "outputs" in case:
        header["outputs"] = [
            {"name": o["name"], "parameters": {**o.get("parameters", {}), "binary_data": True}}
            for o in case["outputs"]
        ]
    head = json.dumps(header).encode()
    status, headers, raw = _post(
        server.base,
        _path(case),
        head + b"".join(blobs),
        {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"},
    )
    if status != 200:
        return _rest_error(status, raw)
    hlen = int(headers["inference-header-content-length"])
    answer = json.loads(raw[:hlen])
    offset, outputs = hlen, []
    for o in answer["outputs"]:
        size = o["parameters"]["binary_data_size"]
        assert "data" not in o
        outputs.append(
            {k: o[k] for k in ("name", "datatype", "shape")}
            | {"data": _from_raw(raw[offset : offset + size], o["datatype"])}
        )
        offset += size
    assert offset == len(raw)
    return {"version": answer["model_version"], "outputs": outputs}


def grpc_raw(channel: grpc.Channel, case: dict[str, Any]) -> Result:
    request = pb.ModelInferRequest(model_name=case["model"], model_version=case.get("version", ""))
    for t in case["inputs"]:
        request.inputs.add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        request.raw_input_contents.append(_raw(t))
    for o in case.get("outputs", []):
        out = request.outputs.add(name=o["name"])
        for k, v in o.get("parameters", {}).items():
            out.parameters[k].int64_param = v
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=pb.ModelInferResponse.FromString,
    )
    try:
        answer = call(request, timeout=10)
    except grpc.RpcError as e:
        return {"error": BY_GRPC[e.code()], "message": e.details()}
    outputs = [
        {"name": o.name, "datatype": o.datatype, "shape": list(o.shape), "data": _from_raw(raw, o.datatype)}
        for o, raw in zip(answer.outputs, answer.raw_output_contents, strict=True)
    ]
    return {"version": answer.model_version, "outputs": outputs}


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> grpc.Channel:
    with grpc.insecure_channel(server.grpc_url) as ch:
        yield ch


def _normalise(result: Result) -> Result:
    if "error" in result:
        return {"error": result["error"]}
    return {
        "outputs": [
            o
            | {
                "data": [
                    float(x) if isinstance(x, int | float) and not isinstance(x, bool) else x
                    for x in o["data"]
                ]
            }
            for o in result["outputs"]
        ]
    }


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_same_on_every_transport(
    case: dict[str, Any], server: ServerProcess, channel: grpc.Channel
) -> None:
    results = {
        "rest_json": rest_json(server, case),
        "rest_binary": rest_binary(server, case),
        "grpc": grpc_raw(channel, case),
    }
    expect = case["expect"]
    for transport, result in results.items():
        if "error" in expect:
            assert result.get("error") == expect["error"], f"{transport}: {result}"
            assert expect["message"] in result["message"], f"{transport}: message {result['message']!r}"
        else:
            assert "error" not in result, f"{transport}: {result}"
            if "version" in expect:
                assert result["version"] == expect["version"]
            assert _normalise(result) == _normalise(expect), transport
    normalised = {t: _normalise(r) for t, r in results.items()}
    assert normalised["rest_json"] == normalised["rest_binary"] == normalised["grpc"]
