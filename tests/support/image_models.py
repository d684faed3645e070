"""A small colour model for the image route's tests: an NHWC RGB image in, which of red, green and
blue dominates out (so a test sees channel order, layout and normalisation reach the model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

from . import models
from .models import _save

COLOURS = ("red", "green", "blue")
COLOURS_CONFIG = """\
name: "colours"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "pixels" data_type: TYPE_FP32 dims: [ 16, 16, 3 ] } ]
output [ { name: "scores" data_type: TYPE_FP32 dims: [ 3 ] label_filename: "labels.txt" } ]
dynamic_batching { }
parameters { key: "image_size" value: { string_value: "16,16" } }
parameters { key: "image_channels" value: { string_value: "3" } }
parameters { key: "image_layout" value: { string_value: "NHWC" } }
parameters { key: "image_scale" value: { string_value: "0.0039215686" } }
parameters { key: "image_mean" value: { string_value: "0.5,0.5,0.5" } }
parameters { key: "image_std" value: { string_value: "0.25,0.25,0.25" } }
"""


def colours_model(repo: Path, versions: tuple[int, ...] = (1, 2)) -> str:
    """`colours`: an NHWC RGB image -> softmax over (red, green, blue), the dominant mean channel."""
    weights = (20.0 * np.eye(3) - 10.0).astype(np.float32)
    for v in versions:
        graph = helper.make_graph(
            [
                helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=[1, 2], keepdims=0),
                helper.make_node("MatMul", ["mean", "w"], ["logits"]),
                helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
            ],
            "colours",
            [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 16, 16, 3])],
            [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3])],
            [helper.make_tensor("w", TensorProto.FLOAT, [3, 3], weights.tobytes(), raw=True)],
        )
        _save(graph, repo / "colours" / str(v) / "model.onnx")
    (repo / "colours" / "config.pbtxt").write_text(COLOURS_CONFIG)
    (repo / "colours" / "labels.txt").write_text("\n".join(COLOURS) + "\n")
    return "colours"


def digits_without_slo(repo: Path) -> str:
    """A copy of the project's digits model without its `latency_slo_ms`: the image tests are about
    images, and on a busy two-core test machine a 10 ms SLO sheds some requests with 503."""
    name = models.digits_model(repo)
    config = repo / name / "config.pbtxt"
    lines = config.read_text().splitlines(keepends=True)
    config.write_text("".join(line for line in lines if "latency_slo_ms" not in line))
    return name
