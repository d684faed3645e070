"""REST v2 bodies: JSON, the binary tensor extension, requested outputs, and responses."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from fleetserve.protocol import rest_codec
from fleetserve.protocol.errors import ErrorCode, FleetError
from fleetserve.protocol.types import InferResponse, OutputTensor


def _decode(body: bytes | dict, header_length: int | None = None):
    if isinstance(body, dict):
        body = orjson.dumps(body)
    return rest_codec.decode_infer_request(body, header_length, "m", "2", "req-1")


def _binary_body(header: dict, *blobs: bytes) -> tuple[bytes, int]:
    head = orjson.dumps(header)
    return head + b"".join(blobs), len(head)


def _invalid(body: bytes | dict, header_length: int | None = None) -> str:
    with pytest.raises(FleetError) as info:
        _decode(body, header_length)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    return info.value.message


# --- JSON requests ---


def test_json_request() -> None:
    req = _decode(
        {
            "id": "abc",
            "parameters": {"priority": 2},
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]},
                {"name": "s", "datatype": "BYTES", "shape": [1], "data": ["hé"], "parameters": {"p": 1}},
            ],
        }
    )
    assert (req.model_name, req.model_version, req.request_id, req.id) == ("m", "2", "req-1", "abc")
    assert req.parameters == {"priority": 2}
    assert [i.name for i in req.inputs] == ["x", "s"]
    x, s = req.inputs
    assert x.datatype == "FP32"
    assert x.shape == (2, 2)
    assert x.data.dtype == np.float32
    assert x.data.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert s.data.tolist() == ["hé".encode()]
    assert s.parameters == {"p": 1}
    assert req.outputs == []
    assert req.binary_output is False


def test_numeric_id_becomes_string() -> None:
    req = _decode({"id": 7, "inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1]}]})
    assert req.id == "7"


def test_no_id_is_empty() -> None:
    req = _decode({"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1]}]})
    assert req.id == ""


# --- binary requests ---


def test_binary_request_blobs_follow_the_header_in_input_order() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([7, 8], dtype=np.int64)
    body, length = _binary_body(
        {
            "inputs": [
                {"name": "a", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}},
                {"name": "j", "datatype": "INT32", "shape": [1], "data": [5]},
                {"name": "b", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 16}},
            ]
        },
        a.tobytes(),
        b.tobytes(),
    )
    req = _decode(body, length)
    by_name = {i.name: i.data for i in req.inputs}
    np.testing.assert_array_equal(by_name["a"], a)
    np.testing.assert_array_equal(by_name["b"], b)
    assert by_name["j"].tolist() == [5]


def test_binary_bytes_input() -> None:
    blob = struct.pack("<I", 2) + b"hi" + struct.pack("<I", 0)
    body, length = _binary_body(
        {
            "inputs": [
                {"name": "s", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 10}}
            ]
        },
        blob,
    )
    assert _decode(body, length).inputs[0].data.tolist() == [b"hi", b""]


def test_binary_header_only_json_is_accepted() -> None:
    body, length = _binary_body({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [3]}]})
    assert _decode(body, length).inputs[0].data.tolist() == [3]


def test_header_length_larger_than_body() -> None:
    body, length = _binary_body({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [3]}]})
    msg = _invalid(body, length + 10)
    assert "Inference-Header-Content-Length" in msg
    assert str(length + 10) in msg
    assert str(len(body)) in msg


def test_negative_header_length() -> None:
    assert "Inference-Header-Content-Length" in _invalid(b"{}", -1)


def test_extra_trailing_bytes() -> None:
    body, length = _binary_body(
        {"inputs": [{"name": "x", "datatype": "UINT8", "shape": [2], "parameters": {"binary_data_size": 2}}]},
        b"\x01\x02\x03\x04\x05",
    )
    assert "3 bytes of binary data beyond" in _invalid(body, length)


def test_trailing_bytes_without_binary_inputs() -> None:
    body, length = _binary_body(
        {"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [3]}]}, b"junk"
    )
    assert "4 bytes" in _invalid(body, length)


def test_truncated_blob() -> None:
    body, length = _binary_body(
        {
            "inputs": [
                {"name": "img", "datatype": "FP32", "shape": [4], "parameters": {"binary_data_size": 16}}
            ]
        },
        b"\x00" * 10,
    )
    msg = _invalid(body, length)
    assert "'img'" in msg
    assert "16" in msg
    assert "only 10 bytes" in msg


def test_binary_data_size_disagreeing_with_shape() -> None:
    body, length = _binary_body(
        {
            "inputs": [
                {"name": "img", "datatype": "FP32", "shape": [4], "parameters": {"binary_data_size": 8}}
            ]
        },
        b"\x00" * 8,
    )
    msg = _invalid(body, length)
    assert "'img'" in msg
    assert "expected 16" in msg


@pytest.mark.parametrize("size", [-1, 1.5, "8", True])
def test_bad_binary_data_size(size: object) -> None:
    body, length = _binary_body(
        {
            "inputs": [
                {"name": "x", "datatype": "UINT8", "shape": [1], "parameters": {"binary_data_size": size}}
            ]
        },
        b"\x00",
    )
    assert "binary_data_size must be a non-negative integer" in _invalid(body, length)


def test_binary_data_size_in_plain_json_body() -> None:
    msg = _invalid(
        {"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1], "parameters": {"binary_data_size": 1}}]}
    )
    assert "only 0 bytes" in msg


def test_header_length_zero_is_a_raw_single_input() -> None:
    body = b"\x01\x02\x03\x04"
    req = _decode(body, 0)
    assert len(req.inputs) == 1
    raw = req.inputs[0]
    assert raw.parameters == {rest_codec.RAW_INPUT: True}
    assert bytes(raw.data) == body
    assert (req.model_name, req.model_version, req.request_id) == ("m", "2", "req-1")


# --- outputs ---


def _with_outputs(outputs: list, parameters: dict | None = None):
    header = {"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}], "outputs": outputs}
    if parameters is not None:
        header["parameters"] = parameters
    return _decode(header)


def test_outputs_binary_data_and_classification() -> None:
    req = _with_outputs(
        [
            {"name": "a", "parameters": {"binary_data": True}},
            {"name": "b", "parameters": {"classification": 3}},
            {"name": "c"},
        ]
    )
    a, b, c = req.outputs
    assert (a.name, a.binary, a.classification) == ("a", True, 0)
    assert (b.name, b.binary, b.classification) == ("b", False, 3)
    assert b.parameters == {"classification": 3}
    assert (c.name, c.binary) == ("c", False)


def test_binary_data_output_is_the_default_for_outputs() -> None:
    req = _with_outputs(
        [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}], {"binary_data_output": True}
    )
    assert req.binary_output is True
    assert [o.binary for o in req.outputs] == [True, False]


def test_binary_data_output_without_named_outputs() -> None:
    assert _with_outputs([], {"binary_data_output": True}).binary_output is True


@pytest.mark.parametrize("value", [-1, "3", 1.5, True])
def test_bad_classification(value: object) -> None:
    with pytest.raises(FleetError) as info:
        _with_outputs([{"name": "probs", "parameters": {"classification": value}}])
    assert "'probs'" in info.value.message
    assert "classification" in info.value.message


@pytest.mark.parametrize("bad", [{"parameters": {}}, {"name": 3}, "y"])
def test_output_without_name(bad: object) -> None:
    with pytest.raises(FleetError) as info:
        _with_outputs([bad])
    assert "outputs[0]" in info.value.message


# --- malformed requests ---


def test_malformed_json() -> None:
    assert "malformed JSON in request body" in _invalid(b'{"inputs": [')


def test_malformed_binary_header() -> None:
    assert "malformed JSON in inference header" in _invalid(b'{"inputs": x}' + b"\x00" * 4, 13)


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"3"])
def test_request_must_be_an_object(body: bytes) -> None:
    assert "JSON object" in _invalid(body)


@pytest.mark.parametrize("inputs", [None, [], {}, "x"])
def test_missing_inputs(inputs: object) -> None:
    header = {} if inputs is None else {"inputs": inputs}
    assert "'inputs'" in _invalid(header)


@pytest.mark.parametrize(
    "item", [{"datatype": "FP32", "shape": [1], "data": [1]}, {"name": "", "shape": [1]}]
)
def test_missing_input_name(item: dict) -> None:
    assert "inputs[0] needs a 'name'" in _invalid({"inputs": [item]})


def test_input_not_an_object() -> None:
    assert "inputs[1] must be a JSON object" in _invalid(
        {"inputs": [{"name": "a", "datatype": "INT8", "shape": [1], "data": [1]}, 5]}
    )


def test_missing_datatype() -> None:
    assert "input 'x' needs a 'datatype'" in _invalid({"inputs": [{"name": "x", "shape": [1], "data": [1]}]})


@pytest.mark.parametrize("shape", [None, 3, "1"])
def test_missing_or_bad_shape(shape: object) -> None:
    item = {"name": "x", "datatype": "FP32", "data": [1]}
    if shape is not None:
        item["shape"] = shape
    assert "input 'x' needs a 'shape' list" in _invalid({"inputs": [item]})


def test_shape_with_non_integer() -> None:
    msg = _invalid({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1.5], "data": [1]}]})
    assert "'x'" in msg
    assert "integers" in msg


def test_missing_data() -> None:
    msg = _invalid({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]})
    assert "input 'x' has neither 'data' nor parameters.binary_data_size" in msg


def test_parameters_must_be_an_object() -> None:
    assert "'parameters' must be a JSON object" in _invalid(
        {"parameters": [1], "inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}]}
    )
    assert "input 'x' 'parameters'" in _invalid(
        {"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1], "parameters": 3}]}
    )


def test_wrong_data_count_names_the_input() -> None:
    msg = _invalid({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}]})
    assert "'x'" in msg
    assert "expected 2" in msg


# --- responses ---


def _response(*outputs: OutputTensor, **kw) -> InferResponse:
    return InferResponse(model_name="m", model_version="3", id=kw.pop("id", ""), outputs=list(outputs), **kw)


def test_encode_json_response() -> None:
    body, length = rest_codec.encode_infer_response(
        _response(
            OutputTensor("y", "FP32", (2, 2), np.array([[1, 2], [3, 4]], dtype=np.float32)),
            OutputTensor("s", "BYTES", (1,), np.array([b"ok"], dtype=object), parameters={"p": "v"}),
            id="abc",
            parameters={"k": 1},
        )
    )
    assert length is None
    doc = orjson.loads(body)
    assert doc == {
        "model_name": "m",
        "model_version": "3",
        "id": "abc",
        "parameters": {"k": 1},
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.0]},
            {"name": "s", "datatype": "BYTES", "shape": [1], "data": ["ok"], "parameters": {"p": "v"}},
        ],
    }


def test_encode_without_id_leaves_it_out() -> None:
    body, _ = rest_codec.encode_infer_response(
        _response(OutputTensor("y", "INT8", (1,), np.array([1], dtype=np.int8)))
    )
    doc = orjson.loads(body)
    assert "id" not in doc
    assert "parameters" not in doc


def test_encode_binary_outputs() -> None:
    y = np.arange(4, dtype=np.float32)
    s = np.array([b"ab", b""], dtype=object)
    body, length = rest_codec.encode_infer_response(
        _response(
            OutputTensor("y", "FP32", (4,), y, binary=True),
            OutputTensor("j", "INT32", (1,), np.array([9], dtype=np.int32)),
            OutputTensor("s", "BYTES", (2,), s, binary=True),
        )
    )
    assert length is not None
    header = orjson.loads(body[:length])
    y_out, j_out, s_out = header["outputs"]
    assert "data" not in y_out
    assert y_out["parameters"] == {"binary_data_size": 16}
    assert j_out["data"] == [9]
    assert "parameters" not in j_out
    assert "data" not in s_out
    assert s_out["parameters"] == {"binary_data_size": 4 + 2 + 4}
    blob = body[length:]
    assert blob[:16] == y.tobytes()
    assert blob[16:] == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 0)


def test_encoded_binary_response_decodes_as_a_binary_request() -> None:
    y = np.array([[1, -2], [3, 4]], dtype=np.int16)
    body, length = rest_codec.encode_infer_response(
        _response(OutputTensor("y", "INT16", (2, 2), y, binary=True))
    )
    header = orjson.loads(body[:length])
    request_header = {"inputs": [{**header["outputs"][0]}]}
    request_body, request_length = _binary_body(request_header, body[length:])
    np.testing.assert_array_equal(_decode(request_body, request_length).inputs[0].data, y)
