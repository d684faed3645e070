"""config.pbtxt: parsing with protobuf `text_format`, and completing it from the model file."""

from __future__ import annotations

import re
from pathlib import Path

from google.protobuf import text_format

from fleetserve.protocol import datatypes
from fleetserve.runtimes.base import TensorSpec
from fleetserve.wire import model_config_pb2 as mc

ONNX_PLATFORM = "onnxruntime_onnx"
TORCH_PLATFORM = "pytorch_libtorch"
REMOTE_PLATFORM = "remote"  # forwarded to another v2 server (runtimes/remote.py): no model file
_BACKEND_PLATFORM = {"onnxruntime": ONNX_PLATFORM, "pytorch": TORCH_PLATFORM, "remote": REMOTE_PLATFORM}
DEFAULT_FILENAMES = {ONNX_PLATFORM: "model.onnx", TORCH_PLATFORM: "model.pt"}


class ConfigError(Exception):
    """A model's configuration cannot be used; the message says why."""


def read_config(model_dir: Path) -> mc.ModelConfig | None:
    """Parse `<model>/config.pbtxt`, or None when there is none. Unknown Triton fields are skipped."""
    path = model_dir / "config.pbtxt"
    if not path.is_file():
        return None
    config = mc.ModelConfig()
    try:
        text_format.Parse(_list_colons(path.read_text()), config, allow_unknown_field=True)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config.pbtxt does not parse: {exc}") from None
    if config.name and config.name != model_dir.name:
        raise ConfigError(
            f"config.pbtxt names the model '{config.name}' but its folder is '{model_dir.name}'"
        )
    return config


# A string or a comment (kept as is), or a field name directly followed by a list.
_LIST_FIELD = re.compile(r"""("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|#[^\n]*)|([A-Za-z_]\w*)(\s*)\[""")


def _list_colons(text: str) -> str:
    """`name [ ... ]` as `name: [ ... ]`: the same in text format, but protobuf can skip an unknown
    field (Triton's `model_warmup [ ... ]`, `ensemble_scheduling { step [ ... ] }`) only with the colon."""
    return _LIST_FIELD.sub(lambda m: m.group(1) or f"{m.group(2)}:{m.group(3)}[", text)


def platform_of(config: mc.ModelConfig | None, version_dir: Path) -> str:
    """The platform a model version runs on: from the config, else from the file present."""
    if config is not None and config.platform:
        if config.platform not in (*DEFAULT_FILENAMES, REMOTE_PLATFORM):
            served = ", ".join((*DEFAULT_FILENAMES, REMOTE_PLATFORM))
            raise ConfigError(f"platform '{config.platform}' is not served (served: {served})")
        return config.platform
    if config is not None and config.backend:
        if config.backend not in _BACKEND_PLATFORM:
            raise ConfigError(
                f"backend '{config.backend}' is not served (served: {', '.join(_BACKEND_PLATFORM)})"
            )
        return _BACKEND_PLATFORM[config.backend]
    for platform, filename in DEFAULT_FILENAMES.items():
        if (version_dir / filename).is_file():
            return platform
    raise ConfigError(f"no model.onnx or model.pt in {version_dir.name}/ and no platform in config.pbtxt")


def model_file(config: mc.ModelConfig | None, platform: str, version_dir: Path) -> Path:
    """The model file of a version (config's default_model_filename, else the platform's default);
    a remote model has none: its version folder stands for it."""
    if platform == REMOTE_PLATFORM:
        return version_dir
    name = (config.default_model_filename if config is not None else "") or DEFAULT_FILENAMES[platform]
    path = version_dir / name
    if not path.is_file():
        raise ConfigError(f"version {version_dir.name} has no {name}")
    return path


def config_specs(config: mc.ModelConfig) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The inputs and outputs a config declares, as v2 specs with the batch dimension when batched."""
    batch = (-1,) if config.max_batch_size > 0 else ()

    def spec(t: mc.ModelInput | mc.ModelOutput) -> TensorSpec:
        dt = datatypes.BY_CONFIG_NAME.get(mc.DataType.Name(t.data_type))
        if dt is None:
            raise ConfigError(f"tensor '{t.name}' has no data_type")
        return TensorSpec(t.name, dt.name, batch + tuple(int(d) for d in t.dims))

    return [spec(i) for i in config.input], [spec(o) for o in config.output]


def complete_config(
    config: mc.ModelConfig | None,
    name: str,
    platform: str,
    model_inputs: list[TensorSpec],
    model_outputs: list[TensorSpec],
    default_max_batch_size: int,
) -> mc.ModelConfig:
    """The effective config: the file's, with what it leaves out derived from the model, as Triton
    does; declared tensors are checked against the model."""
    out = mc.ModelConfig()
    if config is not None:
        out.CopyFrom(config)
    out.name = name
    out.platform = platform
    if not out.backend:
        out.backend = next(b for b, p in _BACKEND_PLATFORM.items() if p == platform)
    # Inputs and outputs are derived apart, as Triton does: a config may name only its outputs
    # (to give one a label_filename) and still have its inputs filled in.
    derive_inputs = config is None or not config.input
    derive_outputs = config is None or not config.output
    if derive_inputs or derive_outputs:
        if not model_inputs or not model_outputs:
            raise ConfigError("the model declares no inputs / outputs and config.pbtxt names none")
        batched = all(s.shape and s.shape[0] == -1 for s in [*model_inputs, *model_outputs])
        if config is None:
            out.max_batch_size = default_max_batch_size if batched else 0
        skip = 1 if out.max_batch_size > 0 else 0
        for s in model_inputs if derive_inputs else []:
            out.input.add(name=s.name, data_type=_config_type(s), dims=list(s.shape[skip:]))
        for s in model_outputs if derive_outputs else []:
            out.output.add(name=s.name, data_type=_config_type(s), dims=list(s.shape[skip:]))
    _check_against_model(out, model_inputs, model_outputs)
    if config is None and out.max_batch_size > 0:
        out.dynamic_batching.SetInParent()  # Triton's onnxruntime auto-complete enables it too
    if not out.instance_group:
        out.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
    for group in out.instance_group:
        if group.count <= 0:
            group.count = 1
    if not out.HasField("version_policy"):
        out.version_policy.latest.num_versions = 1
    return out


def _config_type(spec: TensorSpec) -> int:
    dt = datatypes.from_name(spec.datatype)
    if dt is None:
        raise ConfigError(f"tensor '{spec.name}' has type {spec.datatype}, which v2 cannot carry")
    return int(mc.DataType.Value(dt.config_name))


def _check_against_model(
    config: mc.ModelConfig, model_inputs: list[TensorSpec], model_outputs: list[TensorSpec]
) -> None:
    """Names and types in the config must exist in the model (when the model declares them)."""
    if not model_inputs and not model_outputs:
        return  # TorchScript: the config is the only declaration
    declared_in, declared_out = config_specs(config)
    for kind, declared, actual in (
        ("input", declared_in, model_inputs),
        ("output", declared_out, model_outputs),
    ):
        by_name = {s.name: s for s in actual}
        for spec in declared:
            real = by_name.get(spec.name)
            if real is None:
                names = ", ".join(by_name) or "none"
                raise ConfigError(f"config.pbtxt declares {kind} '{spec.name}', the model has {names}")
            if real.datatype != spec.datatype:
                raise ConfigError(
                    f"config.pbtxt declares {kind} '{spec.name}' as {spec.datatype}, "
                    f"the model has {real.datatype}"
                )
            if len(real.shape) != len(spec.shape) or any(
                r != -1 and d != -1 and r != d for r, d in zip(real.shape, spec.shape, strict=True)
            ):
                raise ConfigError(
                    f"config.pbtxt gives {kind} '{spec.name}' the shape {list(spec.shape)} "
                    f"(batch dimension included), the model has {list(real.shape)}"
                )


def parameter(config: mc.ModelConfig, key: str, default: str = "") -> str:
    """A string parameter of the config's `parameters` map."""
    entry = config.parameters.get(key)
    return entry.string_value if entry is not None else default
