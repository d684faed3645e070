"""ONNX models on onnxruntime (CUDA execution provider when present, else CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from fleetserve.protocol.errors import invalid

from .base import RuntimeOptions, TensorSpec

_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(bfloat16)": "BF16",
    "tensor(string)": "BYTES",
}


def _spec(arg: ort.NodeArg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorSpec(arg.name, _ORT_TYPES.get(arg.type, arg.type), shape)


def _strings(array: np.ndarray) -> np.ndarray:
    """onnxruntime string tensors take `str`: v2 BYTES items are decoded as UTF-8."""
    out = np.empty(array.shape, dtype=object)
    flat = out.reshape(-1)
    for i, item in enumerate(array.reshape(-1)):
        try:
            flat[i] = item.decode() if isinstance(item, bytes) else str(item)
        except UnicodeDecodeError:
            raise invalid("an ONNX string input must be UTF-8 text; got bytes that are not") from None
    return out


class OnnxRuntime:
    """An onnxruntime InferenceSession for one model version instance."""

    def __init__(self, path: Path, options: RuntimeOptions) -> None:
        self.path = path
        self.options = options
        self._session: ort.InferenceSession | None = None
        self._output_names: list[str] = []

    def load(self) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.options.intra_op_threads
        opts.inter_op_num_threads = self.options.inter_op_threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if self.options.device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self._session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        self._output_names = [o.name for o in self._session.get_outputs()]
        bf16 = [
            a.name
            for a in [*self._session.get_inputs(), *self._session.get_outputs()]
            if a.type == "tensor(bfloat16)"
        ]
        if bf16:
            self._session = None
            raise ValueError(
                f"tensors {', '.join(bf16)} are bfloat16, which onnxruntime's Python API cannot pass; "
                "serve this model as TorchScript or export it with FP16 / FP32"
            )

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self._session is not None, "infer before load"
        feed = {k: _strings(v) if v.dtype == object else v for k, v in inputs.items()}
        results = self._session.run(self._output_names, feed)
        return dict(zip(self._output_names, results, strict=True))

    def unload(self) -> None:
        self._session = None

    def inputs(self) -> list[TensorSpec]:
        assert self._session is not None
        return [_spec(a) for a in self._session.get_inputs()]

    def outputs(self) -> list[TensorSpec]:
        assert self._session is not None
        return [_spec(a) for a in self._session.get_outputs()]
