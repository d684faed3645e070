"""Small models generated for tests: identity models per v2 datatype, a doubling model, and
a copy of the project's digits model."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "model_repository" / "digits"

ONNX_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BF16": TensorProto.BFLOAT16,
    "BYTES": TensorProto.STRING,
}


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def identity_model(repo: Path, datatype: str, name: str | None = None, width: int | str = 4) -> str:
    """`identity_<type>`: INPUT0 [-1, width] -> OUTPUT0, no config.pbtxt (derived from the model)."""
    name = name or f"identity_{datatype.lower()}"
    t = ONNX_TYPES[datatype]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        name,
        [helper.make_tensor_value_info("INPUT0", t, ["N", width])],
        [helper.make_tensor_value_info("OUTPUT0", t, ["N", width])],
    )
    _save(graph, repo / name / "1" / "model.onnx")
    return name


def double_model(
    repo: Path, name: str = "double", versions: tuple[int, ...] = (1,), config: str | None = None
) -> str:
    """`double`: x FP32 [-1, 4] -> y = x * version * 2 (each version distinguishable)."""
    for v in versions:
        factor = helper.make_tensor("factor", TensorProto.FLOAT, [], [2.0 * v])
        graph = helper.make_graph(
            [helper.make_node("Mul", ["x", "factor"], ["y"])],
            name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
            [factor],
        )
        _save(graph, repo / name / str(v) / "model.onnx")
    if config is not None:
        (repo / name / "config.pbtxt").write_text(config)
    return name


def digits_model(repo: Path) -> str:
    """A copy of the project's digits model."""
    shutil.copytree(DIGITS, repo / "digits")
    return "digits"


def torchscript_model(repo: Path, name: str = "ts_scale", datatype: str = "FP32") -> str:
    """A TorchScript model (`model.pt`) with its config: OUTPUT__0 = INPUT__0 * 3 (and in its dtype)."""
    import torch

    class Scale(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 3

    config_type = {"FP32": "TYPE_FP32", "BF16": "TYPE_BF16", "FP16": "TYPE_FP16"}[datatype]
    version = repo / name / "1"
    version.mkdir(parents=True)
    torch.jit.script(Scale()).save(str(version / "model.pt"))
    (repo / name / "config.pbtxt").write_text(
        f'name: "{name}"\nplatform: "pytorch_libtorch"\nmax_batch_size: 8\n'
        f'input [ {{ name: "INPUT__0" data_type: {config_type} dims: [ 4 ] }} ]\n'
        f'output [ {{ name: "OUTPUT__0" data_type: {config_type} dims: [ 4 ] }} ]\n'
    )
    return name


def failing_model(repo: Path, name: str, version: int) -> None:
    """A version of x FP32 [-1, 4] -> y = 2x that fails at run time for inputs >= 4 (it looks the
    inputs up in a table of four first)."""
    inits = [
        helper.make_tensor("table", TensorProto.FLOAT, [4], [0.0, 1.0, 2.0, 3.0]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["idx"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "idx"], ["looked_up"]),
            helper.make_node("Mul", ["looked_up", "zero"], ["nothing"]),
            helper.make_node("Mul", ["x", "two"], ["x2"]),
            helper.make_node("Add", ["x2", "nothing"], ["y"]),
        ],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    _save(graph, repo / name / str(version) / "model.onnx")


def slow_model(repo: Path, name: str, version: int, layers: int = 16, width: int = 512) -> None:
    """A version of x FP32 [-1, 4] -> y = 2x that first burns `layers` width x width matmuls."""
    import numpy as np

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Tile", ["x", "reps"], ["h0"])]
    inits = [helper.make_tensor("reps", TensorProto.INT64, [2], [1, width // 4])]
    for i in range(layers):
        w = (rng.standard_normal((width, width)) / width).astype("float32")
        inits.append(helper.make_tensor(f"w{i}", TensorProto.FLOAT, [width, width], w.tobytes(), raw=True))
        nodes.append(helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"h{i + 1}"]))
    inits.append(helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]))
    inits.append(helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]))
    nodes += [
        helper.make_node("ReduceSum", [f"h{layers}"], ["s"], keepdims=1),
        helper.make_node("Mul", ["s", "zero"], ["z"]),
        helper.make_node("Mul", ["x", "two"], ["x2"]),
        helper.make_node("Add", ["x2", "z"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    _save(graph, repo / name / str(version) / "model.onnx")


def scaled_model(repo: Path, name: str, version: int, factor: float) -> None:
    """A version of x FP32 [-1, 4] -> y = factor * x (a negative factor flips every top-1 class)."""
    const = helper.make_tensor("factor", TensorProto.FLOAT, [], [factor])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "factor"], ["y"])],
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [const],
    )
    _save(graph, repo / name / str(version) / "model.onnx")
