"""Checking a request's inputs against the model version that computes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fleetserve.gateway import validation
from fleetserve.protocol import rest_codec
from fleetserve.protocol.errors import ErrorCode, FleetError
from fleetserve.protocol.types import InferRequest, InputTensor
from fleetserve.repository.config import read_config
from fleetserve.repository.loader import load_version
from fleetserve.repository.version import ServedVersion
from fleetserve.runtimes.base import RuntimeOptions, TensorSpec
from fleetserve.wire import model_config_pb2 as mc
from tests.support import models


class FakeRuntime:
    """The Runtime protocol, with nothing behind it (validation never computes)."""

    def load(self) -> None: ...

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise AssertionError("validation must not compute")

    def unload(self) -> None: ...

    def inputs(self) -> list[TensorSpec]:
        return []

    def outputs(self) -> list[TensorSpec]:
        return []


def _served(max_batch_size: int = 4, *, single: bool = False) -> ServedVersion:
    config = mc.ModelConfig(name="det", platform="onnxruntime_onnx", max_batch_size=max_batch_size)
    config.input.add(name="image", data_type=mc.TYPE_FP32, dims=[3, 2])
    if not single:
        config.input.add(name="mask", data_type=mc.TYPE_INT64, dims=[-1])
    config.output.add(name="boxes", data_type=mc.TYPE_FP32, dims=[4])
    config.instance_group.add(count=1)
    return ServedVersion("det", 1, config, FakeRuntime(), None)


def _tensor(name: str, datatype: str, shape: tuple[int, ...]) -> InputTensor:
    dtype = {"FP32": np.float32, "INT64": np.int64, "FP64": np.float64}[datatype]
    return InputTensor(name, datatype, shape, np.zeros(shape, dtype=dtype))


def _request(*inputs: InputTensor) -> InferRequest:
    return InferRequest("det", inputs=list(inputs))


def _invalid(served: ServedVersion, request: InferRequest) -> str:
    with pytest.raises(FleetError) as info:
        validation.model_inputs(served, request)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    return info.value.message


IMAGE = _tensor("image", "FP32", (2, 3, 2))
MASK = _tensor("mask", "INT64", (2, 7))


def test_valid_inputs_come_back_by_name() -> None:
    result = validation.model_inputs(_served(), _request(MASK, IMAGE))
    assert list(result) == ["mask", "image"]
    assert result["image"] is IMAGE.data
    assert result["mask"] is MASK.data


def test_unknown_input_name() -> None:
    msg = _invalid(_served(), _request(IMAGE, MASK, _tensor("extra", "FP32", (2,))))
    assert "no input 'extra'" in msg
    assert "image, mask" in msg


def test_duplicate_input() -> None:
    msg = _invalid(_served(), _request(IMAGE, IMAGE, MASK))
    assert "input 'image' is given twice" in msg


def test_wrong_datatype() -> None:
    msg = _invalid(_served(), _request(_tensor("image", "FP64", (2, 3, 2)), MASK))
    assert "input 'image'" in msg
    assert "FP64" in msg
    assert "FP32" in msg


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 2, 1), (6,), ()])
def test_wrong_rank(shape: tuple[int, ...]) -> None:
    msg = _invalid(_served(), _request(_tensor("image", "FP32", shape), MASK))
    assert "input 'image'" in msg
    assert str(list(shape)) in msg
    assert "[-1, 3, 2]" in msg


@pytest.mark.parametrize("shape", [(2, 3, 3), (2, 1, 2)])
def test_wrong_fixed_dim(shape: tuple[int, ...]) -> None:
    msg = _invalid(_served(), _request(_tensor("image", "FP32", shape), MASK))
    assert "input 'image'" in msg
    assert str(list(shape)) in msg


def test_variable_dims_take_any_size() -> None:
    for width in (0, 1, 50):
        result = validation.model_inputs(_served(), _request(IMAGE, _tensor("mask", "INT64", (2, width))))
        assert result["mask"].shape == (2, width)


def test_batch_over_max_batch_size() -> None:
    msg = _invalid(
        _served(4), _request(_tensor("image", "FP32", (5, 3, 2)), _tensor("mask", "INT64", (5, 1)))
    )
    assert "input 'image'" in msg
    assert "batch size 5 exceeds the model's max_batch_size 4" in msg


def test_batch_of_max_batch_size_is_fine() -> None:
    result = validation.model_inputs(
        _served(4), _request(_tensor("image", "FP32", (4, 3, 2)), _tensor("mask", "INT64", (4, 1)))
    )
    assert result["image"].shape[0] == 4


def test_batch_zero() -> None:
    msg = _invalid(_served(), _request(_tensor("image", "FP32", (0, 3, 2)), _tensor("mask", "INT64", (0, 1))))
    assert "input 'image'" in msg
    assert "batch size must be at least 1" in msg


def test_mismatched_batch_sizes() -> None:
    msg = _invalid(_served(), _request(IMAGE, _tensor("mask", "INT64", (3, 7))))
    assert "input 'mask' has batch size 3, other inputs have 2" in msg


def test_missing_input() -> None:
    msg = _invalid(_served(), _request(IMAGE))
    assert "needs input(s) mask" in msg


def test_unbatched_model_takes_exact_shapes() -> None:
    served = _served(0)
    assert served.inputs[0].shape == (3, 2)
    result = validation.model_inputs(
        served, _request(_tensor("image", "FP32", (3, 2)), _tensor("mask", "INT64", (0,)))
    )
    assert result["mask"].shape == (0,)
    msg = _invalid(served, _request(_tensor("image", "FP32", (1, 3, 2)), _tensor("mask", "INT64", (1,))))
    assert "input 'image'" in msg
    assert "[3, 2]" in msg


def test_raw_single_input_takes_the_one_input_with_batch_one() -> None:
    served = _served(single=True)
    data = np.arange(6, dtype=np.float32)
    request = rest_codec.decode_infer_request(data.tobytes(), 0, "det", "", "rid")
    result = validation.model_inputs(served, request)
    assert list(result) == ["image"]
    np.testing.assert_array_equal(result["image"], data.reshape(1, 3, 2))


def test_raw_single_input_wrong_byte_count() -> None:
    request = rest_codec.decode_infer_request(b"\x00" * 20, 0, "det", "", "rid")
    msg = _invalid(_served(single=True), request)
    assert "'image'" in msg
    assert "expected 24" in msg


def test_raw_single_input_needs_a_single_input_model() -> None:
    request = rest_codec.decode_infer_request(b"\x00" * 24, 0, "det", "", "rid")
    msg = _invalid(_served(), request)
    assert "one input" in msg
    assert "'det' has 2" in msg


def test_raw_single_input_needs_fixed_dims() -> None:
    config = mc.ModelConfig(name="v", max_batch_size=0)
    config.input.add(name="x", data_type=mc.TYPE_UINT8, dims=[-1])
    config.output.add(name="y", data_type=mc.TYPE_UINT8, dims=[-1])
    served = ServedVersion("v", 1, config, FakeRuntime(), None)
    request = rest_codec.decode_infer_request(b"\x00" * 3, 0, "v", "", "rid")
    msg = _invalid(served, request)
    assert "'x'" in msg
    assert "fixed input dimensions" in msg


def test_real_loaded_version(tmp_path: Path) -> None:
    models.double_model(tmp_path)
    served = load_version(tmp_path / "double", 1, read_config(tmp_path / "double"), RuntimeOptions(), 8)
    try:
        assert served.max_batch_size == 8
        x = InputTensor("x", "FP32", (3, 4), np.ones((3, 4), dtype=np.float32))
        assert validation.model_inputs(served, InferRequest("double", inputs=[x]))["x"] is x.data
        bad = InputTensor("x", "FP32", (3, 5), np.ones((3, 5), dtype=np.float32))
        msg = _invalid(served, InferRequest("double", inputs=[bad]))
        assert "input 'x'" in msg
        assert "[-1, 4]" in msg
        wrong_type = InputTensor("x", "INT32", (1, 4), np.ones((1, 4), dtype=np.int32))
        assert "datatype INT32, the model expects FP32" in _invalid(
            served, InferRequest("double", inputs=[wrong_type])
        )
    finally:
        served.runtime.unload()


@pytest.mark.parametrize(
    ("dtype", "name"),
    [(np.float32, "FP32"), (np.int8, "INT8"), (np.bool_, "BOOL"), (np.float16, "FP16"), (object, "BYTES")],
)
def test_output_datatype(dtype: type, name: str) -> None:
    assert validation.output_datatype(np.zeros(1, dtype=dtype)) == name
