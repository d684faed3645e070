"""config.pbtxt: parsing Triton's text format, platforms, and completing a config from the model."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetserve.repository import config as cfg
from fleetserve.repository.config import ConfigError
from fleetserve.runtimes.base import TensorSpec
from fleetserve.wire import model_config_pb2 as mc

TRITON_CONFIG = """
# A config as Triton users write it, with fields fleetserve does not honour.
name: "m"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "x"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 4 ]
    reshape: { shape: [ 12 ] }
  }
]
output [ { name: "y", data_type: TYPE_FP32, dims: [ 10 ], label_filename: "labels.txt" } ]
instance_group [ { count: 2, kind: KIND_CPU } ]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 100
  priority_levels: 2
}
version_policy: { latest: { num_versions: 2 } }
parameters { key: "threads" value: { string_value: "4" } }
optimization {
  execution_accelerators {
    gpu_execution_accelerator : [ { name : "tensorrt" parameters { key: "precision_mode" value: "FP16" } } ]
  }
  cuda { graphs: true }
}
model_warmup [
  {
    name: "zeros"
    batch_size: 1
    inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 3, 4 ] zero_data: true } }
  }
]
response_cache { enable: true }
sequence_batching { max_sequence_idle_microseconds: 5000000 }
model_transaction_policy { decoupled: false }
"""


def _write(tmp_path: Path, text: str, name: str = "m") -> Path:
    model_dir = tmp_path / name
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(text)
    return model_dir


# --- read_config ---


def test_read_config_without_a_file_is_none(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    assert cfg.read_config(tmp_path / "m") is None


def test_read_config_parses_triton_text_format_and_skips_unknown_fields(tmp_path: Path) -> None:
    config = cfg.read_config(_write(tmp_path, TRITON_CONFIG))
    assert config is not None
    assert (config.name, config.platform, config.max_batch_size) == ("m", "onnxruntime_onnx", 8)
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("x", mc.TYPE_FP32, [3, 4])]
    assert list(config.input[0].reshape.shape) == [12]
    assert config.input[0].format == mc.ModelInput.FORMAT_NCHW
    assert [(o.name, list(o.dims), o.label_filename) for o in config.output] == [("y", [10], "labels.txt")]
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, mc.ModelInstanceGroup.KIND_CPU)]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert config.version_policy.latest.num_versions == 2
    assert cfg.parameter(config, "threads") == "4"


def test_read_config_keeps_list_brackets_inside_strings_and_comments(tmp_path: Path) -> None:
    text = 'name: "m" # not a list [\nparameters { key: "k [x" value: { string_value: "a [ b ] \\" c [" } }\n'
    config = cfg.read_config(_write(tmp_path, text))
    assert config is not None
    assert cfg.parameter(config, "k [x") == 'a [ b ] " c ['


def test_read_config_without_a_name_is_fine(tmp_path: Path) -> None:
    config = cfg.read_config(_write(tmp_path, "max_batch_size: 2"))
    assert config is not None
    assert config.name == ""
    assert config.max_batch_size == 2


def test_read_config_name_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="names the model 'other' but its folder is 'm'"):
        cfg.read_config(_write(tmp_path, 'name: "other"'))


@pytest.mark.parametrize(
    "text",
    [
        'name: "m"\nmax_batch_size: "eight"',
        'name: "m"\ninput [ { name: "x" data_type: TYPE_FP32 dims: [ 3 }',
        'name: "m"\ninput { data_type: TYPE_FLOAT99 }',
        "name m",
        'name: "m" }',
    ],
)
def test_read_config_syntax_errors(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"config.pbtxt does not parse"):
        cfg.read_config(_write(tmp_path, text))


def test_read_config_non_utf8(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.pbtxt").write_bytes(b'name: "\xff\xfe"')
    with pytest.raises(ConfigError, match="does not parse"):
        cfg.read_config(model_dir)


# --- platform_of / model_file ---


def test_platform_from_config(tmp_path: Path) -> None:
    assert cfg.platform_of(mc.ModelConfig(platform="pytorch_libtorch"), tmp_path) == cfg.TORCH_PLATFORM


@pytest.mark.parametrize(
    ("backend", "platform"), [("onnxruntime", cfg.ONNX_PLATFORM), ("pytorch", cfg.TORCH_PLATFORM)]
)
def test_platform_from_backend(tmp_path: Path, backend: str, platform: str) -> None:
    assert cfg.platform_of(mc.ModelConfig(backend=backend), tmp_path) == platform


@pytest.mark.parametrize(
    ("filename", "platform"), [("model.onnx", cfg.ONNX_PLATFORM), ("model.pt", cfg.TORCH_PLATFORM)]
)
def test_platform_from_the_file_present(tmp_path: Path, filename: str, platform: str) -> None:
    (tmp_path / filename).write_bytes(b"")
    assert cfg.platform_of(None, tmp_path) == platform
    assert cfg.platform_of(mc.ModelConfig(), tmp_path) == platform


def test_platform_of_an_empty_version(tmp_path: Path) -> None:
    version_dir = tmp_path / "3"
    version_dir.mkdir()
    with pytest.raises(ConfigError, match=r"no model.onnx or model.pt in 3/"):
        cfg.platform_of(None, version_dir)


def test_unserved_platform_and_backend(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="platform 'tensorrt_plan' is not served"):
        cfg.platform_of(mc.ModelConfig(platform="tensorrt_plan"), tmp_path)
    with pytest.raises(ConfigError, match="backend 'python' is not served"):
        cfg.platform_of(mc.ModelConfig(backend="python"), tmp_path)


def test_model_file(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"")
    (tmp_path / "custom.onnx").write_bytes(b"")
    assert cfg.model_file(None, cfg.ONNX_PLATFORM, tmp_path) == tmp_path / "model.onnx"
    custom = mc.ModelConfig(default_model_filename="custom.onnx")
    assert cfg.model_file(custom, cfg.ONNX_PLATFORM, tmp_path) == tmp_path / "custom.onnx"
    with pytest.raises(ConfigError, match=r"has no model\.pt"):
        cfg.model_file(None, cfg.TORCH_PLATFORM, tmp_path)


# --- complete_config ---

BATCHED_IN = [TensorSpec("x", "FP32", (-1, 4))]
BATCHED_OUT = [TensorSpec("y", "FP32", (-1, 4)), TensorSpec("n", "INT64", (-1,))]


def _complete(
    config: mc.ModelConfig | None, ins=BATCHED_IN, outs=BATCHED_OUT, default: int = 16
) -> mc.ModelConfig:
    return cfg.complete_config(config, "m", cfg.ONNX_PLATFORM, ins, outs, default)


def test_complete_config_derives_everything_without_a_config() -> None:
    out = _complete(None)
    assert (out.name, out.platform, out.backend) == ("m", cfg.ONNX_PLATFORM, "onnxruntime")
    assert out.max_batch_size == 16
    assert [(i.name, i.data_type, list(i.dims)) for i in out.input] == [("x", mc.TYPE_FP32, [4])]
    assert [(o.name, o.data_type, list(o.dims)) for o in out.output] == [
        ("y", mc.TYPE_FP32, [4]),
        ("n", mc.TYPE_INT64, []),
    ]
    assert [(g.count, g.kind) for g in out.instance_group] == [(1, mc.ModelInstanceGroup.KIND_CPU)]
    assert out.version_policy.latest.num_versions == 1


def test_complete_config_no_batching_when_a_first_dim_is_fixed() -> None:
    out = _complete(None, ins=[TensorSpec("x", "FP32", (1, 4))])
    assert out.max_batch_size == 0
    assert list(out.input[0].dims) == [1, 4]  # nothing skipped
    assert list(out.output[0].dims) == [-1, 4]


def test_complete_config_no_batching_for_a_scalar_tensor() -> None:
    out = _complete(None, outs=[TensorSpec("s", "FP32", ())])
    assert out.max_batch_size == 0


def test_complete_config_keeps_the_config_max_batch_size_when_it_names_no_tensors() -> None:
    out = _complete(mc.ModelConfig(max_batch_size=4))
    assert out.max_batch_size == 4
    assert [list(i.dims) for i in out.input] == [[4]]
    out = _complete(mc.ModelConfig())  # a config with max_batch_size 0 means no batching
    assert out.max_batch_size == 0
    assert [list(i.dims) for i in out.input] == [[-1, 4]]


def test_complete_config_keeps_declared_tensors_policy_and_groups() -> None:
    config = mc.ModelConfig(name="m", max_batch_size=8, backend="onnxruntime")
    config.input.add(name="x", data_type=mc.TYPE_FP32, dims=[4])
    config.output.add(name="y", data_type=mc.TYPE_FP32, dims=[-1])
    config.instance_group.add(count=0, kind=mc.ModelInstanceGroup.KIND_GPU)
    config.version_policy.all.SetInParent()
    out = _complete(config)
    assert [i.name for i in out.input] == ["x"]
    assert [o.name for o in out.output] == ["y"]  # declared outputs are a subset: kept as declared
    assert out.max_batch_size == 8
    assert [(g.count, g.kind) for g in out.instance_group] == [(1, mc.ModelInstanceGroup.KIND_GPU)]
    assert out.version_policy.WhichOneof("policy_choice") == "all"


def test_complete_config_fills_in_inputs_when_the_config_names_only_outputs() -> None:
    config = mc.ModelConfig(max_batch_size=4)
    config.output.add(name="y", data_type=mc.TYPE_FP32, dims=[4], label_filename="labels.txt")
    out = _complete(config)
    assert [(i.name, list(i.dims)) for i in out.input] == [("x", [4])]
    assert [(o.name, o.label_filename) for o in out.output] == [("y", "labels.txt")]


def test_complete_config_fills_in_outputs_when_the_config_names_only_inputs() -> None:
    config = mc.ModelConfig(max_batch_size=0)
    config.input.add(name="x", data_type=mc.TYPE_FP32, dims=[-1, 4])
    out = _complete(config)
    assert [(i.name, list(i.dims)) for i in out.input] == [("x", [-1, 4])]
    assert [(o.name, list(o.dims)) for o in out.output] == [("y", [-1, 4]), ("n", [-1])]


def test_complete_config_unknown_tensor() -> None:
    config = mc.ModelConfig(max_batch_size=8)
    config.input.add(name="image", data_type=mc.TYPE_FP32, dims=[4])
    with pytest.raises(ConfigError, match="declares input 'image', the model has x"):
        _complete(config)


def test_complete_config_unknown_output() -> None:
    config = mc.ModelConfig(max_batch_size=8)
    config.output.add(name="probs", data_type=mc.TYPE_FP32, dims=[4])
    with pytest.raises(ConfigError, match="declares output 'probs', the model has y, n"):
        _complete(config)


def test_complete_config_wrong_datatype() -> None:
    config = mc.ModelConfig(max_batch_size=8)
    config.input.add(name="x", data_type=mc.TYPE_FP16, dims=[4])
    with pytest.raises(ConfigError, match="declares input 'x' as FP16, the model has FP32"):
        _complete(config)


@pytest.mark.parametrize(("max_batch_size", "dims"), [(8, [5]), (8, [4, 1]), (0, [4]), (0, [-1, 3])])
def test_complete_config_wrong_shape(max_batch_size: int, dims: list[int]) -> None:
    config = mc.ModelConfig(max_batch_size=max_batch_size)
    config.input.add(name="x", data_type=mc.TYPE_FP32, dims=dims)
    with pytest.raises(ConfigError, match=r"gives input 'x' the shape .* the model has \[-1, 4\]"):
        _complete(config)


def test_complete_config_variable_dims_match_anything() -> None:
    config = mc.ModelConfig(max_batch_size=0)
    config.input.add(name="x", data_type=mc.TYPE_FP32, dims=[-1, -1])
    assert list(_complete(config).input[0].dims) == [-1, -1]


def test_complete_config_model_without_tensors() -> None:
    with pytest.raises(ConfigError, match="declares no inputs / outputs"):
        _complete(None, ins=[], outs=[])


def test_complete_config_unsupported_model_type() -> None:
    with pytest.raises(ConfigError, match="tensor 'c' has type tensor\\(complex64\\)"):
        _complete(None, ins=[TensorSpec("c", "tensor(complex64)", (-1,))])


def test_complete_config_torchscript_trusts_the_config() -> None:
    config = mc.ModelConfig(max_batch_size=4)
    config.input.add(name="anything", data_type=mc.TYPE_FP32, dims=[3])
    config.output.add(name="out", data_type=mc.TYPE_INT64, dims=[1])
    out = cfg.complete_config(config, "m", cfg.TORCH_PLATFORM, [], [], 16)
    assert out.backend == "pytorch"
    assert [i.name for i in out.input] == ["anything"]


def test_complete_config_does_not_change_its_argument() -> None:
    config = mc.ModelConfig(max_batch_size=4)
    _complete(config)
    assert len(config.input) == 0
    assert not config.name


# --- config_specs / parameter ---


def test_config_specs_adds_the_batch_dimension_only_when_batching() -> None:
    config = mc.ModelConfig(max_batch_size=4)
    config.input.add(name="x", data_type=mc.TYPE_UINT8, dims=[3, 2])
    config.output.add(name="s", data_type=mc.TYPE_STRING, dims=[1])
    ins, outs = cfg.config_specs(config)
    assert ins == [TensorSpec("x", "UINT8", (-1, 3, 2))]
    assert outs == [TensorSpec("s", "BYTES", (-1, 1))]
    config.max_batch_size = 0
    ins, outs = cfg.config_specs(config)
    assert ins == [TensorSpec("x", "UINT8", (3, 2))]
    assert outs == [TensorSpec("s", "BYTES", (1,))]


def test_config_specs_needs_a_data_type() -> None:
    config = mc.ModelConfig()
    config.input.add(name="x", dims=[1])
    with pytest.raises(ConfigError, match="tensor 'x' has no data_type"):
        cfg.config_specs(config)


def test_parameter() -> None:
    config = mc.ModelConfig()
    config.parameters["a"].string_value = "1"
    assert cfg.parameter(config, "a") == "1"
    assert cfg.parameter(config, "missing") == ""
    assert cfg.parameter(config, "missing", "dflt") == "dflt"
    assert "missing" not in config.parameters  # looking up does not insert
