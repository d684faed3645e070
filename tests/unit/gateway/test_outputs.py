"""Choosing requested outputs, and Triton's classification extension."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fleetserve.gateway import outputs
from fleetserve.protocol.errors import ErrorCode, FleetError
from fleetserve.protocol.types import InferRequest, RequestedOutput
from fleetserve.repository.config import read_config
from fleetserve.repository.loader import load_version
from fleetserve.repository.version import ServedVersion
from fleetserve.runtimes.base import RuntimeOptions, TensorSpec
from fleetserve.wire import model_config_pb2 as mc
from tests.support import models

LABELS = ["cat", "dog", "eel", "fox"]
PROBS = np.array([[0.1, 0.6, 0.05, 0.25], [0.7, 0.1, 0.1, 0.1]], dtype=np.float32)
COUNT = np.array([[3], [5]], dtype=np.int64)


class FakeRuntime:
    def load(self) -> None: ...

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise AssertionError("not used")

    def unload(self) -> None: ...

    def inputs(self) -> list[TensorSpec]:
        return []

    def outputs(self) -> list[TensorSpec]:
        return []


def _served(labels: list[str] | None = LABELS, max_batch_size: int = 4) -> ServedVersion:
    config = mc.ModelConfig(name="cls", max_batch_size=max_batch_size)
    config.input.add(name="x", data_type=mc.TYPE_FP32, dims=[4])
    config.output.add(name="probs", data_type=mc.TYPE_FP32, dims=[4])
    config.output.add(name="count", data_type=mc.TYPE_INT64, dims=[1])
    return ServedVersion("cls", 1, config, FakeRuntime(), labels)


def _select(served: ServedVersion, *wanted: RequestedOutput, binary_output: bool = False, computed=None):
    request = InferRequest("cls", outputs=list(wanted), binary_output=binary_output)
    return outputs.select(served, request, computed or {"probs": PROBS, "count": COUNT})


def test_all_outputs_in_model_order_when_none_is_named() -> None:
    result = _select(_served())
    assert [(o.name, o.datatype, o.shape, o.binary) for o in result] == [
        ("probs", "FP32", (2, 4), False),
        ("count", "INT64", (2, 1), False),
    ]
    assert result[0].data is PROBS


def test_binary_output_default_applies_to_all_outputs() -> None:
    assert [o.binary for o in _select(_served(), binary_output=True)] == [True, True]


def test_requested_outputs_in_request_order() -> None:
    result = _select(_served(), RequestedOutput("count", binary=True), RequestedOutput("probs"))
    assert [(o.name, o.binary) for o in result] == [("count", True), ("probs", False)]
    assert result[0].data is COUNT


def test_unknown_output_name() -> None:
    with pytest.raises(FleetError) as info:
        _select(_served(), RequestedOutput("scores"))
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    assert "model 'cls' has no output 'scores'" in info.value.message
    assert "probs, count" in info.value.message


def test_classification_with_labels_per_batch_item() -> None:
    (out,) = _select(_served(), RequestedOutput("probs", classification=2))
    assert (out.name, out.datatype, out.shape) == ("probs", "BYTES", (2, 2))
    assert out.data.tolist() == [
        [b"0.600000:1:dog", b"0.250000:3:fox"],
        [b"0.700000:0:cat", b"0.100000:1:dog"],  # ties keep index order
    ]


def test_classification_without_labels() -> None:
    (out,) = _select(_served(labels=None), RequestedOutput("probs", classification=1))
    assert out.data.tolist() == [[b"0.600000:1"], [b"0.700000:0"]]


def test_classification_k_beyond_the_classes_gives_every_class() -> None:
    (out,) = _select(_served(), RequestedOutput("probs", classification=10))
    assert out.shape == (2, 4)
    assert [s.split(b":")[1] for s in out.data[0]] == [b"1", b"3", b"0", b"2"]


def test_classification_with_fewer_labels_than_classes() -> None:
    (out,) = _select(_served(labels=["cat", "dog"]), RequestedOutput("probs", classification=2))
    assert out.data[0].tolist() == [b"0.600000:1:dog", b"0.250000:3"]


def test_classification_of_an_unbatched_model() -> None:
    served = _served(max_batch_size=0)
    computed = {"probs": np.array([0.2, 0.5, 0.3], dtype=np.float32), "count": COUNT}
    (out,) = _select(served, RequestedOutput("probs", classification=2), computed=computed)
    assert out.shape == (2,)
    assert out.data.tolist() == [b"0.500000:1:dog", b"0.300000:2:eel"]


def test_classification_mixed_with_plain_outputs() -> None:
    cls, count = _select(
        _served(), RequestedOutput("probs", classification=1, binary=True), RequestedOutput("count")
    )
    assert (cls.datatype, cls.binary) == ("BYTES", True)
    assert (count.datatype, count.binary) == ("INT64", False)


def test_classify_multi_dim_rows_are_flattened_per_item() -> None:
    scores = np.array([[[0.1, 0.9]], [[0.8, 0.2]]], dtype=np.float32)  # (2, 1, 2)
    out = outputs.classify(scores, 1, None, batched=True)
    assert out.tolist() == [[b"0.900000:1"], [b"0.800000:0"]]


def test_classification_on_a_real_version_with_a_label_file(tmp_path: Path) -> None:
    config = (
        "max_batch_size: 4\n"
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] label_filename: "labels.txt" } ]\n'
    )
    models.double_model(tmp_path, config=config)
    (tmp_path / "double" / "labels.txt").write_text("a\nb\nc\nd\n")
    served = load_version(tmp_path / "double", 1, read_config(tmp_path / "double"), RuntimeOptions(), 4)
    try:
        assert served.labels == ["a", "b", "c", "d"]
        assert [s.name for s in served.inputs] == ["x"]  # filled in from the model
        y = served.runtime.infer({"x": np.array([[1, 4, 2, 3]], dtype=np.float32)})
        (out,) = outputs.select(
            served, InferRequest("double", outputs=[RequestedOutput("y", classification=2)]), y
        )
        assert out.data.tolist() == [[b"8.000000:1:b", b"6.000000:3:d"]]
    finally:
        served.runtime.unload()
