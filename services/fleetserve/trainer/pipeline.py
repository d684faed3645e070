"""The training job: data -> train -> evaluate against production -> gate -> publish -> register.

:func:`run` is what `fleetserve train` calls. The steps:

1. find the production version to compare against: the rollout controller's (``register``
   given) or the repository's latest;
2. load the bundled digits and, with ``production_data``, the labelled production samples
   (older part for training, most recent part for evaluation);
3. train with augmentation, the production part mixed in by ``production_weight``;
4. export ONNX and check it against torch;
5. evaluate the candidate and the production version with onnxruntime on the held-out split
   and the recent production data; the gate decides (:mod:`fleetserve.trainer.gate`);
6. publish the next version atomically with metadata.json (metrics, data hash, reference
   profile, ...), then hand it to the rollout controller (``rollout auto``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

import fleetserve
from fleetserve.trainer import data as digits_data
from fleetserve.trainer import evaluate
from fleetserve.trainer.augment import Augmentation
from fleetserve.trainer.export import INPUT_NAME, OPSET, OUTPUT_NAME, export_onnx, verify_onnx
from fleetserve.trainer.gate import DEFAULT_MARGIN, GateRefused, Reason, decide
from fleetserve.trainer.model import ProbabilitiesModel
from fleetserve.trainer.production import (
    DEFAULT_EVAL_FRACTION,
    ProductionData,
    load_production,
    wait_for_rows,
)
from fleetserve.trainer.publish import publish_version
from fleetserve.trainer.register import (
    controller_production_version,
    hand_over,
    latest_version,
    pin_production,
)
from fleetserve.trainer.train import (
    DEFAULT_AUGMENTATION,
    DEFAULT_EPOCHS,
    DEFAULT_EXTRA_WEIGHT,
    DEFAULT_THREADS,
    Extra,
    train,
)

DEFAULT_MODEL = "digits"
DEFAULT_REPOSITORY = Path("model_repository")
MODELS = (DEFAULT_MODEL,)
MODEL_FILE = evaluate.MODEL_FILE

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
    *,
    production_data: Path | None = None,
    production_weight: float = DEFAULT_EXTRA_WEIGHT,
    production_eval_fraction: float = DEFAULT_EVAL_FRACTION,
    register: str | None = None,
    token: str | None = None,
    reason: Reason = "manual",
    min_production_rows: int = 0,
    wait_for_rows_s: float = 0.0,
    gate_margin: float = DEFAULT_MARGIN,
    augmentation: Augmentation = DEFAULT_AUGMENTATION,
    threads: int = DEFAULT_THREADS,
    progress: bool = False,
) -> Path:
    """Train ``model``, gate it against the production version and publish it as the next version.

    Returns the new version folder. Raises ValueError for a model name other than those in
    ``MODELS`` (or bad options), FileNotFoundError for a missing ``production_data`` folder,
    :class:`~fleetserve.trainer.gate.GateRefused` when the gate refuses (nothing is published),
    :class:`~fleetserve.trainer.evaluate.ParentModelError` when the production version cannot
    be run, and :class:`~fleetserve.trainer.register.RegistrationError` when the controller
    cannot be asked or refuses the published version.
    """
    started = time.perf_counter()
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; the trainer knows: {', '.join(MODELS)}")
    model_dir = Path(repository) / model
    parent, parent_source = _production_version(model_dir, model, register, token)
    dataset = digits_data.load(seed=seed)
    production = _production(
        production_data, model, production_eval_fraction, min_production_rows, wait_for_rows_s
    )
    extra = Extra(production.train.images, production.train.labels) if production else None
    result = train(
        dataset,
        epochs=epochs,
        seed=seed,
        threads=threads,
        augmentation=augmentation,
        extra=extra,
        extra_weight=production_weight,
        progress=progress,
    )
    exported = ProbabilitiesModel(result.model).eval()
    onnx_bytes = export_onnx(exported)
    max_abs_diff = verify_onnx(onnx_bytes, exported)

    sets = {"test": evaluate.EvalSet("test", dataset.test.images, dataset.test.labels)}
    if production is not None:
        recent = production.evaluation
        sets["production"] = evaluate.EvalSet("production", recent.images, recent.labels)
    candidate_session = evaluate.session(onnx_bytes)
    candidate = evaluate.accuracies(candidate_session, sets)
    parent_metrics = evaluate.accuracies(evaluate.parent_session(model_dir, parent), sets) if parent else None
    decision = decide(candidate, parent_metrics, reason=reason, margin=gate_margin, parent_version=parent)
    _log.info("%s", decision.message())
    if not decision.passed:
        raise GateRefused(decision)

    reference_inputs, reference_source = _reference_inputs(dataset, production, reason)
    reference_probabilities = evaluate.probabilities(candidate_session, reference_inputs)
    profile = _reference_profile(reference_inputs, reference_probabilities)
    profile["source"] = reference_source
    metrics: dict[str, float] = {"validation_accuracy": result.validation_accuracy, **candidate}
    for key, value in (parent_metrics or {}).items():
        metrics[f"parent_{key}"] = value
    document: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "framework": _framework_versions(),
        "seed": seed,
        "epochs": epochs,
        "reason": reason,
        "production_version": parent,
        "production_version_source": parent_source,
        "data_sha256": _data_hash(dataset, production),
        "dataset": {"name": dataset.name, "sha256": dataset.sha256, "splits": dataset.sizes()},
        "production_data": production.summary() if production else None,
        "training": {
            "augmentation": _augmentation_summary(augmentation),
            "production_weight": production_weight if production else None,
            "examples_per_epoch": result.examples_per_epoch,
            "final_loss": result.epoch_losses[-1],
        },
        "metrics": metrics,
        "gate": decision.summary(),
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, *digits_data.IMAGE_SHAPE]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, digits_data.NUM_CLASSES]}],
        "labels": list(DIGITS_LABELS),
        "onnx": {"file": MODEL_FILE, "opset": OPSET, "max_abs_diff_vs_torch": max_abs_diff},
        "training_seconds": round(result.train_seconds, 3),
        "reference_profile": profile,
    }
    document["duration_seconds"] = round(time.perf_counter() - started, 3)
    if register and parent is not None and pin_production(register, model, parent, token):
        _log.info("pinned %s v%d as production in the controller before publishing", model, parent)
    version_dir = publish_version(
        repository,
        model,
        {MODEL_FILE: onnx_bytes},
        document,
        config_text=DIGITS_CONFIG,
        labels=DIGITS_LABELS,
    )
    _log.info("published %s (%s)", version_dir, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    if register:
        hand_over(register, model, int(version_dir.name), token, reason)
    return version_dir


def _production_version(
    model_dir: Path, model: str, register: str | None, token: str | None
) -> tuple[int | None, str]:
    """The version to compare against and where it was read."""
    if register:
        version = controller_production_version(register, model, token)
        if version is not None:
            return version, "rollout controller"
    return latest_version(model_dir), "repository"


def _production(
    folder: Path | None, model: str, eval_fraction: float, min_rows: int = 0, wait_s: float = 0.0
) -> ProductionData | None:
    if folder is None:
        if min_rows:
            raise ValueError(f"{min_rows} production rows are required but no --production-data is given")
        return None

    def load() -> ProductionData:
        return load_production(
            folder,
            model,
            input_name=INPUT_NAME,
            item_shape=digits_data.IMAGE_SHAPE,
            num_classes=digits_data.NUM_CLASSES,
            eval_fraction=eval_fraction,
        )

    production = wait_for_rows(load, min_rows, wait_s) if min_rows else load()
    _log.info(
        "production data %s: %d labelled rows read, %d for training, %d recent for evaluation, skipped %s",
        folder,
        production.rows_read,
        len(production.train),
        len(production.evaluation),
        production.skipped or "none",
    )
    return production


def _reference_inputs(
    dataset: digits_data.DigitsData, production: ProductionData | None, reason: str
) -> tuple[np.ndarray, str]:
    """The inputs the new version's drift reference describes: the traffic it is expected to see.

    Retrained because of drift (with production rows): the recent production inputs, which are
    the new normal; a reference of the old data would raise the drift alert for the new version
    on the very traffic it was trained for. Otherwise the held-out split (validation + test),
    with any production rows: the training split itself is what the model fits best, so its
    confidences are higher than on unseen data, and a reference built on it would show a
    standing confidence drift on clean traffic.
    """
    splits = () if production is None else (production.train, production.evaluation)
    rows = [split.images for split in splits if len(split)]
    if reason == "drift" and rows:
        return np.concatenate(rows).astype(np.float32, copy=False), "production"
    parts = [dataset.validation.images, dataset.test.images, *rows]
    return np.concatenate(parts).astype(np.float32, copy=False), "held-out" + ("+production" if rows else "")


def _reference_profile(images: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    # drift owns the profile's format; imported here so the rest of the trainer does not need it.
    from fleetserve.drift.profile import reference_profile

    return reference_profile({INPUT_NAME: images}, probabilities)


def _data_hash(dataset: digits_data.DigitsData, production: ProductionData | None) -> str:
    """sha256 naming everything trained on: the bundled data and the production rows."""
    digest = hashlib.sha256(dataset.sha256.encode())
    if production is not None:
        digest.update(b"+production:")
        digest.update(production.sha256.encode())
    return digest.hexdigest()


def _augmentation_summary(augmentation: Augmentation) -> dict[str, float]:
    return {
        "max_shift": augmentation.max_shift,
        "max_rotation_degrees": augmentation.max_rotation_degrees,
        "max_noise_std": augmentation.max_noise_std,
        "invert_probability": augmentation.invert_probability,
    }


def with_inversion(augmentation: Augmentation, probability: float) -> Augmentation:
    """``augmentation`` with its intensity-inversion share set to ``probability``."""
    return replace(augmentation, invert_probability=probability)


def _framework_versions() -> dict[str, str]:
    versions = {"torch": torch.__version__, "onnx": onnx.__version__, "fleetserve": fleetserve.__version__}
    for package in ("onnxruntime", "scikit-learn", "numpy"):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions
