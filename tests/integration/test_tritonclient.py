"""The unmodified tritonclient (http, http.aio, grpc, grpc.aio) against a real server.

Results must equal onnxruntime run directly on the same model file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.grpc.aio as tgrpc_aio
import tritonclient.http as thttp
import tritonclient.http.aio as thttp_aio
from sklearn.datasets import load_digits
from tritonclient.utils import InferenceServerException

from tests.support.server import ServerProcess

SYNC = {"http": thttp, "grpc": tgrpc}
ASYNC = {"http": thttp_aio, "grpc": tgrpc_aio}


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    data = load_digits()
    return (data.images[:8] / 16.0).astype(np.float32).reshape(8, 1, 8, 8)


@pytest.fixture(scope="module")
def reference(model_repo: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model_repo / "digits" / "1" / "model.onnx"))
    return session.run(["probabilities"], {"image": images})[0]


def _url(server: ServerProcess, kind: str) -> str:
    return server.http_url if kind == "http" else server.grpc_url


def _inputs(mod: Any, kind: str, batch: np.ndarray, binary: bool) -> tuple[list[Any], list[Any]]:
    inp = mod.InferInput("image", list(batch.shape), "FP32")
    if kind == "http":
        inp.set_data_from_numpy(batch, binary_data=binary)
        out = mod.InferRequestedOutput("probabilities", binary_data=binary)
    else:
        inp.set_data_from_numpy(batch)
        out = mod.InferRequestedOutput("probabilities")
    return [inp], [out]


@pytest.fixture(params=["http", "grpc"])
def client(request: pytest.FixtureRequest, server: ServerProcess) -> Iterator[tuple[str, Any]]:
    kind = request.param
    c = SYNC[kind].InferenceServerClient(_url(server, kind))
    yield kind, c
    c.close()


def test_health_and_metadata(client: tuple[str, Any]) -> None:
    kind, c = client
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("digits") and c.is_model_ready("digits", "1")
    assert not c.is_model_ready("digits", "99")
    meta = c.get_server_metadata(as_json=True) if kind == "grpc" else c.get_server_metadata()
    assert meta["name"] == "fleetserve"
    assert "binary_tensor_data" in meta["extensions"] and "model_repository" in meta["extensions"]
    model = c.get_model_metadata("digits", as_json=True) if kind == "grpc" else c.get_model_metadata("digits")
    assert model["name"] == "digits" and model["platform"] == "onnxruntime_onnx"
    assert model["inputs"][0]["name"] == "image" and model["inputs"][0]["datatype"] == "FP32"
    assert [int(d) for d in model["inputs"][0]["shape"]] == [-1, 1, 8, 8]
    assert [int(d) for d in model["outputs"][0]["shape"]] == [-1, 10]


def test_model_config(client: tuple[str, Any]) -> None:
    kind, c = client
    answer = c.get_model_config("digits", as_json=True) if kind == "grpc" else c.get_model_config("digits")
    config = answer["config"] if kind == "grpc" else answer
    assert config["name"] == "digits"
    assert int(config["max_batch_size"]) == 64
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    assert [int(d) for d in config["input"][0]["dims"]] == [1, 8, 8]
    assert config["output"][0]["label_filename"] == "labels.txt"
    if kind == "grpc":
        typed = c.get_model_config("digits").config  # Triton's own message decodes fleetserve's bytes
        assert typed.max_batch_size == 64 and list(typed.input[0].dims) == [1, 8, 8]


@pytest.mark.parametrize(("kind", "binary"), [("http", True), ("http", False), ("grpc", True)])
@pytest.mark.parametrize("batch_size", [1, 8])
def test_infer_matches_onnxruntime(
    server: ServerProcess, images: np.ndarray, reference: np.ndarray, kind: str, batch_size: int, binary: bool
) -> None:
    """Binary tensors (tritonclient's default) and JSON over REST, raw contents over gRPC."""
    c = SYNC[kind].InferenceServerClient(_url(server, kind))
    inputs, outputs = _inputs(SYNC[kind], kind, images[:batch_size], binary)
    result = c.infer("digits", inputs, outputs=outputs, request_id="client-id-7")
    c.close()
    got = result.as_numpy("probabilities")
    assert got.shape == (batch_size, 10)
    np.testing.assert_allclose(got, reference[:batch_size], rtol=1e-6, atol=1e-7)
    response = result.get_response(as_json=True) if kind == "grpc" else result.get_response()
    assert response["id"] == "client-id-7"
    assert response["model_version"] == "1"
    rid = response["parameters"]["request_id"]
    rid = rid["string_param"] if isinstance(rid, dict) else rid
    assert len(rid) == 32 and int(rid, 16) >= 0


def test_statistics(client: tuple[str, Any], images: np.ndarray) -> None:
    kind, c = client
    inputs, outputs = _inputs(SYNC[kind], kind, images[:2], True)
    before = (
        c.get_inference_statistics("digits", as_json=True)
        if kind == "grpc"
        else c.get_inference_statistics("digits")
    )
    c.infer("digits", inputs, outputs=outputs)
    after = (
        c.get_inference_statistics("digits", as_json=True)
        if kind == "grpc"
        else c.get_inference_statistics("digits")
    )
    b, a = before["model_stats"][0], after["model_stats"][0]
    assert a["name"] == "digits" and a["version"] == "1"
    assert int(a["inference_count"]) == int(b.get("inference_count", 0)) + 2
    assert (
        int(a["inference_stats"]["success"]["count"])
        == int(b["inference_stats"]["success"].get("count", 0)) + 1
    )
    assert int(a["inference_stats"]["compute_infer"]["ns"]) > 0


def test_repository_index_load_unload(client: tuple[str, Any], images: np.ndarray) -> None:
    kind, c = client
    index = c.get_model_repository_index(as_json=True) if kind == "grpc" else c.get_model_repository_index()
    rows = index["models"] if kind == "grpc" else index
    assert {"name": "digits", "version": "1", "state": "READY"}.items() <= next(
        r for r in rows if r["name"] == "digits"
    ).items()
    c.unload_model("identity_fp32")
    assert not c.is_model_ready("identity_fp32")
    x = np.ones((1, 4), dtype=np.float32)
    inp = SYNC[kind].InferInput("INPUT0", [1, 4], "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException, match="unloaded"):
        c.infer("identity_fp32", [inp])
    c.load_model("identity_fp32")
    assert c.is_model_ready("identity_fp32")
    np.testing.assert_array_equal(c.infer("identity_fp32", [inp]).as_numpy("OUTPUT0"), x)
    with pytest.raises(InferenceServerException):
        c.load_model("not_in_repository")


@pytest.mark.parametrize("kind", ["http", "grpc"])
async def test_aio_clients(
    kind: str, server: ServerProcess, images: np.ndarray, reference: np.ndarray
) -> None:
    mod = ASYNC[kind]
    c = mod.InferenceServerClient(_url(server, kind))
    try:
        assert await c.is_server_live() and await c.is_server_ready()
        assert await c.is_model_ready("digits")
        meta = (
            await c.get_model_metadata("digits", as_json=True)
            if kind == "grpc"
            else await c.get_model_metadata("digits")
        )
        assert meta["name"] == "digits"
        config = (
            await c.get_model_config("digits", as_json=True)
            if kind == "grpc"
            else await c.get_model_config("digits")
        )
        assert (config["config"] if kind == "grpc" else config)["name"] == "digits"
        for batch_size in (1, 8):
            for binary in (True, False) if kind == "http" else (True,):
                inputs, outputs = _inputs(mod, kind, images[:batch_size], binary)
                result = await c.infer("digits", inputs, outputs=outputs)
                np.testing.assert_allclose(
                    result.as_numpy("probabilities"), reference[:batch_size], rtol=1e-6, atol=1e-7
                )
        stats = (
            await c.get_inference_statistics("digits", as_json=True)
            if kind == "grpc"
            else await c.get_inference_statistics("digits")
        )
        assert int(stats["model_stats"][0]["inference_count"]) >= 9
        index = (
            await c.get_model_repository_index(as_json=True)
            if kind == "grpc"
            else await c.get_model_repository_index()
        )
        assert any(r["name"] == "digits" for r in (index["models"] if kind == "grpc" else index))
        await c.unload_model("identity_int32")
        assert not await c.is_model_ready("identity_int32")
        await c.load_model("identity_int32")
        assert await c.is_model_ready("identity_int32")
    finally:
        await c.close()


def test_grpc_stream_infer(server: ServerProcess, images: np.ndarray, reference: np.ndarray) -> None:
    import queue

    results: queue.Queue[Any] = queue.Queue()
    c = tgrpc.InferenceServerClient(server.grpc_url)
    c.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for i in range(3):
            inputs, outputs = _inputs(tgrpc, "grpc", images[i : i + 1], True)
            c.async_stream_infer("digits", inputs, outputs=outputs, request_id=str(i))
        inputs, _ = _inputs(tgrpc, "grpc", images[:1], True)
        c.async_stream_infer("no_such_model", inputs)
        got = [results.get(timeout=10) for _ in range(4)]
    finally:
        c.stop_stream()
        c.close()
    answers = {r.get_response().id: r for r, e in got if e is None}
    assert set(answers) == {"0", "1", "2"}
    for i in range(3):
        np.testing.assert_allclose(
            answers[str(i)].as_numpy("probabilities"), reference[i : i + 1], rtol=1e-6, atol=1e-7
        )
    errors = [e for r, e in got if e is not None]
    assert len(errors) == 1 and "no_such_model" in str(errors[0])


def test_grpc_health_service(server: ServerProcess) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(server.grpc_url) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        assert (
            stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
            == health_pb2.HealthCheckResponse.SERVING
        )
        answer = stub.Check(
            health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"), timeout=5
        )
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_large_batch_over_default_message_limit(server: ServerProcess) -> None:
    """A 24 MB request and answer (over gRPC's 4 MB default) go through: the server raises the limits."""
    x = np.random.default_rng(0).random((4, 1_500_000), dtype=np.float32)
    c = tgrpc.InferenceServerClient(server.grpc_url)
    try:
        inp = tgrpc.InferInput("INPUT0", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        np.testing.assert_array_equal(c.infer("identity_wide", [inp]).as_numpy("OUTPUT0"), x)
    finally:
        c.close()
