"""The remote runtime's configuration: parameters, errors, and what the upstream fills in."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import text_format

from fleetserve.repository.config import ConfigError, model_file, platform_of
from fleetserve.runtimes.remote import (
    DEFAULT_IN_FLIGHT,
    DEFAULT_TIMEOUT_S,
    RemoteRuntime,
    with_upstream_batching,
)
from fleetserve.wire import model_config_pb2 as mc


def _config(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def _params(**values: str) -> str:
    return "".join(
        f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}\n' for k, v in values.items()
    )


def test_parameters_and_defaults() -> None:
    rt = RemoteRuntime.from_config(_config(_params(remote_url="triton:8001")), default_model="resnet")
    assert (rt.url, rt.model, rt.version, rt.timeout_s) == ("triton:8001", "resnet", "", DEFAULT_TIMEOUT_S)
    rt = RemoteRuntime.from_config(
        _config(_params(remote_url="h:1", remote_model="m", remote_version="3", remote_timeout_s="2.5")), "x"
    )
    assert (rt.model, rt.version, rt.timeout_s) == ("m", "3", 2.5)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "remote_url"),
        ({"remote_url": "h:1", "remote_timeout_s": "soon"}, "remote_timeout_s must be a number"),
        ({"remote_url": "h:1", "remote_timeout_s": "0"}, "remote_timeout_s must be positive"),
        ({"remote_url": "h:1", "remote_version": "latest"}, "remote_version must be a version number"),
    ],
)
def test_bad_parameters_are_named(params: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RemoteRuntime.from_config(_config(_params(**params)), "m")


def test_unreachable_upstream_fails_load_with_a_reason() -> None:
    rt = RemoteRuntime("127.0.0.1:1", "m", timeout_s=0.5)
    with pytest.raises(ValueError, match=r"upstream 127.0.0.1:1 model 'm': (UNAVAILABLE|DEADLINE_EXCEEDED)"):
        rt.load()


def test_infer_before_load_is_unavailable() -> None:
    from fleetserve.protocol.errors import ErrorCode, FleetError

    with pytest.raises(FleetError) as info:
        RemoteRuntime("h:1", "m").infer({})
    assert info.value.code is ErrorCode.UNAVAILABLE


def _loaded(max_batch_size: int) -> RemoteRuntime:
    rt = RemoteRuntime("h:1", "m")
    rt.upstream_max_batch_size = max_batch_size
    return rt


def test_upstream_batch_size_fills_a_silent_config() -> None:
    out = with_upstream_batching(_config('platform: "remote"\n' + _params(remote_url="h:1")), _loaded(64))
    assert out is not None and out.max_batch_size == 64
    assert [(g.count, g.kind) for g in out.instance_group] == [
        (DEFAULT_IN_FLIGHT, mc.ModelInstanceGroup.KIND_CPU)
    ]
    assert not out.HasField("dynamic_batching")  # local batching stays opt-in


def test_a_config_that_speaks_for_itself_is_kept() -> None:
    local = _config(
        'platform: "remote" max_batch_size: 8 instance_group { count: 2 }\n' + _params(remote_url="h:1")
    )
    out = with_upstream_batching(local, _loaded(64))
    assert out is not None and out.max_batch_size == 8 and [g.count for g in out.instance_group] == [2]
    declared = _config('platform: "remote" input { name: "x" data_type: TYPE_FP32 dims: [-1, 4] }')
    out = with_upstream_batching(declared, _loaded(64))
    assert out is not None and out.max_batch_size == 0  # full shapes declared: no batch dimension added


def test_platform_and_backend_remote_need_no_model_file(tmp_path: Path) -> None:
    version_dir = tmp_path / "1"
    version_dir.mkdir()
    for text in ('platform: "remote"', 'backend: "remote"'):
        platform = platform_of(_config(text), version_dir)
        assert platform == "remote"
        assert model_file(_config(text), platform, version_dir) == version_dir
    with pytest.raises(ConfigError, match="remote"):
        platform_of(_config('platform: "tensorflow_savedmodel"'), version_dir)


def test_upstream_codes_map_to_fleetserve_codes() -> None:
    from fleetserve.protocol.errors import ErrorCode
    from fleetserve.runtimes.remote import _CODES

    assert _CODES[grpc.StatusCode.INVALID_ARGUMENT] is ErrorCode.INVALID_ARGUMENT
    assert _CODES[grpc.StatusCode.UNAVAILABLE] is ErrorCode.UNAVAILABLE
    assert grpc.StatusCode.INTERNAL not in _CODES  # the upstream's own failure stays INTERNAL
