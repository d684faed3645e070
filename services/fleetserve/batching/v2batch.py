"""Merging v2 inputs of several requests into one batch along the batch dimension, and
splitting the batch's outputs back, in number and order."""

from __future__ import annotations

import numpy as np

Tensors = dict[str, np.ndarray]


def merge(items: list[Tensors]) -> Tensors:
    """Concatenate each input over the items' first dimension (one item passes through)."""
    if len(items) == 1:
        return items[0]
    return {name: np.concatenate([item[name] for item in items], axis=0) for name in items[0]}


def split(outputs: Tensors, rows: list[int]) -> list[Tensors]:
    """Cut each output back into the items' rows (views, no copies)."""
    if len(rows) == 1:
        return [outputs]
    total = sum(rows)
    for name, array in outputs.items():
        if array.shape[:1] != (total,):
            raise RuntimeError(f"output '{name}' has {array.shape[:1]} rows for a batch of {total}")
    result: list[Tensors] = []
    start = 0
    for n in rows:
        result.append({name: array[start : start + n] for name, array in outputs.items()})
        start += n
    return result


def rows_of(inputs: Tensors) -> int:
    """The batch rows an item brings (its first dimension)."""
    first = next(iter(inputs.values()))
    return int(first.shape[0]) if first.ndim else 1


def batch_key(inputs: Tensors) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Items batch together only when every input agrees beyond the batch dimension.

    Keyed by name: requests may list their inputs in any order."""
    return tuple((name, inputs[name].shape[1:]) for name in sorted(inputs))
