"""Adaptive batching on a real server: concurrent requests form batches > 1 and every answer
equals the unbatched one; deadlines that cannot be met are refused at once with the right codes."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc.aio as tgrpc_aio
from google.protobuf import text_format

from fleetserve.wire import inference_pb2 as pb
from fleetserve.wire import model_config_pb2 as mc
from tests.support import models
from tests.support.server import ServerProcess


def _scrape(server: ServerProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as r:
        return r.read().decode()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line))
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("batching") / "models"
    repo.mkdir()
    models.digits_model(repo)
    digits = text_format.Parse((repo / "digits" / "config.pbtxt").read_text(), mc.ModelConfig())
    del digits.parameters["latency_slo_ms"]  # a burst of 256 must queue, not be refused
    (repo / "digits" / "config.pbtxt").write_text(text_format.MessageToString(digits))
    # "strict": digits with an SLO no batch can meet, to see refusals
    shutil.copytree(repo / "digits", repo / "strict")
    config = text_format.Parse((repo / "strict" / "config.pbtxt").read_text(), mc.ModelConfig())
    config.name = "strict"
    config.parameters["latency_slo_ms"].string_value = "0.000001"
    config.dynamic_batching.priority_levels = 2
    config.dynamic_batching.default_priority_level = 2
    (repo / "strict" / "config.pbtxt").write_text(text_format.MessageToString(config))
    # every batch through the executor thread, so that requests queue behind a running batch
    env = {"FLEETSERVE_INLINE_COMPUTE_US": "0"}
    with ServerProcess(repo, "--model-control-mode", "none", env=env) as proc:
        yield proc


async def test_concurrent_requests_form_batches_and_match_unbatched(batching_server: ServerProcess) -> None:
    rng = np.random.default_rng(7)
    images = rng.random((256, 1, 8, 8), dtype=np.float32)
    session = ort.InferenceSession(str(models.DIGITS / "1" / "model.onnx"))
    expected = np.concatenate(
        [session.run(None, {"image": images[i : i + 1]})[0] for i in range(len(images))]
    )
    before = await asyncio.to_thread(_scrape, batching_server)
    client = tgrpc_aio.InferenceServerClient(batching_server.grpc_url)

    async def one(i: int) -> np.ndarray:
        inp = tgrpc_aio.InferInput("image", [1, 1, 8, 8], "FP32")
        inp.set_data_from_numpy(images[i : i + 1])
        return (await client.infer("digits", [inp])).as_numpy("probabilities")

    try:
        results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(len(images)))), 60)
    finally:
        await client.close()
    np.testing.assert_allclose(np.concatenate(results), expected, rtol=1e-5, atol=1e-6)
    after = await asyncio.to_thread(_scrape, batching_server)
    batches = _metric(after, "fleetserve_batch_size_count", model="digits") - _metric(
        before, "fleetserve_batch_size_count", model="digits"
    )
    rows = _metric(after, "fleetserve_batch_size_sum", model="digits") - _metric(
        before, "fleetserve_batch_size_sum", model="digits"
    )
    assert rows == len(images)
    assert batches < len(images), "no batch held more than one request"
    # the fitted latency model is exported: a line with a non-negative slope that predicts a
    # positive time (the slope alone may fit to 0 when the batch times are noise-dominated)
    per_row = _metric(after, "fleetserve_batch_latency_seconds", model="digits", term="per_row")
    fixed = _metric(after, "fleetserve_batch_latency_seconds", model="digits", term="fixed")
    assert per_row >= 0 and fixed >= 0 and per_row + fixed > 0


def _post(
    server: ServerProcess, model: str, parameters: dict | None = None
) -> tuple[int, dict[str, str], dict]:
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 8, 8], "data": [0.0] * 64}]}
    if parameters:
        body["parameters"] = parameters
    req = urllib.request.Request(
        f"{server.base}/v2/models/{model}/infer", data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read())


def test_unmeetable_slo_is_refused_at_once_with_retry_after(batching_server: ServerProcess) -> None:
    status, headers, body = _post(batching_server, "strict")
    assert status == 503, body
    assert "deadline" in body["error"]
    assert int(headers["retry-after"]) >= 1
    text = _scrape(batching_server)
    assert _metric(text, "fleetserve_rejected_total", model="strict", reason="deadline") >= 1


def test_unmeetable_slo_over_grpc_is_unavailable(batching_server: ServerProcess) -> None:
    request = pb.ModelInferRequest(model_name="strict")
    request.inputs.add(name="image", datatype="FP32", shape=[1, 1, 8, 8])
    request.raw_input_contents.append(np.zeros(64, dtype=np.float32).tobytes())
    with grpc.insecure_channel(batching_server.grpc_url) as ch:
        call = ch.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "deadline" in info.value.details()


def test_request_timeout_parameter_is_a_deadline(batching_server: ServerProcess) -> None:
    assert _post(batching_server, "digits", {"timeout": 10_000_000})[0] == 200
    status, _, body = _post(batching_server, "digits", {"timeout": 1})  # one microsecond
    assert status == 503 and "deadline" in body["error"]
    status, _, body = _post(batching_server, "digits", {"timeout": "soon"})
    assert status == 400 and "timeout" in body["error"]


def test_priority_parameter_is_checked_against_the_levels(batching_server: ServerProcess) -> None:
    status, _, body = _post(batching_server, "strict", {"priority": 3})
    assert status == 400 and "priority 3" in body["error"]
    status, _, body = _post(batching_server, "digits", {"priority": -1})
    assert status == 400 and "priority" in body["error"]


def test_metrics_exist_with_contract_names(batching_server: ServerProcess) -> None:
    text = _scrape(batching_server)
    for name in ("fleetserve_queue_depth", "fleetserve_rejected_total", "fleetserve_batch_size_bucket"):
        assert name in text, name
    assert Path(batching_server.repository).exists()
