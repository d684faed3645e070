"""v2 inference request and response types, shared by every transport.

Tensors are held decoded, as numpy arrays (BYTES as object arrays of ``bytes``); the codecs
in this package turn wire forms into these types and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Parameters = dict[str, Any]


@dataclass(slots=True)
class InputTensor:
    """One request input, decoded."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for. ``binary`` is the REST binary-extension choice."""

    name: str
    binary: bool | None = None
    classification: int = 0
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    """A v2 inference request for one model (and optionally one version)."""

    model_name: str
    model_version: str = ""
    id: str = ""
    inputs: list[InputTensor] = field(default_factory=list)
    outputs: list[RequestedOutput] = field(default_factory=list)
    parameters: Parameters = field(default_factory=dict)
    request_id: str = ""
    binary_output: bool = False
    deadline: float | None = None  # monotonic time by which the answer is due, if any
    route_key: str | None = None  # sticky key of the rollout (header / metadata)


@dataclass(slots=True)
class OutputTensor:
    """One response output, decoded. ``binary`` is set for REST binary-extension outputs."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: Parameters = field(default_factory=dict)
    binary: bool = False


@dataclass(slots=True)
class InferResponse:
    """A v2 inference response."""

    model_name: str
    model_version: str
    id: str
    outputs: list[OutputTensor]
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TensorMetadata:
    """Name, v2 datatype and shape (-1 for variable dimensions) of a model input or output."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """The v2 model metadata answer."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]


@dataclass(frozen=True, slots=True)
class ServerMetadata:
    """The v2 server metadata answer."""

    name: str
    version: str
    extensions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One row of the repository index."""

    name: str
    version: str
    state: str
    reason: str
