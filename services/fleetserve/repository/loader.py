"""Loading one version of a model from its folder: config, runtime, effective config, warm-up."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from fleetserve.batching.batcher import BatchReport
from fleetserve.runtimes import remote
from fleetserve.runtimes.base import RuntimeOptions
from fleetserve.runtimes.factory import REMOTE, TORCHSCRIPT, create_runtime
from fleetserve.wire import model_config_pb2 as mc

from .config import ConfigError, complete_config, config_specs, model_file, platform_of
from .version import ServedVersion

log = logging.getLogger(__name__)


def read_labels(model_dir: Path, config: mc.ModelConfig | None) -> list[str] | None:
    """The labels of the first output that names a label file (Triton's `label_filename`)."""
    if config is None:
        return None
    for out in config.output:
        if out.label_filename:
            path = (model_dir / out.label_filename).resolve()
            if model_dir.resolve() not in path.parents or not path.is_file():
                raise ConfigError(f"label_filename '{out.label_filename}' is not a file in the model folder")
            return [line.strip() for line in path.read_text().splitlines()]
    return None


def _placed(options: RuntimeOptions, config: mc.ModelConfig | None) -> RuntimeOptions:
    """instance_group kind KIND_CPU keeps a model on the CPU; GPU / AUTO take a GPU when present."""
    groups = list(config.instance_group) if config is not None else []
    if groups and all(g.kind == mc.ModelInstanceGroup.KIND_CPU for g in groups):
        return dataclasses.replace(options, device="cpu")
    return options


def load_version(
    model_dir: Path,
    version: int,
    config: mc.ModelConfig | None,
    options: RuntimeOptions,
    default_max_batch_size: int,
    on_batch: Callable[[ServedVersion, BatchReport], None] | None = None,
    inline_below_s: float = 0.0,
) -> ServedVersion:
    """Load and warm up a version; raises with a readable reason when it cannot serve."""
    name = model_dir.name
    version_dir = model_dir / str(version)
    options = _placed(options, config)
    platform = platform_of(config, version_dir)
    path = model_file(config, platform, version_dir)
    if platform == TORCHSCRIPT:
        if config is None or not config.input or not config.output:
            raise ConfigError("a TorchScript model needs config.pbtxt with its inputs and outputs")
        ins, outs = config_specs(config)
        runtime = create_runtime(platform, path, options, ins, outs, config)
        model_in, model_out = [], []
    else:
        runtime = create_runtime(platform, path, options, config=config)
        model_in, model_out = runtime.inputs(), runtime.outputs()
    try:
        if platform == REMOTE:
            config = remote.with_upstream_batching(config, runtime)
        effective = complete_config(config, name, platform, model_in, model_out, default_max_batch_size)
        labels = read_labels(model_dir, config)
        served = ServedVersion(name, version, effective, runtime, labels, on_batch, inline_below_s)
        served.warm_up()
    except Exception:
        runtime.unload()
        raise
    return served
