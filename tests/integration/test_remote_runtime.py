"""The `remote` runtime against a real upstream: a second `fleetserve serve` stands in for Triton.

The gateway serves models whose config.pbtxt points at the upstream; its answers must equal the
upstream's own, the upstream's errors come back with their codes, and an upstream that goes
away fails only the models it served.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from sklearn.datasets import load_digits
from tritonclient.utils import InferenceServerException

from fleetserve.predlog.read import read_predictions
from tests.support import models
from tests.support.server import ServerProcess

CLIENTS = {"http": thttp, "grpc": tgrpc}


def _remote_config(url: str, model: str, extra: str = "") -> str:
    return (
        'platform: "remote"\n'
        f'parameters {{ key: "remote_url" value {{ string_value: "{url}" }} }}\n'
        f'parameters {{ key: "remote_model" value {{ string_value: "{model}" }} }}\n'
        f'parameters {{ key: "remote_timeout_s" value {{ string_value: "10" }} }}\n{extra}'
    )


def _remote_model(repo: Path, name: str, url: str, model: str, extra: str = "") -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(_remote_config(url, model, extra))


@pytest.fixture(scope="module")
def upstream_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("upstream") / "models"
    repo.mkdir()
    models.digits_model(repo)
    models.double_model(repo)
    models.identity_model(repo, "BYTES")
    return repo


@pytest.fixture(scope="module")
def upstream(upstream_repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(upstream_repo) as proc:
        yield proc


@pytest.fixture(scope="module")
def gateway(upstream: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("gateway") / "models"
    repo.mkdir()
    _remote_model(repo, "digits", upstream.grpc_url, "digits")
    _remote_model(repo, "remote_bytes", upstream.grpc_url, "identity_bytes")
    _remote_model(repo, "remote_missing", upstream.grpc_url, "not_on_upstream")
    models.double_model(repo, name="local_double")
    with ServerProcess(repo) as proc:
        yield proc


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return (load_digits().images[:8] / 16.0).astype(np.float32).reshape(8, 1, 8, 8)


def _client(kind: str, server: ServerProcess) -> Any:
    return CLIENTS[kind].InferenceServerClient(server.http_url if kind == "http" else server.grpc_url)


def _infer(kind: str, server: ServerProcess, model: str, name: str, x: np.ndarray, datatype: str) -> Any:
    client = _client(kind, server)
    try:
        inp = CLIENTS[kind].InferInput(name, list(x.shape), datatype)
        inp.set_data_from_numpy(x)
        return client.infer(model, [inp])
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_answers_equal_the_upstreams(
    kind: str, gateway: ServerProcess, upstream: ServerProcess, images: np.ndarray
) -> None:
    for rows in (1, 8):
        ours = _infer(kind, gateway, "digits", "image", images[:rows], "FP32").as_numpy("probabilities")
        theirs = _infer(kind, upstream, "digits", "image", images[:rows], "FP32").as_numpy("probabilities")
        assert ours.shape == (rows, 10)
        np.testing.assert_array_equal(ours, theirs)
    words = np.array([[b"a", b"bc", "\u00e9".encode(), b""]], dtype=object)
    echoed = _infer(kind, gateway, "remote_bytes", "INPUT0", words, "BYTES").as_numpy("OUTPUT0")
    assert echoed.tolist() == words.tolist()


def test_metadata_and_config_come_from_the_upstream(gateway: ServerProcess, upstream: ServerProcess) -> None:
    ours, theirs = _client("http", gateway), _client("http", upstream)
    try:
        mine, upstreams = ours.get_model_metadata("digits"), theirs.get_model_metadata("digits")
        assert mine["platform"] == "remote"
        assert mine["inputs"] == upstreams["inputs"] and mine["outputs"] == upstreams["outputs"]
        config, upstream_config = ours.get_model_config("digits"), theirs.get_model_config("digits")
        assert config["max_batch_size"] == upstream_config["max_batch_size"] == 64
        assert [i["dims"] for i in config["input"]] == [i["dims"] for i in upstream_config["input"]]
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_upstream_bad_input_comes_back_invalid(kind: str, gateway: ServerProcess) -> None:
    """The upstream refuses bytes that are not UTF-8 for an ONNX string tensor: INVALID_ARGUMENT."""
    bad = np.array([[b"\xff\xfe", b"a", b"b", b"c"]], dtype=object)
    with pytest.raises(InferenceServerException) as info:
        _infer(kind, gateway, "remote_bytes", "INPUT0", bad, "BYTES")
    assert info.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    assert "UTF-8" in info.value.message() and "upstream" in info.value.message()


def test_local_validation_uses_the_upstream_shapes(gateway: ServerProcess) -> None:
    with pytest.raises(InferenceServerException) as info:
        _infer("http", gateway, "digits", "image", np.zeros((1, 1, 8, 9), np.float32), "FP32")
    assert info.value.status() == "400" and "shape" in info.value.message()


def test_a_model_missing_on_the_upstream_is_unavailable_with_its_reason(gateway: ServerProcess) -> None:
    client = _client("http", gateway)
    try:
        assert not client.is_model_ready("remote_missing")
        row = next(r for r in client.get_model_repository_index() if r["name"] == "remote_missing")
        assert row["state"] == "UNAVAILABLE" and "not_on_upstream" in row["reason"]
        assert client.is_model_ready("digits") and client.is_model_ready("local_double")
    finally:
        client.close()


def test_remote_predictions_are_logged(gateway: ServerProcess, images: np.ndarray) -> None:
    result = _infer("http", gateway, "digits", "image", images[:3], "FP32")
    rid = result.get_response()["parameters"]["request_id"]
    data_dir = Path(gateway.env["FLEETSERVE_DATA_DIR"])
    deadline = time.monotonic() + 20
    found: list[Any] = []
    while time.monotonic() < deadline and len(found) < 3:
        found = [r for r in read_predictions(data_dir) if r.request_id == rid] if data_dir.is_dir() else []
        time.sleep(0.2)
    assert len(found) == 3  # one record per item of the batch, as for a local model
    assert {r.model for r in found} == {"digits"} and {r.version for r in found} == {"1"}


def test_upstream_going_away(upstream_repo: Path, tmp_path: Path, images: np.ndarray) -> None:
    """Its models fail with UNAVAILABLE and the gateway keeps serving the others."""
    with ServerProcess(upstream_repo) as upstream:
        repo = tmp_path / "models"
        repo.mkdir()
        _remote_model(repo, "digits", upstream.grpc_url, "digits")
        models.double_model(repo, name="local_double")
        with ServerProcess(repo) as gateway:
            _infer("grpc", gateway, "digits", "image", images[:1], "FP32")
            upstream.stop()
            for kind, status in (("http", "503"), ("grpc", "StatusCode.UNAVAILABLE")):
                with pytest.raises(InferenceServerException) as info:
                    _infer(kind, gateway, "digits", "image", images[:1], "FP32")
                assert info.value.status() == status and "UNAVAILABLE" in info.value.message()
                x = np.ones((2, 4), np.float32)
                doubled = _infer(kind, gateway, "local_double", "x", x, "FP32").as_numpy("y")
                np.testing.assert_array_equal(doubled, x * 2)
            assert gateway.alive()
            # The failed calls put the channel in TRANSIENT_FAILURE: the model is not ready.
            client = thttp.InferenceServerClient(gateway.http_url)
            assert not client.is_model_ready("digits")
            assert client.is_model_ready("local_double")
