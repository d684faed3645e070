"""The v2 datatype table: names, numpy dtypes, element sizes, and model-config TYPE_* names."""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True, slots=True)
class DataType:
    """One v2 datatype."""

    name: str  # v2 name, e.g. "FP32"
    config_name: str  # model_config.proto name, e.g. "TYPE_FP32"
    dtype: np.dtype  # numpy dtype (object for BYTES)
    size: int  # bytes per element in the binary encoding; 0 for BYTES (variable)


_TABLE = [
    DataType("BOOL", "TYPE_BOOL", np.dtype(np.bool_), 1),
    DataType("UINT8", "TYPE_UINT8", np.dtype(np.uint8), 1),
    DataType("UINT16", "TYPE_UINT16", np.dtype("<u2"), 2),
    DataType("UINT32", "TYPE_UINT32", np.dtype("<u4"), 4),
    DataType("UINT64", "TYPE_UINT64", np.dtype("<u8"), 8),
    DataType("INT8", "TYPE_INT8", np.dtype(np.int8), 1),
    DataType("INT16", "TYPE_INT16", np.dtype("<i2"), 2),
    DataType("INT32", "TYPE_INT32", np.dtype("<i4"), 4),
    DataType("INT64", "TYPE_INT64", np.dtype("<i8"), 8),
    DataType("FP16", "TYPE_FP16", np.dtype("<f2"), 2),
    DataType("FP32", "TYPE_FP32", np.dtype("<f4"), 4),
    DataType("FP64", "TYPE_FP64", np.dtype("<f8"), 8),
    DataType("BF16", "TYPE_BF16", np.dtype(ml_dtypes.bfloat16), 2),
    DataType("BYTES", "TYPE_STRING", np.dtype(object), 0),
]

BY_NAME: dict[str, DataType] = {t.name: t for t in _TABLE}
BY_CONFIG_NAME: dict[str, DataType] = {t.config_name: t for t in _TABLE}
_BY_DTYPE: dict[np.dtype, DataType] = {t.dtype: t for t in _TABLE}


def from_name(name: str) -> DataType | None:
    """The datatype for a v2 name, or None when the name is not a v2 datatype."""
    return BY_NAME.get(name)


def from_numpy(dtype: np.dtype) -> DataType:
    """The v2 datatype that carries a numpy dtype (strings and bytes travel as BYTES)."""
    found = _BY_DTYPE.get(dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype)
    if found is not None:
        return found
    if dtype.kind in ("S", "U", "O"):
        return BY_NAME["BYTES"]
    raise ValueError(f"numpy dtype {dtype} has no v2 datatype")
