"""Checking a request's inputs against the model version that will compute them."""

from __future__ import annotations

import numpy as np

from fleetserve.protocol import datatypes, tensors
from fleetserve.protocol.errors import invalid
from fleetserve.protocol.rest_codec import RAW_INPUT
from fleetserve.protocol.types import InferRequest, InputTensor
from fleetserve.repository.version import ServedVersion

Tensors = dict[str, np.ndarray]


def model_inputs(served: ServedVersion, request: InferRequest) -> Tensors:
    """The request's inputs keyed by name, each checked for name, datatype, shape and batch size."""
    if len(request.inputs) == 1 and request.inputs[0].parameters.get(RAW_INPUT):
        return _raw_single_input(served, request.inputs[0])
    result: Tensors = {}
    batch: int | None = None
    for tensor in request.inputs:
        spec = served.input_by_name.get(tensor.name)
        if spec is None:
            names = ", ".join(served.input_by_name)
            raise invalid(f"model '{served.name}' has no input '{tensor.name}' (inputs: {names})")
        if tensor.name in result:
            raise invalid(f"input '{tensor.name}' is given twice")
        if tensor.datatype != spec.datatype:
            raise invalid(
                f"input '{tensor.name}': datatype {tensor.datatype}, the model expects {spec.datatype}"
            )
        _check_shape(served, tensor.name, tensor.shape, spec.shape)
        if served.max_batch_size > 0:
            rows = tensor.shape[0]
            if batch is not None and rows != batch:
                raise invalid(f"input '{tensor.name}' has batch size {rows}, other inputs have {batch}")
            batch = rows
        result[tensor.name] = tensor.data
    missing = [name for name in served.input_by_name if name not in result]
    if missing:
        raise invalid(f"model '{served.name}' needs input(s) {', '.join(missing)}; the request lacks them")
    return result


def _check_shape(served: ServedVersion, name: str, shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    if len(shape) != len(expected) or any(e != -1 and s != e for s, e in zip(shape, expected, strict=True)):
        raise invalid(
            f"input '{name}': shape {list(shape)}, the model expects {list(expected)} (-1 = any size)"
        )
    if served.max_batch_size > 0:
        if shape[0] < 1:
            raise invalid(f"input '{name}': batch size must be at least 1")
        if shape[0] > served.max_batch_size:
            raise invalid(
                f"input '{name}': batch size {shape[0]} exceeds the model's "
                f"max_batch_size {served.max_batch_size}"
            )


def _raw_single_input(served: ServedVersion, raw: InputTensor) -> Tensors:
    """`Inference-Header-Content-Length: 0`: the body is the raw bytes of the single input."""
    if len(served.inputs) != 1:
        raise invalid(
            f"a raw binary body needs a model with one input; '{served.name}' has {len(served.inputs)}"
        )
    spec = served.inputs[0]
    shape = tuple(1 if i == 0 and served.max_batch_size > 0 else d for i, d in enumerate(spec.shape))
    if any(d < 0 for d in shape):
        raise invalid(f"a raw binary body needs fixed input dimensions; '{spec.name}' has {list(spec.shape)}")
    return {spec.name: tensors.from_raw(raw.data.data, spec.datatype, shape, spec.name)}


def _int_parameter(parameters: dict[str, object], name: str) -> int:
    value = parameters.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(f"request parameter '{name}' must be a non-negative integer, got {value!r}")
    return value


def timeout_s(parameters: dict[str, object]) -> float | None:
    """The v2 `timeout` parameter (microseconds, as Triton; 0 or absent: none) in seconds."""
    micros = _int_parameter(parameters, "timeout") if "timeout" in parameters else 0
    return micros / 1e6 if micros else None


def priority(parameters: dict[str, object]) -> int:
    """The request's `priority` parameter (0 or absent: the model's default level)."""
    return _int_parameter(parameters, "priority") if "priority" in parameters else 0


def output_datatype(array: np.ndarray) -> str:
    """The v2 datatype of a computed output."""
    return datatypes.from_numpy(array.dtype).name
