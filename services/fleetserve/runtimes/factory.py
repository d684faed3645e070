"""Choosing and loading the runtime of a model version by platform."""

from __future__ import annotations

from pathlib import Path

from .base import Runtime, RuntimeOptions, TensorSpec

ONNX = "onnxruntime_onnx"
TORCHSCRIPT = "pytorch_libtorch"


def create_runtime(
    platform: str,
    path: Path,
    options: RuntimeOptions,
    inputs: list[TensorSpec] | None = None,
    outputs: list[TensorSpec] | None = None,
) -> Runtime:
    """A loaded runtime for a model file. TorchScript needs the declared inputs and outputs."""
    runtime: Runtime
    if platform == ONNX:
        from .onnx import OnnxRuntime

        runtime = OnnxRuntime(path, options)
    elif platform == TORCHSCRIPT:
        if not inputs or not outputs:
            raise ValueError("a TorchScript model needs its inputs and outputs declared in config.pbtxt")
        from .torchscript import TorchScriptRuntime

        runtime = TorchScriptRuntime(path, options, inputs, outputs)
    else:
        raise ValueError(f"platform '{platform}' is not served")
    runtime.load()
    return runtime
