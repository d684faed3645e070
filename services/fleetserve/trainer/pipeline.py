"""The training job: data -> train -> evaluate -> export -> verify -> publish one version."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import onnx
import torch

import fleetserve
from fleetserve.trainer import data as digits_data
from fleetserve.trainer.export import INPUT_NAME, OPSET, OUTPUT_NAME, export_onnx, verify_onnx
from fleetserve.trainer.model import ProbabilitiesModel
from fleetserve.trainer.publish import publish_version
from fleetserve.trainer.train import DEFAULT_EPOCHS, train

DEFAULT_MODEL = "digits"
DEFAULT_REPOSITORY = Path("model_repository")
MODELS = (DEFAULT_MODEL,)
MODEL_FILE = "model.onnx"

_log = logging.getLogger(__name__)

# Triton's text format. image_scale 1/255 with image_invert turns a dark-ink-on-white 8-bit
# photo into the digits' 0..1 ink scale (1 = full ink).
DIGITS_CONFIG = """\
name: "digits"
platform: "onnxruntime_onnx"
max_batch_size: 64
input [ { name: "image" data_type: TYPE_FP32 dims: [ 1, 8, 8 ] } ]
output [ { name: "probabilities" data_type: TYPE_FP32 dims: [ 10 ] label_filename: "labels.txt" } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
dynamic_batching { }
parameters { key: "latency_slo_ms" value: { string_value: "10" } }
parameters { key: "image_size" value: { string_value: "8,8" } }
parameters { key: "image_channels" value: { string_value: "1" } }
parameters { key: "image_layout" value: { string_value: "NCHW" } }
parameters { key: "image_scale" value: { string_value: "0.0039215686" } }
parameters { key: "image_invert" value: { string_value: "true" } }
parameters { key: "image_resize" value: { string_value: "bilinear" } }
"""
DIGITS_LABELS = tuple(str(digit) for digit in range(digits_data.NUM_CLASSES))


def run(
    model: str = DEFAULT_MODEL,
    repository: Path = DEFAULT_REPOSITORY,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
) -> Path:
    """Train ``model`` and publish it as the next version in ``repository``.

    Loads the bundled digits data (no download), trains the CNN on the CPU for ``epochs``,
    measures validation and held-out test accuracy, exports ONNX (input ``image``
    [batch, 1, 8, 8], output ``probabilities`` [batch, 10]), checks onnxruntime against
    torch, and publishes ``model.onnx`` + ``metadata.json`` atomically. Returns the new
    version folder. Raises ValueError for a model name other than those in ``MODELS``.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; the trainer knows: {', '.join(MODELS)}")
    dataset = digits_data.load(seed=seed)
    result = train(dataset, epochs=epochs, seed=seed)
    _log.info(
        "trained %s: %d epochs in %.1f s, validation accuracy %.4f, test accuracy %.4f",
        model,
        epochs,
        result.train_seconds,
        result.validation_accuracy,
        result.test_accuracy,
    )
    exported = ProbabilitiesModel(result.model).eval()
    onnx_bytes = export_onnx(exported)
    max_abs_diff = verify_onnx(onnx_bytes, exported)
    document: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "framework": _framework_versions(),
        "seed": seed,
        "epochs": epochs,
        "dataset": {"name": dataset.name, "sha256": dataset.sha256, "splits": dataset.sizes()},
        "metrics": result.metrics(),
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, *digits_data.IMAGE_SHAPE]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, digits_data.NUM_CLASSES]}],
        "labels": list(DIGITS_LABELS),
        "onnx": {"file": MODEL_FILE, "opset": OPSET, "max_abs_diff_vs_torch": max_abs_diff},
        "training_seconds": round(result.train_seconds, 3),
    }
    version_dir = publish_version(
        repository,
        model,
        {MODEL_FILE: onnx_bytes},
        document,
        config_text=DIGITS_CONFIG,
        labels=DIGITS_LABELS,
    )
    _log.info("published %s", version_dir)
    return version_dir


def _framework_versions() -> dict[str, str]:
    versions = {"torch": torch.__version__, "onnx": onnx.__version__, "fleetserve": fleetserve.__version__}
    for package in ("onnxruntime", "scikit-learn", "numpy"):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions
