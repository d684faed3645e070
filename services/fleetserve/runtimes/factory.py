"""Choosing and loading the runtime of a model version by platform."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fleetserve.wire import model_config_pb2 as mc

from .base import Runtime, RuntimeOptions, TensorSpec

ONNX = "onnxruntime_onnx"
TORCHSCRIPT = "pytorch_libtorch"
REMOTE = "remote"


def create_runtime(
    platform: str,
    path: Path,
    options: RuntimeOptions,
    inputs: list[TensorSpec] | None = None,
    outputs: list[TensorSpec] | None = None,
    config: mc.ModelConfig | None = None,
) -> Runtime:
    """A loaded runtime for a model file. TorchScript needs the declared inputs and outputs; a
    remote model needs its config.pbtxt (the upstream's address is in its parameters). Where
    `options.placement` is set (another engine runs the model), it creates the runtime instead."""
    if options.placement is not None and platform != REMOTE:
        # a remote model is a network client already: it stays in the gateway's process
        placed: Runtime = options.placement(
            platform, path, dataclasses.replace(options, placement=None), inputs, outputs, config
        )
        return placed
    runtime: Runtime
    if platform == ONNX:
        from .onnx import OnnxRuntime

        runtime = OnnxRuntime(path, options)
    elif platform == TORCHSCRIPT:
        if not inputs or not outputs:
            raise ValueError("a TorchScript model needs its inputs and outputs declared in config.pbtxt")
        from .torchscript import TorchScriptRuntime

        runtime = TorchScriptRuntime(path, options, inputs, outputs)
    elif platform == REMOTE:
        if config is None:
            raise ValueError("a remote model needs config.pbtxt with its remote_url parameter")
        from .remote import RemoteRuntime

        runtime = RemoteRuntime.from_config(config, default_model=path.parent.name)
    else:
        raise ValueError(f"platform '{platform}' is not served")
    runtime.load()
    return runtime
