"""fleetserve's protos are wire-compatible with Triton's: same field numbers and types.

tritonclient ships Triton's own generated messages; every field fleetserve declares must match
the field of the same name there, so either side decodes the other's bytes.
"""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, EnumDescriptor
from tritonclient.grpc import model_config_pb2 as triton_mc
from tritonclient.grpc import service_pb2 as triton_pb

from fleetserve.wire import inference_pb2, model_config_pb2


def _compare(ours: Descriptor, theirs: Descriptor, path: str, problems: list[str]) -> None:
    for field in ours.fields:
        other = theirs.fields_by_name.get(field.name)
        where = f"{path}.{field.name}"
        if other is None:
            problems.append(f"{where}: not in Triton's message")
            continue
        if field.number != other.number:
            problems.append(f"{where}: number {field.number} != Triton's {other.number}")
        if field.type != other.type:
            problems.append(f"{where}: type {field.type} != Triton's {other.type}")
        if field.is_repeated != other.is_repeated:
            problems.append(f"{where}: repeated differs")
        if field.message_type is not None and other.message_type is not None:
            _compare(field.message_type, other.message_type, where, problems)
        if field.enum_type is not None and other.enum_type is not None:
            _compare_enum(field.enum_type, other.enum_type, where, problems)


def _compare_enum(ours: EnumDescriptor, theirs: EnumDescriptor, path: str, problems: list[str]) -> None:
    for value in ours.values:
        other = theirs.values_by_name.get(value.name)
        if other is None or other.number != value.number:
            problems.append(f"{path}: enum value {value.name}={value.number} differs from Triton's")


def test_inference_messages_match_triton() -> None:
    problems: list[str] = []
    names = [n for n in inference_pb2.DESCRIPTOR.message_types_by_name]
    assert len(names) > 25
    for name in names:
        theirs = triton_pb.DESCRIPTOR.message_types_by_name.get(name)
        assert theirs is not None, f"{name} is not a Triton message"
        _compare(inference_pb2.DESCRIPTOR.message_types_by_name[name], theirs, name, problems)
    assert not problems, "\n".join(problems)


def test_model_config_matches_triton() -> None:
    problems: list[str] = []
    for name, ours in model_config_pb2.DESCRIPTOR.message_types_by_name.items():
        theirs = triton_mc.DESCRIPTOR.message_types_by_name.get(name)
        assert theirs is not None, f"{name} is not a Triton message"
        _compare(ours, theirs, name, problems)
    _compare_enum(model_config_pb2.DataType.DESCRIPTOR, triton_mc.DataType.DESCRIPTOR, "DataType", problems)
    assert not problems, "\n".join(problems)


def test_bytes_cross_decode() -> None:
    """A config encoded by fleetserve decodes in Triton's message with the same content."""
    ours = model_config_pb2.ModelConfig(name="m", platform="onnxruntime_onnx", max_batch_size=8)
    ours.input.add(name="x", data_type=model_config_pb2.TYPE_FP32, dims=[3, 224, 224])
    ours.dynamic_batching.max_queue_delay_microseconds = 100
    theirs = triton_mc.ModelConfig.FromString(ours.SerializeToString())
    assert theirs.name == "m" and theirs.max_batch_size == 8
    assert list(theirs.input[0].dims) == [3, 224, 224]
    assert theirs.input[0].data_type == triton_mc.TYPE_FP32
    assert theirs.dynamic_batching.max_queue_delay_microseconds == 100
