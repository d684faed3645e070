"""Merging v2 inputs along the batch dimension and splitting outputs back."""

from __future__ import annotations

import numpy as np
import pytest

from fleetserve.batching import v2batch


def _item(rows: int, start: int, width: int = 4) -> dict[str, np.ndarray]:
    x = np.arange(start, start + rows * width, dtype=np.float32).reshape(rows, width)
    return {"x": x, "mask": np.full((rows, 2), start, dtype=np.int64)}


def test_merge_and_split_mixed_batch_sizes_keep_order_and_counts() -> None:
    items = [_item(1, 0), _item(3, 100), _item(2, 200)]
    merged = v2batch.merge(items)
    assert merged["x"].shape == (6, 4)
    assert merged["mask"].shape == (6, 2)
    assert merged["mask"][:, 0].tolist() == [0, 100, 100, 100, 200, 200]
    outputs = {"y": merged["x"] * 2, "n": merged["mask"][:, :1]}
    parts = v2batch.split(outputs, [v2batch.rows_of(i) for i in items])
    assert len(parts) == 3
    for part, item in zip(parts, items, strict=True):
        np.testing.assert_array_equal(part["y"], item["x"] * 2)
        np.testing.assert_array_equal(part["n"], item["mask"][:, :1])
        assert set(part) == {"y", "n"}


def test_merge_of_one_item_passes_it_through() -> None:
    item = _item(2, 0)
    assert v2batch.merge([item]) is item


def test_split_of_one_item_passes_outputs_through() -> None:
    outputs = {"y": np.zeros((3, 1))}
    parts = v2batch.split(outputs, [3])
    assert len(parts) == 1
    assert parts[0] is outputs


def test_split_gives_views_not_copies() -> None:
    outputs = {"y": np.arange(6).reshape(3, 2)}
    first, _ = v2batch.split(outputs, [1, 2])
    assert np.shares_memory(first["y"], outputs["y"])


def test_split_rejects_outputs_with_the_wrong_row_count() -> None:
    with pytest.raises(RuntimeError, match=r"output 'y' has \(5,\) rows for a batch of 6"):
        v2batch.split({"y": np.zeros((5, 2)), "z": np.zeros((6,))}, [1, 3, 2])


def test_split_rejects_scalar_outputs_of_a_batch() -> None:
    with pytest.raises(RuntimeError, match="output 's'"):
        v2batch.split({"s": np.float32(1.0).reshape(())}, [1, 1])


def test_rows_of() -> None:
    assert v2batch.rows_of({"x": np.zeros((3, 4)), "y": np.zeros((3,))}) == 3
    assert v2batch.rows_of({"x": np.zeros(())}) == 1


def test_batch_key_ignores_the_batch_dimension() -> None:
    a = {"x": np.zeros((1, 3, 8)), "m": np.zeros((1, 2))}
    b = {"x": np.zeros((5, 3, 8)), "m": np.zeros((5, 2))}
    c = {"x": np.zeros((1, 3, 9)), "m": np.zeros((1, 2))}
    assert v2batch.batch_key(a) == v2batch.batch_key(b)
    assert v2batch.batch_key(a) != v2batch.batch_key(c)
    hash(v2batch.batch_key(a))


def test_batch_key_does_not_depend_on_input_order() -> None:
    a = {"x": np.zeros((1, 3)), "m": np.zeros((1, 2))}
    same = {"m": np.zeros((2, 2)), "x": np.zeros((2, 3))}
    swapped = {"m": np.zeros((1, 3)), "x": np.zeros((1, 2))}  # same shapes, other names
    assert v2batch.batch_key(a) == v2batch.batch_key(same)
    assert v2batch.batch_key(a) != v2batch.batch_key(swapped)
    merged = v2batch.merge([a, same])
    assert merged["x"].shape == (3, 3)
    assert merged["m"].shape == (3, 2)
