"""A model that another v2 server computes (tritonserver in production, or another fleetserve),
reached over gRPC with fleetserve's own wire messages.

The model is declared in the repository like any other, so routing, rollout, batching,
prediction logging and drift work for it as for a local one. `config.pbtxt`:

    platform: "remote"                 # or backend: "remote"
    parameters { key: "remote_url"       value { string_value: "triton:8001" } }  # required
    parameters { key: "remote_model"     value { string_value: "resnet50" } }     # default: this model's name
    parameters { key: "remote_version"   value { string_value: "3" } }            # default: upstream picks
    parameters { key: "remote_timeout_s" value { string_value: "30" } }           # per call, default 30

Each version folder (`<model>/1/`) must exist and may be empty. Inputs and outputs come from
the upstream's model metadata; `max_batch_size` from the upstream's model config when the
local config.pbtxt leaves it out (local `dynamic_batching` stays opt-in: by default each
request is forwarded alone and the upstream batches). `instance_group` count is the number of
calls in flight to the upstream (default 4).
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np

from fleetserve.protocol import tensors
from fleetserve.protocol.errors import ErrorCode, FleetError
from fleetserve.wire import inference_pb2 as pb
from fleetserve.wire import model_config_pb2 as mc

from .base import Runtime, TensorSpec

SERVICE = "/inference.GRPCInferenceService/"
DEFAULT_TIMEOUT_S = 30.0
MAX_MESSAGE_BYTES = 1024 * 1024 * 1024
DEFAULT_IN_FLIGHT = 4  # calls to the upstream at once when config.pbtxt names no instance_group
_RETRY_AFTER_S = 1.0

# An upstream's gRPC status as fleetserve's code; what is not listed is the upstream's failure.
_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT: ErrorCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND: ErrorCode.UNAVAILABLE,  # the model is gone from the upstream
    grpc.StatusCode.UNAVAILABLE: ErrorCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ErrorCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ErrorCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED: ErrorCode.UNAVAILABLE,  # the client's call is fine; our link is not
    grpc.StatusCode.PERMISSION_DENIED: ErrorCode.UNAVAILABLE,
    grpc.StatusCode.UNIMPLEMENTED: ErrorCode.UNAVAILABLE,
}


def _parameter(config: mc.ModelConfig, key: str) -> str:
    entry = config.parameters.get(key)
    return entry.string_value.strip() if entry is not None else ""


class RemoteRuntime:
    """Forwards each batch to `remote_model` on the v2 gRPC server at `remote_url`."""

    def __init__(self, url: str, model: str, version: str = "", timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = url
        self.model = model
        self.version = version
        self.timeout_s = timeout_s
        self.upstream_max_batch_size = 0
        self._channel: grpc.Channel | None = None
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        self._infer: Any = None
        self._state: grpc.ChannelConnectivity | None = None

    @classmethod
    def from_config(cls, config: mc.ModelConfig, default_model: str) -> RemoteRuntime:
        """The runtime a config.pbtxt asks for; ValueError names a missing or bad parameter."""
        url = _parameter(config, "remote_url")
        if not url:
            raise ValueError("a remote model needs the parameter remote_url (host:port of a v2 gRPC server)")
        timeout_text = _parameter(config, "remote_timeout_s")
        try:
            timeout_s = float(timeout_text) if timeout_text else DEFAULT_TIMEOUT_S
        except ValueError:
            raise ValueError(f"parameter remote_timeout_s must be a number, got '{timeout_text}'") from None
        if timeout_s <= 0:
            raise ValueError("parameter remote_timeout_s must be positive")
        version = _parameter(config, "remote_version")
        if version and not version.isdigit():
            raise ValueError(f"parameter remote_version must be a version number, got '{version}'")
        return cls(url, _parameter(config, "remote_model") or default_model, version, timeout_s)

    def _call(self, method: str, request: Any, response_type: Any) -> Any:
        assert self._channel is not None, "call before load"
        call = self._channel.unary_unary(
            SERVICE + method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return call(request, timeout=self.timeout_s)

    def _where(self) -> str:
        version = f" version {self.version}" if self.version else ""
        return f"upstream {self.url} model '{self.model}'{version}"

    def load(self) -> None:
        """Connect and read the upstream's metadata and config; ValueError when it cannot serve."""
        self._channel = grpc.insecure_channel(
            self.url,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._channel.subscribe(self._on_state, try_to_connect=True)
        try:
            meta = self._call(
                "ModelMetadata",
                pb.ModelMetadataRequest(name=self.model, version=self.version),
                pb.ModelMetadataResponse,
            )
            config = self._call(
                "ModelConfig",
                pb.ModelConfigRequest(name=self.model, version=self.version),
                pb.ModelConfigResponse,
            ).config
        except grpc.RpcError as exc:
            self.unload()
            raise ValueError(f"{self._where()}: {exc.code().name}: {exc.details()}") from None
        self._inputs = [TensorSpec(t.name, t.datatype, tuple(int(d) for d in t.shape)) for t in meta.inputs]
        self._outputs = [TensorSpec(t.name, t.datatype, tuple(int(d) for d in t.shape)) for t in meta.outputs]
        if not self._inputs or not self._outputs:
            self.unload()
            raise ValueError(f"{self._where()} declares no inputs / outputs")
        self.upstream_max_batch_size = int(config.max_batch_size)
        self._infer = self._channel.unary_unary(
            SERVICE + "ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One ModelInfer call for the batch; upstream errors come back as FleetErrors."""
        if self._infer is None:
            raise FleetError(
                ErrorCode.UNAVAILABLE, f"{self._where()}: not connected", retry_after_s=_RETRY_AFTER_S
            )
        request = pb.ModelInferRequest(model_name=self.model, model_version=self.version)
        for spec in self._inputs:
            array = inputs.get(spec.name)
            if array is None:
                continue
            request.inputs.add(name=spec.name, datatype=spec.datatype, shape=list(array.shape))
            request.raw_input_contents.append(tensors.to_raw(array))
        try:
            response = self._infer(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            code = _CODES.get(exc.code(), ErrorCode.INTERNAL)
            retry = _RETRY_AFTER_S if code is ErrorCode.UNAVAILABLE else None
            raise FleetError(
                code, f"{self._where()}: {exc.code().name}: {exc.details()}", retry_after_s=retry
            ) from None
        if len(response.raw_output_contents) != len(response.outputs):
            raise FleetError(ErrorCode.INTERNAL, f"{self._where()} answered without raw_output_contents")
        return {
            out.name: tensors.from_raw(raw, out.datatype, tuple(int(d) for d in out.shape), out.name)
            for out, raw in zip(response.outputs, response.raw_output_contents, strict=True)
        }

    def _on_state(self, state: grpc.ChannelConnectivity) -> None:
        self._state = state

    def healthy(self) -> bool:
        """Whether the upstream is reachable: False while the channel is in TRANSIENT_FAILURE
        (gRPC keeps reconnecting with backoff, so this turns True again when it is back)."""
        return self._channel is not None and self._state not in (
            grpc.ChannelConnectivity.TRANSIENT_FAILURE,
            grpc.ChannelConnectivity.SHUTDOWN,
        )

    def unload(self) -> None:
        """Close the channel."""
        self._infer = None
        if self._channel is not None:
            self._channel.unsubscribe(self._on_state)
            self._channel.close()
            self._channel = None

    def inputs(self) -> list[TensorSpec]:
        """The upstream model's inputs (batch dimension included when it batches)."""
        return list(self._inputs)

    def outputs(self) -> list[TensorSpec]:
        """The upstream model's outputs."""
        return list(self._outputs)


def with_upstream_batching(config: mc.ModelConfig | None, runtime: Runtime) -> mc.ModelConfig | None:
    """The local config completed for a remote model: the upstream's max_batch_size where the
    local one declares neither a batch size nor tensors (it is the upstream's to know), and
    `DEFAULT_IN_FLIGHT` calls at once where it names no instance_group (each instance is one
    call in flight to the upstream)."""
    if config is None or not isinstance(runtime, RemoteRuntime):
        return config
    out = mc.ModelConfig()
    out.CopyFrom(config)
    if not (config.max_batch_size or config.input or config.output):
        out.max_batch_size = runtime.upstream_max_batch_size
    if not config.instance_group:
        out.instance_group.add(count=DEFAULT_IN_FLIGHT, kind=mc.ModelInstanceGroup.KIND_CPU)
    return out
