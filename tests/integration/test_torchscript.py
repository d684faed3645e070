"""TorchScript models (model.pt, `torch.jit.load`) serve over REST and gRPC, BF16 included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

from tests.support import models
from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def ts_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("ts") / "models"
    repo.mkdir()
    models.torchscript_model(repo, "ts_scale", "FP32")
    models.torchscript_model(repo, "ts_bf16", "BF16")
    with ServerProcess(repo, "--model-control-mode", "none") as proc:
        yield proc


def test_torchscript_fp32_both_transports(ts_server: ServerProcess) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    for mod, url in ((thttp, ts_server.http_url), (tgrpc, ts_server.grpc_url)):
        c = mod.InferenceServerClient(url)
        meta = (
            c.get_model_metadata("ts_scale", as_json=True)
            if mod is tgrpc
            else c.get_model_metadata("ts_scale")
        )
        assert meta["platform"] == "pytorch_libtorch"
        inp = mod.InferInput("INPUT__0", [2, 4], "FP32")
        inp.set_data_from_numpy(x)
        np.testing.assert_array_equal(c.infer("ts_scale", [inp]).as_numpy("OUTPUT__0"), x * 3)
        c.close()


def test_torchscript_bf16_over_grpc_raw(ts_server: ServerProcess) -> None:
    """BF16 travels raw only (gRPC raw contents, REST binary); values survive the round trip."""
    x = np.array([[1.5, -2.0, 0.25, 8.0]], dtype=ml_dtypes.bfloat16)
    import grpc

    from fleetserve.wire import inference_pb2 as pb

    request = pb.ModelInferRequest(model_name="ts_bf16")
    request.inputs.add(name="INPUT__0", datatype="BF16", shape=[1, 4])
    request.raw_input_contents.append(x.tobytes())
    with grpc.insecure_channel(ts_server.grpc_url) as ch:
        call = ch.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        answer = call(request, timeout=10)
    assert answer.outputs[0].datatype == "BF16"
    got = np.frombuffer(answer.raw_output_contents[0], dtype=ml_dtypes.bfloat16)
    np.testing.assert_array_equal(got.astype(np.float32), (x.astype(np.float32) * 3).reshape(-1))


def test_torchscript_needs_config(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    models.torchscript_model(repo, "ts_noconfig")
    (repo / "ts_noconfig" / "config.pbtxt").unlink()
    with ServerProcess(repo, "--model-control-mode", "none") as proc:
        c = thttp.InferenceServerClient(proc.http_url)
        assert not c.is_model_ready("ts_noconfig")
        index = c.get_model_repository_index()
        row = next(r for r in index if r["name"] == "ts_noconfig")
        assert row["state"] == "UNAVAILABLE"
        assert "config.pbtxt" in row["reason"]
        c.close()
