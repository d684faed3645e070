"""Export to ONNX (dynamic batch dimension) and a check that onnxruntime agrees with torch."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from fleetserve.trainer.data import IMAGE_SHAPE

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
# The dynamo exporter's own opset; asking for a lower one adds a lossy version conversion.
OPSET = 18
VERIFY_BATCH_SIZES = (1, 7)
VERIFY_ATOL = 1e-4
# The exporter logs a warning for each torchvision op it cannot register (the model uses
# none), and onnxscript / onnx_ir log every optimisation pass at INFO.
_NOISY_LOGGERS = ("torch.onnx._internal.exporter._registration", "onnxscript", "onnx_ir")


class ExportMismatchError(RuntimeError):
    """The exported ONNX model's outputs differ from torch's beyond the tolerance."""


def export_onnx(model: nn.Module, *, opset: int = OPSET) -> bytes:
    """Serialise ``model`` (N x 1 x 8 x 8 in, N x classes out) to ONNX bytes.

    The input is named ``image`` and the output ``probabilities``; dimension 0 of both is the
    symbolic ``batch``. Weights are embedded, never written as external data.
    """
    model.eval()
    example = torch.zeros(2, *IMAGE_SHAPE, dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1)
    with _quiet_exporter():
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=({0: batch},),
            external_data=False,
            verbose=False,
        )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no ONNX program")
    proto = program.model_proto
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def verify_onnx(
    onnx_bytes: bytes,
    model: nn.Module,
    *,
    batch_sizes: Sequence[int] = VERIFY_BATCH_SIZES,
    atol: float = VERIFY_ATOL,
    seed: int = 0,
) -> float:
    """Run the ONNX model in onnxruntime and torch on the same random batches.

    Returns the largest absolute difference seen; raises :class:`ExportMismatchError` when it
    exceeds ``atol`` or an output's shape differs.
    """
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    model.eval()
    worst = 0.0
    for size in batch_sizes:
        images = rng.random((size, *IMAGE_SHAPE), dtype=np.float32)
        (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: images})
        with torch.inference_mode():
            expected = model(torch.from_numpy(images)).numpy()
        if got.shape != expected.shape:
            raise ExportMismatchError(f"batch {size}: onnx shape {got.shape}, torch shape {expected.shape}")
        difference = float(np.max(np.abs(got - expected)))
        if difference > atol:
            raise ExportMismatchError(f"batch {size}: max |onnx - torch| = {difference:.3g} > {atol:.3g}")
        worst = max(worst, difference)
    return worst


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    # torch's own FutureWarnings (pytree internals) are not ours to act on.
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"(torch|copyreg)(\.|$)")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
