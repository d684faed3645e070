"""The gRPC form of v2 inference: protobuf messages from `wire` <-> protocol types."""

from __future__ import annotations

from typing import Any

import numpy as np

from fleetserve.wire import inference_pb2 as pb

from . import tensors
from .errors import invalid
from .types import InferRequest, InferResponse, InputTensor, RequestedOutput

_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parameters_from_pb(params: Any) -> dict[str, Any]:
    """A protobuf InferParameter map as plain Python values."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        which = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, which) if which else None
    return out


def parameters_to_pb(target: Any, params: dict[str, Any]) -> None:
    """Write plain Python values into a protobuf InferParameter map."""
    for key, value in params.items():
        slot = target[key]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int):
            slot.int64_param = value
        elif isinstance(value, float):
            slot.double_param = value
        else:
            slot.string_param = str(value)


def decode_infer_request(msg: pb.ModelInferRequest, request_id: str) -> InferRequest:
    """Decode a ModelInferRequest (raw_input_contents or typed contents)."""
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise invalid(f"request has {len(msg.inputs)} inputs but {len(raw)} raw_input_contents entries")
    inputs: list[InputTensor] = []
    for i, tensor in enumerate(msg.inputs):
        name = tensor.name
        if not name:
            raise invalid(f"inputs[{i}] needs a name")
        shape = tensors.check_shape(tensor.shape, name)
        if raw:
            data = tensors.from_raw(raw[i], tensor.datatype, shape, name)
        else:
            data = _from_contents(tensor, shape)
        params = parameters_from_pb(tensor.parameters) if tensor.parameters else {}
        inputs.append(InputTensor(name, tensor.datatype, shape, data, params))
    if not inputs:
        raise invalid("inference request needs at least one input")
    outputs = []
    for o in msg.outputs:
        oparams = parameters_from_pb(o.parameters) if o.parameters else {}
        classification = oparams.get("classification", 0)
        if not isinstance(classification, int) or isinstance(classification, bool) or classification < 0:
            raise invalid(f"output '{o.name}': classification must be a non-negative integer")
        outputs.append(RequestedOutput(name=o.name, classification=classification, parameters=oparams))
    return InferRequest(
        model_name=msg.model_name,
        model_version=msg.model_version,
        id=msg.id,
        inputs=inputs,
        outputs=outputs,
        parameters=parameters_from_pb(msg.parameters) if msg.parameters else {},
        request_id=request_id,
    )


def _from_contents(tensor: Any, shape: tuple[int, ...]) -> np.ndarray:
    dt = tensors.datatype_of(tensor.datatype, tensor.name)
    field = _CONTENTS_FIELD.get(dt.name)
    if field is None:
        raise invalid(f"input '{tensor.name}': {dt.name} data can only travel in raw_input_contents")
    values = getattr(tensor.contents, field)
    count = tensors.element_count(shape)
    if len(values) != count:
        raise invalid(
            f"input '{tensor.name}': got {len(values)} elements in contents.{field}, "
            f"expected {count} for shape {list(shape)}"
        )
    if dt.size == 0:
        out = np.empty(count, dtype=object)
        out[:] = list(values)
        return out.reshape(shape)
    if dt.dtype.kind in "iu" and dt.size < 4:
        # INT8 / INT16 / UINT8 / UINT16 travel in 32-bit fields; a cast would wrap silently.
        wide = np.asarray(values, dtype=np.int64)
        info = np.iinfo(dt.dtype)
        if wide.size and (wide.min() < info.min or wide.max() > info.max):
            raise invalid(
                f"input '{tensor.name}': contents.{field} holds values outside the range of {dt.name} "
                f"[{info.min}, {info.max}]"
            )
        return wide.astype(dt.dtype).reshape(shape)
    return np.asarray(values, dtype=dt.dtype).reshape(shape)


def encode_infer_response(response: InferResponse) -> pb.ModelInferResponse:
    """Encode a response with raw_output_contents (the form tritonclient reads)."""
    msg = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    for out in response.outputs:
        tensor = msg.outputs.add(name=out.name, datatype=out.datatype, shape=out.shape)
        if out.parameters:
            parameters_to_pb(tensor.parameters, out.parameters)
        msg.raw_output_contents.append(tensors.to_raw(out.data))
    if response.parameters:
        parameters_to_pb(msg.parameters, response.parameters)
    return msg
