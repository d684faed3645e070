"""TorchScript models (`torch.jit.load`; never unpickled), on CUDA when asked and present.

TorchScript files carry no tensor names, so the model config names them: inputs are passed
positionally in config order, and outputs (a tensor, a tuple / list, or a dict) are named by
config order too (a dict by its keys).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from .base import RuntimeOptions, TensorSpec


def _to_torch(array: np.ndarray) -> Any:
    import torch

    if array.dtype == ml_dtypes.bfloat16:  # numpy has no bfloat16 of its own: reinterpret the bits
        return torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16)
    if not array.flags.writeable:
        array = array.copy()  # torch.from_numpy wants writeable memory
    return torch.from_numpy(np.ascontiguousarray(array))


def _to_numpy(tensor: Any) -> np.ndarray:
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


class TorchScriptRuntime:
    """A TorchScript module for one model version instance."""

    def __init__(
        self, path: Path, options: RuntimeOptions, inputs: list[TensorSpec], outputs: list[TensorSpec]
    ) -> None:
        self.path = path
        self.options = options
        self._inputs = inputs
        self._outputs = outputs
        self._module: Any = None
        self._device: Any = None

    def load(self) -> None:
        import torch

        torch.set_num_threads(self.options.torch_threads)
        use_cuda = self.options.device != "cpu" and torch.cuda.is_available()
        self._device = torch.device("cuda" if use_cuda else "cpu")
        module = torch.jit.load(str(self.path), map_location=self._device)
        module.eval()
        self._module = module

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [_to_torch(inputs[s.name]).to(self._device) for s in self._inputs]
        with torch.inference_mode():
            result = self._module(*args)
        if isinstance(result, dict):
            return {k: _to_numpy(v) for k, v in result.items()}
        if isinstance(result, torch.Tensor):
            result = (result,)
        if len(result) != len(self._outputs):
            raise RuntimeError(f"model returned {len(result)} outputs, config declares {len(self._outputs)}")
        return {s.name: _to_numpy(r) for s, r in zip(self._outputs, result, strict=True)}

    def unload(self) -> None:
        self._module = None

    def inputs(self) -> list[TensorSpec]:
        return list(self._inputs)

    def outputs(self) -> list[TensorSpec]:
        return list(self._outputs)
