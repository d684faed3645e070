"""Choosing the outputs a client asked for, and Triton's classification extension."""

from __future__ import annotations

import numpy as np

from fleetserve.protocol.errors import invalid
from fleetserve.protocol.types import InferRequest, OutputTensor
from fleetserve.repository.version import ServedVersion

from .validation import output_datatype


def select(
    served: ServedVersion, request: InferRequest, computed: dict[str, np.ndarray]
) -> list[OutputTensor]:
    """The requested outputs (all, when none is named), classification applied where asked."""
    if not request.outputs:
        return [_tensor(name, computed[name], request.binary_output) for name in served.output_names]
    result: list[OutputTensor] = []
    for wanted in request.outputs:
        array = computed.get(wanted.name)
        if array is None:
            names = ", ".join(served.output_names)
            raise invalid(f"model '{served.name}' has no output '{wanted.name}' (outputs: {names})")
        binary = bool(wanted.binary)
        if wanted.classification > 0:
            result.append(
                _tensor(
                    wanted.name,
                    classify(array, wanted.classification, served.labels, served.max_batch_size > 0),
                    binary,
                )
            )
        else:
            result.append(_tensor(wanted.name, array, binary))
    return result


def _tensor(name: str, array: np.ndarray, binary: bool) -> OutputTensor:
    return OutputTensor(name, output_datatype(array), tuple(array.shape), array, binary=binary)


def classify(array: np.ndarray, k: int, labels: list[str] | None, batched: bool) -> np.ndarray:
    """Top-k of each batch item as "score:index[:label]" strings (Triton's classification extension)."""
    rows = array.reshape(array.shape[0], -1) if batched else array.reshape(1, -1)
    k = min(k, rows.shape[1])
    order = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    out = np.empty((rows.shape[0], k), dtype=object)
    for r in range(rows.shape[0]):
        for j, idx in enumerate(order[r]):
            score = float(rows[r, idx])
            text = f"{score:f}:{int(idx)}"
            if labels is not None and idx < len(labels):
                text += f":{labels[idx]}"
            out[r, j] = text.encode()
    return out if batched else out.reshape(k)
