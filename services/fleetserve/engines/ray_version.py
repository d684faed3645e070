"""A model version as its own Ray Serve deployment.

The gateway (the ingress deployment) keeps the whole serving path: data plane, router,
batcher, statistics. Only the model's compute moves: the version's runtime is a `RayRuntime`
that sends each batch to the version's deployment, whose replicas hold the real runtime
(onnxruntime, TorchScript). Each load is its own Serve application (route prefix none, so the
proxies never route to it), named `fleetserve-<model>-v<version>-<id>`: a reload deploys beside
the old one, which is deleted once drained.

Replicas and resources come from config.pbtxt: `instance_group` count is the number of
replicas (and of batches the gateway sends at once); fleetserve's own `parameters`:
`ray_num_cpus` and `ray_num_gpus` per replica (defaults: FLEETSERVE_RAY_REPLICA_CPUS, and one
GPU where an instance_group is KIND_GPU), and Serve autoscaling with `ray_min_replicas`,
`ray_max_replicas` and `ray_target_ongoing_requests`.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from fleetserve.protocol.errors import ErrorCode, FleetError
from fleetserve.runtimes.base import RuntimeOptions, TensorSpec
from fleetserve.runtimes.factory import create_runtime
from fleetserve.wire import model_config_pb2 as mc

log = logging.getLogger(__name__)

APP_PREFIX = "fleetserve-"
_RETRY_AFTER_S = 1.0


class VersionReplica:
    """One replica of a model version's deployment: the real runtime, one batch at a time."""

    def __init__(
        self,
        platform: str,
        path: str,
        options: RuntimeOptions,
        inputs: list[TensorSpec] | None,
        outputs: list[TensorSpec] | None,
        config: bytes | None,
    ) -> None:
        parsed = mc.ModelConfig.FromString(config) if config is not None else None
        self.runtime = create_runtime(platform, Path(path), options, inputs, outputs, parsed)

    def describe(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """The tensors the loaded model declares."""
        return self.runtime.inputs(), self.runtime.outputs()

    def infer(self, inputs: dict[str, np.ndarray]) -> tuple[str, Any, str]:
        """("ok", outputs, "") or ("error", code name or "", message): errors travel as values, so
        the gateway gets the code and message rather than a remote traceback."""
        try:
            return "ok", self.runtime.infer(inputs), ""
        except FleetError as exc:
            return "error", exc.code.name, exc.message
        except Exception as exc:  # the model's own failure: INTERNAL, with its message
            return "error", "", f"{type(exc).__name__}: {exc}"

    def __del__(self) -> None:
        runtime = getattr(self, "runtime", None)
        if runtime is not None:
            runtime.unload()


def _parameter(config: mc.ModelConfig | None, key: str) -> str:
    entry = config.parameters.get(key) if config is not None else None
    return entry.string_value.strip() if entry is not None else ""


def _number(config: mc.ModelConfig | None, key: str, default: float | None) -> float | None:
    text = _parameter(config, key)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"parameter {key} must be a number, got '{text}'") from None
    if value < 0:
        raise ValueError(f"parameter {key} must not be negative")
    return value


def deployment_options(config: mc.ModelConfig | None, replica_cpus: float) -> dict[str, Any]:
    """The Serve deployment options a version's config.pbtxt asks for."""
    groups = list(config.instance_group) if config is not None else []
    count = sum(max(g.count, 1) for g in groups) or 1
    gpu = any(g.kind == mc.ModelInstanceGroup.KIND_GPU for g in groups)
    actor: dict[str, Any] = {
        "num_cpus": _number(config, "ray_num_cpus", replica_cpus),
        "num_gpus": _number(config, "ray_num_gpus", 1.0 if gpu else 0.0),
    }
    options: dict[str, Any] = {
        "ray_actor_options": actor,
        # the gateway's batcher sends a replica one batch at a time; more would only queue there
        "max_ongoing_requests": 1,
        # a model that cannot load fails its load once, with its reason, instead of 20 retries
        "max_constructor_retry_count": 1,
        # the gateway counts and logs every request; a line per batch here would only repeat it
        "logging_config": {"enable_access_log": False},
    }
    low, high = _number(config, "ray_min_replicas", None), _number(config, "ray_max_replicas", None)
    if low is None and high is None:
        options["num_replicas"] = count
        return options
    low = low if low is not None else 1
    high = high if high is not None else max(low, count)
    if high < max(low, 1):
        raise ValueError("parameter ray_max_replicas must be at least ray_min_replicas and 1")
    options["autoscaling_config"] = {
        "min_replicas": int(low),
        "max_replicas": int(high),
        "initial_replicas": int(min(max(count, low), high)),
        "target_ongoing_requests": _number(config, "ray_target_ongoing_requests", 1.0),
    }
    return options


class RayRuntime:
    """The gateway's stand-in for a model whose replicas run in a Ray Serve deployment."""

    def __init__(self, app_name: str, app: Any) -> None:
        self.app_name = app_name
        self._app = app
        self._handle: Any = None
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []

    def load(self) -> None:
        """Deploy the version and wait until its replicas answer; ValueError with the reason."""
        from ray import serve

        try:
            self._handle = serve.run(self._app, name=self.app_name, route_prefix=None)
            self._inputs, self._outputs = self._handle.describe.remote().result()
        except Exception as exc:  # a replica that cannot load fails the deployment
            self.unload()
            raise ValueError(f"Ray Serve deployment {self.app_name} failed: {_last_line(exc)}") from None
        log.info("deployed %s", self.app_name)

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Compute a batch on one of the version's replicas (called on an executor thread)."""
        if self._handle is None:
            raise FleetError(ErrorCode.UNAVAILABLE, f"{self.app_name} is not deployed", retry_after_s=1.0)
        try:
            kind, value, message = self._handle.infer.remote(inputs).result()
        except Exception as exc:  # replica died, deployment deleted, cluster gone
            raise FleetError(
                ErrorCode.UNAVAILABLE, f"{self.app_name}: {_last_line(exc)}", retry_after_s=_RETRY_AFTER_S
            ) from None
        if kind == "ok":
            outputs: dict[str, np.ndarray] = value
            return outputs
        if value:
            raise FleetError(ErrorCode[value], message)
        raise RuntimeError(message)

    def unload(self) -> None:
        """Delete the version's application (without waiting: replicas drain on their own)."""
        from ray import serve

        self._handle = None
        try:
            serve.delete(self.app_name, _blocking=False)
        except Exception as exc:  # the cluster is going away with it
            log.warning("could not delete %s: %s", self.app_name, exc)

    def inputs(self) -> list[TensorSpec]:
        """The tensors the model declares (from a replica, after load)."""
        return list(self._inputs)

    def outputs(self) -> list[TensorSpec]:
        """The tensors the model declares (from a replica, after load)."""
        return list(self._outputs)


def _last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


class RayPlacement:
    """`RuntimeOptions.placement` for the Ray engine: each version loads in its own deployment."""

    def __init__(self, replica_cpus: float) -> None:
        self.replica_cpus = replica_cpus

    def __call__(
        self,
        platform: str,
        path: Path,
        options: RuntimeOptions,
        inputs: list[TensorSpec] | None,
        outputs: list[TensorSpec] | None,
        config: mc.ModelConfig | None,
    ) -> RayRuntime:
        """A loaded RayRuntime for the model file at `path` (`<model>/<version>/<file>`)."""
        from ray import serve

        model, version = path.parent.parent.name, path.parent.name
        name = f"{APP_PREFIX}{model}-v{version}-{uuid.uuid4().hex[:8]}"
        deployment: Any = serve.deployment(VersionReplica, name=f"{model}-v{version}")
        deployment = deployment.options(**deployment_options(config, self.replica_cpus))
        app = deployment.bind(
            platform,
            str(path.resolve()),
            options,
            inputs,
            outputs,
            config.SerializeToString() if config is not None else None,
        )
        runtime = RayRuntime(name, app)
        runtime.load()
        return runtime
