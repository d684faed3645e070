"""Evaluation of a candidate and the current production version with onnxruntime, on the same data.

Both models are run the same way (onnxruntime on the CPU, one thread), so their figures differ
only by the models. The evaluation sets are the held-out split of the bundled data
(``test``) and, when production data is given, its most recent share (``production``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

MODEL_FILE = "model.onnx"
BATCH = 256
_LOAD_ERRORS = (
    ort_errors.Fail,
    ort_errors.InvalidProtobuf,
    ort_errors.InvalidGraph,
    ort_errors.InvalidArgument,
    ort_errors.NoSuchFile,
    ort_errors.RuntimeException,
)


@dataclass(frozen=True)
class EvalSet:
    """Named evaluation data: images (N x 1 x 8 x 8 float32) and int64 labels."""

    name: str
    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class ParentModelError(RuntimeError):
    """The production version to compare against cannot be found or run."""


def session(model: bytes | Path) -> ort.InferenceSession:
    """A one-thread CPU onnxruntime session over ONNX bytes or a model.onnx file."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def probabilities(model: ort.InferenceSession, images: np.ndarray) -> np.ndarray:
    """The model's first output for ``images`` (fed to its first input), in batches of 256."""
    input_name = model.get_inputs()[0].name
    output_name = model.get_outputs()[0].name
    parts = [
        model.run([output_name], {input_name: np.ascontiguousarray(images[i : i + BATCH], np.float32)})[0]
        for i in range(0, len(images), BATCH)
    ]
    if not parts:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def accuracies(model: ort.InferenceSession, sets: Mapping[str, EvalSet]) -> dict[str, float]:
    """``<set name>_accuracy`` for each non-empty set: the share whose arg-max is the label."""
    out: dict[str, float] = {}
    for name, data in sets.items():
        if len(data) == 0:
            continue
        predicted = probabilities(model, data.images).argmax(axis=1)
        out[f"{name}_accuracy"] = float((predicted == data.labels).mean())
    return out


def parent_session(model_dir: Path, version: int) -> ort.InferenceSession:
    """A session over ``<model_dir>/<version>/model.onnx``; ParentModelError when absent or broken."""
    path = Path(model_dir) / str(version) / MODEL_FILE
    if not path.is_file():
        raise ParentModelError(f"production version {version} has no {MODEL_FILE} at {path}")
    try:
        return session(path)
    except _LOAD_ERRORS as exc:
        raise ParentModelError(f"production version {version} ({path}) does not load: {exc}") from None
