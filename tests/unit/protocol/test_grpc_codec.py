"""gRPC v2 messages: raw_input_contents, typed contents, parameters, and responses."""

from __future__ import annotations

import numpy as np
import pytest

from fleetserve.protocol import grpc_codec
from fleetserve.protocol.errors import ErrorCode, FleetError
from fleetserve.protocol.types import InferResponse, OutputTensor
from fleetserve.wire import inference_pb2 as pb


def _request(**kw) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(model_name="m", model_version="1", id="abc", **kw)


def _invalid(msg: pb.ModelInferRequest) -> str:
    with pytest.raises(FleetError) as info:
        grpc_codec.decode_infer_request(msg, "rid")
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    return info.value.message


def test_raw_input_contents() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1, 2], dtype=np.int64)
    msg = _request()
    msg.inputs.add(name="a", datatype="FP32", shape=[2, 3])
    msg.inputs.add(name="b", datatype="INT64", shape=[2])
    msg.raw_input_contents.extend([a.tobytes(), b.tobytes()])
    req = grpc_codec.decode_infer_request(msg, "rid")
    assert (req.model_name, req.model_version, req.id, req.request_id) == ("m", "1", "abc", "rid")
    assert [i.name for i in req.inputs] == ["a", "b"]
    assert req.inputs[0].shape == (2, 3)
    np.testing.assert_array_equal(req.inputs[0].data, a)
    np.testing.assert_array_equal(req.inputs[1].data, b)


def test_raw_fp16_and_bytes() -> None:
    h = np.array([0.5, 1.5], dtype=np.float16)
    msg = _request()
    msg.inputs.add(name="h", datatype="FP16", shape=[2])
    msg.inputs.add(name="s", datatype="BYTES", shape=[1])
    msg.raw_input_contents.extend([h.tobytes(), b"\x03\x00\x00\x00abc"])
    req = grpc_codec.decode_infer_request(msg, "rid")
    assert req.inputs[0].data.dtype == np.float16
    assert req.inputs[0].data.tolist() == [0.5, 1.5]
    assert req.inputs[1].data.tolist() == [b"abc"]


def test_raw_wrong_byte_count_names_the_input() -> None:
    msg = _request()
    msg.inputs.add(name="img", datatype="FP32", shape=[4])
    msg.raw_input_contents.append(b"\x00" * 12)
    m = _invalid(msg)
    assert "'img'" in m
    assert "expected 16" in m


@pytest.mark.parametrize("raw_count", [1, 3])
def test_raw_contents_count_must_match_inputs(raw_count: int) -> None:
    msg = _request()
    msg.inputs.add(name="a", datatype="INT8", shape=[1])
    msg.inputs.add(name="b", datatype="INT8", shape=[1])
    msg.raw_input_contents.extend([b"\x00"] * raw_count)
    m = _invalid(msg)
    assert "2 inputs" in m
    assert f"{raw_count} raw_input_contents" in m


CONTENTS = [
    ("BOOL", "bool_contents", [True, False], np.bool_),
    ("INT8", "int_contents", [-128, 127], np.int8),
    ("INT16", "int_contents", [-(2**15), 2**15 - 1], np.int16),
    ("INT32", "int_contents", [-(2**31), 2**31 - 1], np.int32),
    ("INT64", "int64_contents", [-(2**63), 2**63 - 1], np.int64),
    ("UINT8", "uint_contents", [0, 255], np.uint8),
    ("UINT16", "uint_contents", [0, 65535], np.uint16),
    ("UINT32", "uint_contents", [0, 2**32 - 1], np.uint32),
    ("UINT64", "uint64_contents", [0, 2**64 - 1], np.uint64),
    ("FP32", "fp32_contents", [0.5, -2.25], np.float32),
    ("FP64", "fp64_contents", [0.1, -1e300], np.float64),
]


@pytest.mark.parametrize(("datatype", "field", "values", "dtype"), CONTENTS)
def test_typed_contents(datatype: str, field: str, values: list, dtype: type) -> None:
    msg = _request()
    tensor = msg.inputs.add(name="x", datatype=datatype, shape=[1, 2])
    getattr(tensor.contents, field).extend(values)
    data = grpc_codec.decode_infer_request(msg, "rid").inputs[0].data
    assert data.dtype == np.dtype(dtype)
    assert data.shape == (1, 2)
    assert data.reshape(-1).tolist() == values


def test_typed_bytes_contents() -> None:
    msg = _request()
    tensor = msg.inputs.add(name="s", datatype="BYTES", shape=[2])
    tensor.contents.bytes_contents.extend([b"", "ü".encode()])
    data = grpc_codec.decode_infer_request(msg, "rid").inputs[0].data
    assert data.dtype == object
    assert data.tolist() == [b"", "ü".encode()]


@pytest.mark.parametrize(
    ("datatype", "field", "value"),
    [
        ("INT8", "int_contents", 300),
        ("INT16", "int_contents", -40000),
        ("UINT8", "uint_contents", 256),
        ("UINT16", "uint_contents", 70000),
    ],
)
def test_typed_contents_out_of_range_are_rejected_not_wrapped(datatype: str, field: str, value: int) -> None:
    msg = _request()
    tensor = msg.inputs.add(name="x", datatype=datatype, shape=[2])
    getattr(tensor.contents, field).extend([1, value])
    m = _invalid(msg)
    assert "'x'" in m
    assert datatype in m
    assert "range" in m


def test_typed_contents_wrong_count() -> None:
    msg = _request()
    tensor = msg.inputs.add(name="x", datatype="FP32", shape=[2, 2])
    tensor.contents.fp32_contents.extend([1.0, 2.0, 3.0])
    m = _invalid(msg)
    assert "'x'" in m
    assert "got 3 elements in contents.fp32_contents" in m
    assert "expected 4" in m


def test_typed_contents_in_the_wrong_field_count_as_missing() -> None:
    msg = _request()
    tensor = msg.inputs.add(name="x", datatype="INT64", shape=[2])
    tensor.contents.int_contents.extend([1, 2])  # INT64 travels in int64_contents
    assert "contents.int64_contents" in _invalid(msg)


@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_half_floats_via_typed_contents_are_rejected(datatype: str) -> None:
    msg = _request()
    tensor = msg.inputs.add(name="h", datatype=datatype, shape=[1])
    tensor.contents.fp32_contents.append(1.0)
    m = _invalid(msg)
    assert "'h'" in m
    assert datatype in m
    assert "raw_input_contents" in m


def test_unknown_datatype() -> None:
    msg = _request()
    msg.inputs.add(name="x", datatype="FLOAT", shape=[1])
    assert "unknown datatype 'FLOAT'" in _invalid(msg)


def test_input_needs_a_name() -> None:
    msg = _request()
    msg.inputs.add(datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)
    assert "inputs[0] needs a name" in _invalid(msg)


def test_request_needs_an_input() -> None:
    assert "at least one input" in _invalid(_request())


def test_negative_shape() -> None:
    msg = _request()
    msg.inputs.add(name="x", datatype="FP32", shape=[-1])
    m = _invalid(msg)
    assert "'x'" in m
    assert "non-negative" in m


def test_parameters_and_requested_outputs() -> None:
    msg = _request()
    tensor = msg.inputs.add(name="x", datatype="INT32", shape=[1])
    tensor.contents.int_contents.append(4)
    tensor.parameters["flag"].bool_param = True
    msg.parameters["priority"].int64_param = 3
    msg.parameters["tag"].string_param = "t"
    msg.parameters["w"].double_param = 0.5
    msg.parameters["big"].uint64_param = 2**63
    out = msg.outputs.add(name="probs")
    out.parameters["classification"].int64_param = 2
    msg.outputs.add(name="y")
    req = grpc_codec.decode_infer_request(msg, "rid")
    assert req.parameters == {"priority": 3, "tag": "t", "w": 0.5, "big": 2**63}
    assert req.inputs[0].parameters == {"flag": True}
    probs, y = req.outputs
    assert (probs.name, probs.classification) == ("probs", 2)
    assert (y.name, y.classification, y.parameters) == ("y", 0, {})


def test_parameters_round_trip() -> None:
    params = {"b": True, "f": False, "i": -7, "d": 2.5, "s": "text"}
    target = pb.ModelInferResponse()
    grpc_codec.parameters_to_pb(target.parameters, params)
    assert target.parameters["b"].WhichOneof("parameter_choice") == "bool_param"
    assert target.parameters["f"].WhichOneof("parameter_choice") == "bool_param"
    assert target.parameters["i"].WhichOneof("parameter_choice") == "int64_param"
    assert target.parameters["d"].WhichOneof("parameter_choice") == "double_param"
    assert target.parameters["s"].WhichOneof("parameter_choice") == "string_param"
    assert grpc_codec.parameters_from_pb(target.parameters) == params


def test_encode_infer_response() -> None:
    y = np.arange(4, dtype=np.float32).reshape(2, 2)
    s = np.array([b"a", b"bc"], dtype=object)
    response = InferResponse(
        model_name="m",
        model_version="3",
        id="abc",
        outputs=[
            OutputTensor("y", "FP32", (2, 2), y, parameters={"ok": True, "n": 2, "x": 0.5, "label": "l"}),
            OutputTensor("s", "BYTES", (2,), s),
        ],
        parameters={"sequence_end": False},
    )
    msg = grpc_codec.encode_infer_response(response)
    assert (msg.model_name, msg.model_version, msg.id) == ("m", "3", "abc")
    assert [(o.name, o.datatype, list(o.shape)) for o in msg.outputs] == [
        ("y", "FP32", [2, 2]),
        ("s", "BYTES", [2]),
    ]
    assert list(msg.raw_output_contents) == [y.tobytes(), b"\x01\x00\x00\x00a\x02\x00\x00\x00bc"]
    params = msg.outputs[0].parameters
    assert params["ok"].bool_param is True
    assert params["n"].int64_param == 2
    assert params["x"].double_param == 0.5
    assert params["label"].string_param == "l"
    assert len(msg.outputs[1].parameters) == 0
    assert msg.parameters["sequence_end"].WhichOneof("parameter_choice") == "bool_param"
    # every output travels raw, none in typed contents
    assert not msg.outputs[0].HasField("contents")


def test_encoded_response_survives_the_wire() -> None:
    y = np.array([1, 2, 3], dtype=np.uint16)
    msg = grpc_codec.encode_infer_response(
        InferResponse("m", "1", "", [OutputTensor("y", "UINT16", (3,), y)])
    )
    again = pb.ModelInferResponse.FromString(msg.SerializeToString())
    assert np.frombuffer(again.raw_output_contents[0], dtype="<u2").tolist() == [1, 2, 3]
