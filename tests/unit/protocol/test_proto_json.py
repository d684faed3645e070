"""Protobuf messages as Triton's REST JSON: proto field names, every field, 64-bit ints as numbers."""

from __future__ import annotations

import orjson

from fleetserve.protocol import proto_json
from fleetserve.wire import inference_pb2 as pb
from fleetserve.wire import model_config_pb2 as mc


def test_top_level_uint64_fields_are_numbers() -> None:
    doc = proto_json.to_dict(
        pb.ModelStatistics(
            name="m", version="1", last_inference=2**40, inference_count=2**63 + 1, execution_count=3
        )
    )
    assert doc["last_inference"] == 2**40
    assert doc["inference_count"] == 2**63 + 1
    assert doc["execution_count"] == 3
    assert all(type(doc[k]) is int for k in ("last_inference", "inference_count", "execution_count"))


def test_every_field_is_printed_with_its_default() -> None:
    doc = proto_json.to_dict(pb.ModelStatistics())
    assert doc == {
        "name": "",
        "version": "",
        "last_inference": 0,
        "inference_count": 0,
        "execution_count": 0,
        "batch_stats": [],
    }


def test_nested_and_repeated_messages() -> None:
    stats = pb.ModelStatistics(name="m")
    stats.inference_stats.success.count = 5
    stats.inference_stats.success.ns = 2**50
    stats.inference_stats.fail.CopyFrom(pb.StatisticDuration())  # set, though all zero
    stats.batch_stats.add(batch_size=4).compute_infer.ns = 12
    stats.batch_stats.add(batch_size=8)
    doc = proto_json.to_dict(stats)
    success = doc["inference_stats"]["success"]
    assert success == {"count": 5, "ns": 2**50}
    assert doc["inference_stats"]["fail"] == {"count": 0, "ns": 0}
    assert [b["batch_size"] for b in doc["batch_stats"]] == [4, 8]
    assert doc["batch_stats"][0]["compute_infer"] == {"count": 0, "ns": 12}
    assert type(doc["batch_stats"][1]["batch_size"]) is int
    # sub-messages that were never set have no presence and are left out, as in protobuf's JSON
    assert "queue" not in doc["inference_stats"]


def test_repeated_int64_fields_are_lists_of_numbers() -> None:
    meta = pb.ModelMetadataResponse(name="m")
    meta.inputs.add(name="x", datatype="FP32", shape=[-1, 3, 2**33])
    doc = proto_json.to_dict(meta)
    assert doc["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 2**33]}]
    assert doc["outputs"] == []
    assert doc["versions"] == []


def test_config_dims_and_policy_are_numbers() -> None:
    config = mc.ModelConfig(name="m", max_batch_size=8)
    config.input.add(name="x", data_type=mc.TYPE_FP32, dims=[3, 224, 224])
    config.version_policy.specific.versions.extend([1, 3])
    config.dynamic_batching.max_queue_delay_microseconds = 100
    doc = proto_json.to_dict(config)
    assert doc["input"][0]["dims"] == [3, 224, 224]
    assert doc["input"][0]["data_type"] == "TYPE_FP32"
    assert doc["version_policy"] == {"specific": {"versions": [1, 3]}}
    assert doc["dynamic_batching"]["max_queue_delay_microseconds"] == 100
    assert doc["dynamic_batching"]["preferred_batch_size"] == []
    assert doc["max_batch_size"] == 8
    assert doc["output"] == []


def test_maps_of_messages_with_int64_values() -> None:
    response = pb.ModelInferResponse(model_name="m")
    response.parameters["n"].int64_param = 2**40
    response.parameters["u"].uint64_param = 2**64 - 1
    response.parameters["s"].string_param = "x"
    out = response.outputs.add(name="y", datatype="INT8", shape=[2])
    out.parameters["binary_data_size"].int64_param = 2
    doc = proto_json.to_dict(response)
    assert doc["parameters"] == {
        "n": {"int64_param": 2**40},
        "u": {"uint64_param": 2**64 - 1},
        "s": {"string_param": "x"},
    }
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": {"int64_param": 2}}
    assert doc["outputs"][0]["shape"] == [2]


def test_map_keyed_by_uint64_with_message_values() -> None:
    config = mc.ModelConfig(name="m")
    config.dynamic_batching.priority_queue_policy[2].default_timeout_microseconds = 2**35
    config.parameters["k"].string_value = "v"
    doc = proto_json.to_dict(config)
    policy = doc["dynamic_batching"]["priority_queue_policy"]
    assert list(policy) == ["2"]  # JSON object keys are strings
    assert policy["2"]["default_timeout_microseconds"] == 2**35
    assert policy["2"]["max_queue_size"] == 0
    assert doc["parameters"] == {"k": {"string_value": "v"}}


def test_result_serialises_with_numbers_in_the_json_text() -> None:
    text = orjson.dumps(proto_json.to_dict(pb.ModelStatistics(inference_count=12))).decode()
    assert '"inference_count":12' in text
    assert '"12"' not in text
