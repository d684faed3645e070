"""numpy <-> v2 tensor encodings: JSON lists, raw little-endian bytes, length-prefixed BYTES."""

from __future__ import annotations

import math
import numbers
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import datatypes
from .errors import invalid

_LEN = struct.Struct("<I")


def datatype_of(name: str, tensor: str) -> datatypes.DataType:
    """The datatype named by a request, or a clear error naming the tensor."""
    found = datatypes.from_name(name)
    if found is None:
        known = ", ".join(datatypes.BY_NAME)
        raise invalid(f"tensor '{tensor}': unknown datatype '{name}' (expected one of {known})")
    return found


def check_shape(shape: Sequence[Any], tensor: str) -> tuple[int, ...]:
    """A request shape as a tuple of non-negative ints, or a clear error."""
    dims = tuple(shape) if isinstance(shape, list | tuple) or hasattr(shape, "__len__") else None
    if dims is not None:
        for d in dims:
            if type(d) is not int or d < 0:
                break
        else:
            return dims  # the common case, checked in one pass: plain non-negative ints
    try:
        items = list(shape)
    except TypeError:
        items = None
    # int() would also take 1.5, "3" and True; only integers are dimensions.
    if items is None or any(isinstance(d, bool) or not isinstance(d, numbers.Integral) for d in items):
        raise invalid(f"tensor '{tensor}': shape must be a list of integers, got {shape!r}")
    dims = tuple(int(d) for d in items)
    if any(d < 0 for d in dims):
        raise invalid(f"tensor '{tensor}': shape must hold non-negative integers, got {list(dims)}")
    return dims


def element_count(shape: Sequence[int]) -> int:
    """The number of elements of a shape."""
    return math.prod(shape)


def from_raw(raw: bytes | memoryview, datatype: str, shape: tuple[int, ...], tensor: str) -> np.ndarray:
    """Decode raw tensor bytes (binary extension, gRPC raw contents), checking the byte count."""
    dt = datatype_of(datatype, tensor)
    count = element_count(shape)
    if dt.size == 0:
        return _bytes_from_raw(raw, shape, count, tensor)
    expected = count * dt.size
    if len(raw) != expected:
        raise invalid(
            f"tensor '{tensor}': got {len(raw)} bytes of data, expected {expected} "
            f"({count} {datatype} elements of {dt.size} bytes for shape {list(shape)})"
        )
    return np.frombuffer(raw, dtype=dt.dtype).reshape(shape)


def _bytes_from_raw(raw: bytes | memoryview, shape: tuple[int, ...], count: int, tensor: str) -> np.ndarray:
    view = memoryview(raw)
    items: list[bytes] = []
    offset = 0
    end = len(view)
    while offset < end:
        if offset + 4 > end:
            raise invalid(f"tensor '{tensor}': truncated BYTES element length at byte {offset}")
        (n,) = _LEN.unpack_from(view, offset)
        offset += 4
        if offset + n > end:
            raise invalid(f"tensor '{tensor}': BYTES element {len(items)} claims {n} bytes, past the end")
        items.append(bytes(view[offset : offset + n]))
        offset += n
    if len(items) != count:
        raise invalid(
            f"tensor '{tensor}': got {len(items)} BYTES elements, expected {count} for shape {list(shape)}"
        )
    out = np.empty(count, dtype=object)
    out[:] = items
    return out.reshape(shape)


def to_raw(array: np.ndarray) -> bytes:
    """Encode an array as raw little-endian bytes (BYTES as 4-byte length-prefixed items)."""
    if array.dtype == object or array.dtype.kind in ("S", "U"):
        parts: list[bytes] = []
        for item in array.reshape(-1):
            b = item.encode() if isinstance(item, str) else bytes(item)
            parts.append(_LEN.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array).tobytes()


def from_json(data: Any, datatype: str, shape: tuple[int, ...], tensor: str) -> np.ndarray:
    """Decode a JSON `data` list (flat or nested, row-major), checking the element count."""
    dt = datatype_of(datatype, tensor)
    count = element_count(shape)
    if not isinstance(data, list):
        data = [data]
    try:
        values = _flatten(data)
        if dt.size == 0:
            items = [_to_bytes(x, tensor) for x in values]
            flat = np.empty(len(items), dtype=object)
            flat[:] = items
        else:
            _check_json_types(values, dt, tensor)
            if dt.name == "BF16":
                flat = np.asarray(values, dtype=np.float32).astype(dt.dtype)
            else:
                flat = np.asarray(values, dtype=dt.dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise invalid(f"tensor '{tensor}': data does not hold {datatype} values: {exc}") from None
    if flat.size != count:
        raise invalid(
            f"tensor '{tensor}': got {flat.size} elements of data, expected {count} for shape {list(shape)}"
        )
    return flat.reshape(shape)


_FLOATS = ("FP16", "FP32", "FP64", "BF16")


def _check_json_types(values: list[Any], dt: datatypes.DataType, tensor: str) -> None:
    """numpy would turn "1.5" into 1.5, 1.7 into 1 and true into 1.0; v2 JSON data is typed."""
    if dt.name == "BOOL":
        if any(type(x) is not bool for x in values):
            raise invalid(f"tensor '{tensor}': BOOL data must be true / false")
        return
    allowed = (int, float) if dt.name in _FLOATS else (int,)
    for x in values:
        if type(x) not in allowed:
            kind = "numbers" if dt.name in _FLOATS else "integers"
            raise TypeError(f"{dt.name} data must be {kind}, got {type(x).__name__} {x!r}")


def _flatten(data: list[Any]) -> list[Any]:
    if not data or not isinstance(data[0], list):
        if any(isinstance(x, list) for x in data):
            raise ValueError("ragged nested lists")
        return data
    out: list[Any] = []
    width = -1
    for row in data:
        if not isinstance(row, list) or len(row) != len(data[0]):
            raise ValueError("ragged nested lists")
        flat = _flatten(row)
        if width not in (-1, len(flat)):
            raise ValueError("ragged nested lists")
        width = len(flat)
        out.extend(flat)
    return out


def _to_bytes(item: Any, tensor: str) -> bytes:
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, bytes):
        return item
    raise invalid(f"tensor '{tensor}': BYTES data must be strings, got {type(item).__name__}")


def to_json(array: np.ndarray, tensor: str) -> list[Any]:
    """Encode an array as a flat JSON list (BYTES as UTF-8 strings, BF16 as floats)."""
    flat = array.reshape(-1)
    if flat.dtype == object or flat.dtype.kind == "S":
        try:
            return [x.decode() if isinstance(x, bytes) else str(x) for x in flat]
        except UnicodeDecodeError:
            raise invalid(
                f"output '{tensor}' holds bytes that are not UTF-8 text; request it with binary_data"
            ) from None
    if flat.dtype == datatypes.BY_NAME["BF16"].dtype:
        flat = flat.astype(np.float32)
    return flat.tolist()
