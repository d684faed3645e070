"""The `Runtime` protocol every backend implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fleetserve.protocol.types import TensorMetadata

# A tensor as the model declares it: name, v2 datatype, full shape (-1 = variable); the same
# record the v2 metadata answers with.
TensorSpec = TensorMetadata


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """How a runtime should run: threads and device."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    torch_threads: int = 1
    device: str = "auto"  # "cpu", or "auto": CUDA when the backend has it and a GPU is present
    # Where a model runs, when not in this process: an engine's stand-in for `create_runtime`
    # (the Ray engine's places each version in its own Ray Serve deployment). None: here.
    placement: Callable[..., Any] | None = None


class Runtime(Protocol):
    """A loaded model that computes a batch at a time. Calls come from one executor thread."""

    def load(self) -> None:
        """Load the model; raise with a readable reason when the file is unusable."""

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Compute every output for a batch of inputs keyed by input name."""
        ...

    def unload(self) -> None:
        """Release what `load` took."""

    def inputs(self) -> list[TensorSpec]:
        """The inputs the model declares (valid after load)."""
        ...

    def outputs(self) -> list[TensorSpec]:
        """The outputs the model declares (valid after load)."""
        ...
