"""The REST form of v2 inference: JSON bodies and the binary tensor extension.

A binary request body is a JSON header of `Inference-Header-Content-Length` bytes followed by
the raw bytes of each input that carries `parameters.binary_data_size`, in input order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from . import tensors
from .errors import invalid
from .types import InferRequest, InferResponse, InputTensor, RequestedOutput

RAW_INPUT = "raw_binary"  # parameter marking the single input of a header-less binary body


def parse_json(body: bytes | memoryview, what: str = "request body") -> Any:
    """Parse JSON with a clear error."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise invalid(f"malformed JSON in {what}: {exc}") from None


def decode_infer_request(
    body: bytes,
    header_length: int | None,
    model_name: str,
    model_version: str,
    request_id: str,
) -> InferRequest:
    """Decode a REST infer body (JSON, or JSON header plus binary tensors)."""
    if header_length is not None and header_length == 0:
        data = np.frombuffer(body, dtype=np.uint8)
        raw = InputTensor(name="", datatype="", shape=(len(body),), data=data, parameters={RAW_INPUT: True})
        return InferRequest(model_name, model_version, inputs=[raw], request_id=request_id)
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise invalid(
                f"Inference-Header-Content-Length is {header_length} but the body has {len(body)} bytes"
            )
        header = parse_json(memoryview(body)[:header_length], "inference header")
        blob = memoryview(body)[header_length:]
    else:
        header = parse_json(body)
        blob = memoryview(b"")
    if not isinstance(header, dict):
        raise invalid("inference request must be a JSON object")
    params = _parameters(header.get("parameters"), "request")
    inputs_json = header.get("inputs")
    if not isinstance(inputs_json, list) or not inputs_json:
        raise invalid("inference request needs a non-empty 'inputs' list")
    inputs: list[InputTensor] = []
    offset = 0
    for i, item in enumerate(inputs_json):
        tensor, offset = _decode_input(item, i, blob, offset)
        inputs.append(tensor)
    if offset != len(blob):
        raise invalid(f"body has {len(blob) - offset} bytes of binary data beyond what the inputs declare")
    binary_default = bool(params.get("binary_data_output", False))
    outputs_json = header.get("outputs")
    if outputs_json is not None and not isinstance(outputs_json, list):
        raise invalid("inference request 'outputs' must be a list")
    outputs = [_decode_output(o, i, binary_default) for i, o in enumerate(outputs_json or [])]
    request_id_str = header.get("id", "")
    return InferRequest(
        model_name=model_name,
        model_version=model_version,
        id=str(request_id_str) if request_id_str is not None else "",
        inputs=inputs,
        outputs=outputs,
        parameters=params,
        request_id=request_id,
        binary_output=binary_default,
    )


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"{where} 'parameters' must be a JSON object")
    return value


def _decode_input(item: Any, index: int, blob: memoryview, offset: int) -> tuple[InputTensor, int]:
    if not isinstance(item, dict):
        raise invalid(f"inputs[{index}] must be a JSON object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise invalid(f"inputs[{index}] needs a 'name'")
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise invalid(f"input '{name}' needs a 'datatype'")
    if "shape" not in item or not isinstance(item["shape"], list):
        raise invalid(f"input '{name}' needs a 'shape' list")
    shape = tensors.check_shape(item["shape"], name)
    params = _parameters(item.get("parameters"), f"input '{name}'")
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise invalid(f"input '{name}': binary_data_size must be a non-negative integer")
        if offset + size > len(blob):
            raise invalid(
                f"input '{name}': binary_data_size is {size} but only {len(blob) - offset} bytes "
                "of binary data remain in the body (truncated body?)"
            )
        data = tensors.from_raw(blob[offset : offset + size], datatype, shape, name)
        offset += size
    else:
        if "data" not in item:
            raise invalid(f"input '{name}' has neither 'data' nor parameters.binary_data_size")
        data = tensors.from_json(item["data"], datatype, shape, name)
    return InputTensor(name, datatype, shape, data, params), offset


def _decode_output(item: Any, index: int, binary_default: bool) -> RequestedOutput:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise invalid(f"outputs[{index}] must be an object with a 'name'")
    params = _parameters(item.get("parameters"), f"output '{item['name']}'")
    binary = params.get("binary_data")
    classification = params.get("classification", 0)
    if not isinstance(classification, int) or isinstance(classification, bool) or classification < 0:
        raise invalid(f"output '{item['name']}': classification must be a non-negative integer")
    return RequestedOutput(
        name=item["name"],
        binary=bool(binary) if binary is not None else binary_default,
        classification=classification,
        parameters=params,
    )


def encode_infer_response(response: InferResponse) -> tuple[bytes, int | None]:
    """Encode a response; returns the body and the JSON header length when binary outputs follow."""
    outputs_json: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for out in response.outputs:
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": list(out.shape)}
        params = dict(out.parameters)
        if out.binary:
            raw = tensors.to_raw(out.data)
            params["binary_data_size"] = len(raw)
            blobs.append(raw)
        else:
            entry["data"] = tensors.to_json(out.data, out.name)
        if params:
            entry["parameters"] = params
        outputs_json.append(entry)
    body: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs_json,
    }
    if response.id:
        body["id"] = response.id
    if response.parameters:
        body["parameters"] = response.parameters
    header = orjson.dumps(body)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
