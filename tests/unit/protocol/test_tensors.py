"""numpy <-> v2 tensor encodings: raw bytes, length-prefixed BYTES, JSON lists, shapes."""

from __future__ import annotations

import struct

import ml_dtypes
import numpy as np
import pytest

from fleetserve.protocol import tensors
from fleetserve.protocol.errors import ErrorCode, FleetError

FIXED = {
    "BOOL": np.array([[True, False], [False, True]], dtype=np.bool_),
    "UINT8": np.array([[0, 1], [254, 255]], dtype=np.uint8),
    "UINT16": np.array([[0, 1], [2, 65535]], dtype=np.uint16),
    "UINT32": np.array([[0, 1], [2, 2**32 - 1]], dtype=np.uint32),
    "UINT64": np.array([[0, 1], [2, 2**64 - 1]], dtype=np.uint64),
    "INT8": np.array([[-128, -1], [0, 127]], dtype=np.int8),
    "INT16": np.array([[-(2**15), -1], [0, 2**15 - 1]], dtype=np.int16),
    "INT32": np.array([[-(2**31), -1], [0, 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([[-(2**63), -1], [0, 2**63 - 1]], dtype=np.int64),
    "FP16": np.array([[0.5, -1.0], [65504.0, 0.0]], dtype=np.float16),
    "FP32": np.array([[0.5, -1.25], [3.0e38, 0.0]], dtype=np.float32),
    "FP64": np.array([[0.5, -1.25], [1.0e300, 0.0]], dtype=np.float64),
    "BF16": np.array([[0.5, -1.25], [3.0e38, 0.0]], dtype=ml_dtypes.bfloat16),
}
SIZES = {name: array.itemsize for name, array in FIXED.items()}


def _raises(fn, *args) -> FleetError:
    with pytest.raises(FleetError) as info:
        fn(*args)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    return info.value


def _bytes_blob(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


# --- raw ---


@pytest.mark.parametrize("datatype", sorted(FIXED))
def test_raw_round_trip_every_fixed_size_datatype(datatype: str) -> None:
    array = FIXED[datatype]
    raw = tensors.to_raw(array)
    assert len(raw) == 4 * SIZES[datatype]
    back = tensors.from_raw(raw, datatype, (2, 2), "t")
    assert back.dtype == array.dtype
    assert back.shape == (2, 2)
    np.testing.assert_array_equal(back.astype(np.float64), array.astype(np.float64))


def test_raw_is_little_endian() -> None:
    assert tensors.to_raw(np.array([1], dtype=">i4")) == b"\x01\x00\x00\x00"
    assert tensors.to_raw(np.array([1], dtype="<i4")) == b"\x01\x00\x00\x00"
    assert tensors.from_raw(b"\x01\x00\x00\x00", "INT32", (1,), "t").tolist() == [1]


def test_raw_bf16_matches_ml_dtypes_layout() -> None:
    raw = np.array([1.0, -2.0], dtype=ml_dtypes.bfloat16).tobytes()
    back = tensors.from_raw(raw, "BF16", (2,), "t")
    assert back.dtype == np.dtype(ml_dtypes.bfloat16)
    assert back.astype(np.float32).tolist() == [1.0, -2.0]


def test_raw_of_non_contiguous_array_is_row_major() -> None:
    array = np.arange(6, dtype=np.int32).reshape(2, 3).T  # (3, 2), a transposed view
    back = tensors.from_raw(tensors.to_raw(array), "INT32", (3, 2), "t")
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("datatype", ["FP32", "INT64", "UINT8", "FP16", "BF16", "BOOL"])
@pytest.mark.parametrize("delta", [-1, 1])
def test_raw_wrong_byte_count_names_tensor_and_expected_count(datatype: str, delta: int) -> None:
    expected = 6 * SIZES[datatype]
    err = _raises(tensors.from_raw, b"\x00" * (expected + delta), datatype, (2, 3), "pixels")
    assert "'pixels'" in err.message
    assert f"got {expected + delta} bytes" in err.message
    assert f"expected {expected}" in err.message
    assert "[2, 3]" in err.message


def test_raw_empty_tensor() -> None:
    back = tensors.from_raw(b"", "FP32", (0, 4), "t")
    assert back.shape == (0, 4)
    assert tensors.to_raw(back) == b""


def test_raw_unknown_datatype_names_tensor() -> None:
    err = _raises(tensors.from_raw, b"\x00" * 4, "FLOAT32", (1,), "x")
    assert "'x'" in err.message
    assert "FLOAT32" in err.message
    assert "FP32" in err.message  # lists what is known


# --- BYTES ---


def test_bytes_round_trip_with_empty_and_non_ascii_items() -> None:
    items = [b"", "grüße 東京".encode(), b"\x00\xff", b"plain"]
    array = np.empty(4, dtype=object)
    array[:] = items
    raw = tensors.to_raw(array.reshape(2, 2))
    assert raw == _bytes_blob(items)
    back = tensors.from_raw(raw, "BYTES", (2, 2), "s")
    assert back.dtype == object
    assert back.shape == (2, 2)
    assert back.reshape(-1).tolist() == items


def test_bytes_to_raw_encodes_str_items_as_utf8() -> None:
    array = np.array(["é", "ab"], dtype=object)
    assert tensors.to_raw(array) == _bytes_blob(["é".encode(), b"ab"])
    assert tensors.to_raw(np.array([b"xy"])) == _bytes_blob([b"xy"])  # dtype S


def test_bytes_all_empty_items() -> None:
    back = tensors.from_raw(_bytes_blob([b"", b""]), "BYTES", (2,), "s")
    assert back.tolist() == [b"", b""]


def test_bytes_zero_elements() -> None:
    assert tensors.from_raw(b"", "BYTES", (0,), "s").shape == (0,)


def test_bytes_truncated_length_prefix() -> None:
    raw = _bytes_blob([b"abc"]) + b"\x02\x00"
    err = _raises(tensors.from_raw, raw, "BYTES", (2,), "s")
    assert "'s'" in err.message
    assert "truncated" in err.message
    assert "byte 7" in err.message


def test_bytes_item_past_the_end() -> None:
    raw = _bytes_blob([b"abc"]) + struct.pack("<I", 10) + b"xy"
    err = _raises(tensors.from_raw, raw, "BYTES", (2,), "s")
    assert "element 1 claims 10 bytes" in err.message


@pytest.mark.parametrize("items", [[b"a"], [b"a", b"b", b"c"]])
def test_bytes_wrong_element_count(items: list[bytes]) -> None:
    err = _raises(tensors.from_raw, _bytes_blob(items), "BYTES", (2,), "s")
    assert f"got {len(items)} BYTES elements, expected 2" in err.message


# --- JSON ---


def test_from_json_flat_and_nested_lists_are_row_major() -> None:
    flat = tensors.from_json([1, 2, 3, 4, 5, 6], "INT32", (2, 3), "t")
    nested = tensors.from_json([[1, 2, 3], [4, 5, 6]], "INT32", (2, 3), "t")
    assert flat.dtype == np.int32
    assert flat.tolist() == [[1, 2, 3], [4, 5, 6]]
    np.testing.assert_array_equal(flat, nested)


def test_from_json_deeply_nested() -> None:
    data = [[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]
    out = tensors.from_json(data, "FP32", (2, 2, 2), "t")
    assert out.dtype == np.float32
    assert out[1, 0, 1] == 6.0


def test_from_json_int_values_for_floats_are_fine() -> None:
    assert tensors.from_json([1, 2.5], "FP64", (2,), "t").tolist() == [1.0, 2.5]


def test_from_json_scalar_for_one_element() -> None:
    assert tensors.from_json(7, "INT64", (1,), "t").tolist() == [7]


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64", "BF16"])
def test_from_json_float_types(datatype: str) -> None:
    out = tensors.from_json([0.5, -2.0], datatype, (2,), "t")
    assert out.astype(np.float32).tolist() == [0.5, -2.0]
    assert out.dtype == FIXED[datatype].dtype


@pytest.mark.parametrize(("data", "shape"), [([1, 2, 3], (2, 2)), ([[1, 2], [3, 4]], (3,)), ([], (1,))])
def test_from_json_wrong_element_count(data: list, shape: tuple[int, ...]) -> None:
    err = _raises(tensors.from_json, data, "FP32", shape, "vec")
    assert "'vec'" in err.message
    assert f"expected {int(np.prod(shape))}" in err.message
    assert str(list(shape)) in err.message


@pytest.mark.parametrize(
    "data",
    [
        [[1, 2], [3]],
        [[1, 2], 3],
        [1, [2, 3]],
        [[[1, 2]], [[3]]],
        [[[1], [2]], [[3, 4]]],
    ],
)
@pytest.mark.parametrize("datatype", ["FP32", "INT32", "BOOL"])
def test_from_json_ragged_lists(data: list, datatype: str) -> None:
    err = _raises(tensors.from_json, data, datatype, (3,), "r")
    assert "'r'" in err.message


def test_from_json_ragged_bytes_lists_with_right_total_count() -> None:
    err = _raises(tensors.from_json, [["a", "b", "c"], ["d"]], "BYTES", (2, 2), "r")
    assert "ragged" in err.message


@pytest.mark.parametrize("datatype", ["FP32", "FP16", "BF16", "INT32", "UINT8"])
@pytest.mark.parametrize("bad", ["1.5", "abc", None, {"a": 1}])
def test_from_json_non_numbers_for_numeric_types(datatype: str, bad: object) -> None:
    err = _raises(tensors.from_json, [1, bad], datatype, (2,), "num")
    assert "'num'" in err.message
    assert f"does not hold {datatype} values" in err.message


@pytest.mark.parametrize("datatype", ["FP32", "INT64"])
def test_from_json_booleans_are_not_numbers(datatype: str) -> None:
    _raises(tensors.from_json, [True, False], datatype, (2,), "num")


@pytest.mark.parametrize("datatype", ["INT8", "INT32", "INT64", "UINT32"])
def test_from_json_fractions_are_not_integers(datatype: str) -> None:
    err = _raises(tensors.from_json, [1, 1.7], datatype, (2,), "ints")
    assert "1.7" in err.message


@pytest.mark.parametrize(
    ("datatype", "value"), [("UINT8", 256), ("UINT8", -1), ("INT8", 128), ("INT16", -40000)]
)
def test_from_json_out_of_range_integers(datatype: str, value: int) -> None:
    err = _raises(tensors.from_json, [value], datatype, (1,), "small")
    assert f"does not hold {datatype} values" in err.message


@pytest.mark.parametrize("bad", [1, 2.5, None, True, ["nested", 1]])
def test_from_json_bytes_needs_strings(bad: object) -> None:
    err = _raises(tensors.from_json, ["ok", bad], "BYTES", (2,), "txt")
    assert "'txt'" in err.message


def test_from_json_bytes_are_utf8_encoded() -> None:
    out = tensors.from_json([["a", "ü"], ["", "東"]], "BYTES", (2, 2), "txt")
    assert out.dtype == object
    assert out.reshape(-1).tolist() == [b"a", "ü".encode(), b"", "東".encode()]


def test_from_json_bool() -> None:
    out = tensors.from_json([[True, False], [False, True]], "BOOL", (2, 2), "b")
    assert out.dtype == np.bool_
    assert out.tolist() == [[True, False], [False, True]]


@pytest.mark.parametrize("bad", [[1, 0], [True, 0], [True, "true"], [True, None]])
def test_from_json_bool_needs_true_false(bad: list) -> None:
    err = _raises(tensors.from_json, bad, "BOOL", (2,), "flag")
    assert "'flag'" in err.message
    assert "true / false" in err.message


def test_from_json_unknown_datatype() -> None:
    err = _raises(tensors.from_json, [1], "INT128", (1,), "x")
    assert "INT128" in err.message


# --- to_json ---


def test_to_json_is_flat_row_major() -> None:
    assert tensors.to_json(np.array([[1, 2], [3, 4]], dtype=np.int64), "o") == [1, 2, 3, 4]


def test_to_json_floats_bools_and_bf16_are_python_values() -> None:
    assert tensors.to_json(np.array([True, False]), "o") == [True, False]
    out = tensors.to_json(np.array([0.5, 2.0], dtype=np.float16), "o")
    assert out == [0.5, 2.0]
    assert all(type(x) is float for x in out)
    bf = tensors.to_json(np.array([0.5, -3.0], dtype=ml_dtypes.bfloat16), "o")
    assert bf == [0.5, -3.0]
    assert all(type(x) is float for x in bf)


def test_to_json_bytes_as_text() -> None:
    array = np.array([b"a", "ü".encode(), b""], dtype=object)
    assert tensors.to_json(array, "o") == ["a", "ü", ""]
    assert tensors.to_json(np.array([b"xy", b"z"]), "o") == ["xy", "z"]


def test_to_json_non_utf8_bytes_asks_for_binary() -> None:
    err = _raises(tensors.to_json, np.array([b"\xff\xfe"], dtype=object), "blob")
    assert "'blob'" in err.message
    assert "binary_data" in err.message


@pytest.mark.parametrize("datatype", ["INT32", "FP64", "BOOL", "BYTES", "UINT64"])
def test_json_round_trip(datatype: str) -> None:
    data = {
        "INT32": [1, -2, 3, 4],
        "FP64": [0.25, -1.5, 2.0, 3.0],
        "BOOL": [True, False, True, True],
        "BYTES": ["a", "", "ü", "z"],
        "UINT64": [0, 1, 2**64 - 1, 5],
    }[datatype]
    assert tensors.to_json(tensors.from_json(data, datatype, (2, 2), "t"), "t") == data


# --- shapes ---


def test_check_shape_accepts_ints() -> None:
    assert tensors.check_shape([2, 0, 3], "t") == (2, 0, 3)
    assert tensors.check_shape([], "t") == ()
    assert tensors.check_shape((np.int64(4),), "t") == (4,)


def test_check_shape_negative() -> None:
    err = _raises(tensors.check_shape, [2, -1], "img")
    assert "'img'" in err.message
    assert "non-negative" in err.message


@pytest.mark.parametrize("bad", [[1.5], [2.0], ["3"], [None], [[1]], None, "12", 3])
def test_check_shape_non_integers(bad: object) -> None:
    err = _raises(tensors.check_shape, bad, "img")
    assert "'img'" in err.message
    assert "integers" in err.message


@pytest.mark.parametrize("bad", [[True], [1, False]])
def test_check_shape_bool_is_not_a_dimension(bad: list) -> None:
    err = _raises(tensors.check_shape, bad, "img")
    assert "'img'" in err.message


def test_element_count() -> None:
    assert tensors.element_count((2, 3, 4)) == 24
    assert tensors.element_count(()) == 1
    assert tensors.element_count((5, 0)) == 0
