"""The data plane: the single path every transport takes. Validate, route, infer, respond.

REST and gRPC adapters decode their wire form into protocol types, call one method here, and
encode what it returns; everything that decides anything happens here.
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any

from fleetserve import __version__
from fleetserve.batching.batcher import BatcherClosed, Rejected
from fleetserve.common.metrics import GatewayMetrics
from fleetserve.predlog.entry import LogEntry
from fleetserve.predlog.sink import PredlogUnavailable
from fleetserve.protocol.errors import ErrorCode, FleetError
from fleetserve.protocol.types import (
    IndexEntry,
    InferRequest,
    InferResponse,
    ModelMetadata,
    ServerMetadata,
    TensorMetadata,
)
from fleetserve.repository.manager import ModelManager
from fleetserve.repository.version import ServedVersion
from fleetserve.wire import inference_pb2 as pb
from fleetserve.wire import model_config_pb2 as mc

from . import feedback, outputs, validation
from .errors import CODE_LABEL
from .shadow import ShadowRunner

if TYPE_CHECKING:
    from fleetserve.predlog.log import PredictionLog
    from fleetserve.rollout.router import Router

EXTENSIONS = ("binary_tensor_data", "classification", "model_configuration", "model_repository", "statistics")


class DataPlane:
    """Everything a v2 server answers, independent of transport."""

    def __init__(
        self,
        manager: ModelManager,
        metrics: GatewayMetrics,
        *,
        admin_token: str | None = None,
        control_mode: str = "poll",
        router: Router | None = None,
        predlog: PredictionLog | None = None,
    ) -> None:
        self.manager = manager
        self.metrics = metrics
        self._token = admin_token
        self._control_mode = control_mode
        self._children: dict[tuple[str, ...], tuple[Any, Any]] = {}
        self._inflight: dict[str, Any] = {}
        self._rejected: dict[tuple[str, str, str], Any] = {}
        self.router = router
        self.predlog = predlog
        self.shadows = ShadowRunner(metrics)
        self._weights_seen: dict[str, int] = {}
        self._weights_set: dict[str, list[tuple[str, str, str]]] = {}
        self._live = True

    # --- health and metadata ---

    def live(self) -> bool:
        return self._live

    def ready(self) -> bool:
        return self._live and self.manager.all_ready()

    def model_ready(self, name: str, version: str = "") -> bool:
        """Whether the model (version) would serve a request now (unknown ones are not ready)."""
        return self.manager.is_ready(name, version)

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata("fleetserve", __version__, EXTENSIONS)

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        served = self.manager.resolve(name, version)
        return ModelMetadata(
            name=name,
            versions=tuple(sv.version_str for sv in self.manager.served_versions(name)),
            platform=served.platform,
            inputs=tuple(TensorMetadata(s.name, s.datatype, s.shape) for s in served.inputs),
            outputs=tuple(TensorMetadata(s.name, s.datatype, s.shape) for s in served.outputs),
        )

    def model_config(self, name: str, version: str = "") -> mc.ModelConfig:
        return self.manager.resolve(name, version).config

    def model_statistics(self, name: str = "", version: str = "") -> pb.ModelStatisticsResponse:
        """Triton's statistics extension, for one model (version) or all."""
        if name:
            served = [self.manager.resolve(name, version)] if version else self.manager.served_versions(name)
            if not served:
                self.manager.resolve(name)  # raises NOT_FOUND / UNAVAILABLE
        else:
            served = self.manager.all_served()
        response = pb.ModelStatisticsResponse()
        for sv in served:
            s = sv.stats
            entry = response.model_stats.add(
                name=sv.name,
                version=sv.version_str,
                last_inference=s.last_inference_ms,
                inference_count=s.inference_count,
                execution_count=s.execution_count,
            )
            for field in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
                d = getattr(s, field)
                getattr(entry.inference_stats, field).CopyFrom(pb.StatisticDuration(count=d.count, ns=d.ns))
            for size in sorted(s.batches):
                d = s.batches[size]
                b = entry.batch_stats.add(batch_size=size)
                b.compute_infer.CopyFrom(pb.StatisticDuration(count=d.count, ns=d.ns))
        return response

    # --- repository (control plane) ---

    def repository_index(self, ready_only: bool = False) -> list[IndexEntry]:
        return self.manager.index(ready_only)

    def _authorize(self, token: str | None) -> None:
        if self._token is None:
            return
        if not token:
            raise FleetError(
                ErrorCode.UNAUTHENTICATED, "this call needs 'Authorization: Bearer <admin token>'"
            )
        if not hmac.compare_digest(token.encode(), self._token.encode()):
            raise FleetError(ErrorCode.PERMISSION_DENIED, "the admin token is not valid")

    def _check_control(self, parameters: dict[str, Any]) -> None:
        if self._control_mode == "none":
            raise FleetError(
                ErrorCode.UNAVAILABLE, "model control mode is 'none': load and unload are not allowed"
            )
        if not isinstance(parameters, dict):
            raise FleetError(ErrorCode.INVALID_ARGUMENT, "load / unload parameters must be a map")
        unknown = {str(k) for k in parameters} - {"unload_dependents"}
        if unknown:
            raise FleetError(
                ErrorCode.INVALID_ARGUMENT,
                f"load / unload parameters not supported: {', '.join(sorted(unknown))}",
            )

    async def load_model(
        self, name: str, token: str | None, parameters: dict[str, Any] | None = None
    ) -> None:
        """Load or reload a model from the repository (all the versions its policy serves)."""
        self._authorize(token)
        self._check_control(parameters or {})
        entry = await self.manager.load(name)
        if not entry.serving:
            raise FleetError(
                ErrorCode.UNAVAILABLE, f"model '{name}' failed to load: {self.manager._reason(entry)}"
            )

    async def unload_model(
        self, name: str, token: str | None, parameters: dict[str, Any] | None = None
    ) -> None:
        """Unload a model; it stays unloaded until loaded again."""
        self._authorize(token)
        self._check_control(parameters or {})
        await self.manager.unload(name)

    # --- feedback ---

    async def feedback(self, body: Any, token: str | None) -> feedback.FeedbackResult:
        """Ground truth for logged predictions (control plane: the admin token when one is set)."""
        self._authorize(token)
        if self.predlog is None:
            raise FleetError(ErrorCode.UNAVAILABLE, "prediction logging is off: feedback has nothing to join")
        labels = feedback.parse(body)
        try:
            return await feedback.accept(labels, self.predlog, self._label_names)
        except PredlogUnavailable as exc:
            raise FleetError(
                ErrorCode.UNAVAILABLE, f"the prediction log is unavailable: {exc}", retry_after_s=5.0
            ) from None

    def _label_names(self, model: str) -> list[str] | None:
        for served in reversed(self.manager.served_versions(model)):
            if served.labels is not None:
                return served.labels
        return None

    # --- inference ---

    def _route(self, request: InferRequest) -> tuple[ServedVersion, str, tuple[int, ...]]:
        """The version that serves a request: explicit, else the rollout plan, else the highest."""
        name = request.model_name
        if self.router is None or request.model_version:
            route = "explicit" if request.model_version else "production"
            return self.manager.resolve(name, request.model_version), route, ()
        key = request.route_key or request.parameters.get("route_key")
        chosen = self.router.route(
            name, "", str(key) if key is not None else None, self.manager.serving_numbers(name)
        )
        served = self.manager.resolve(name, "" if chosen.version is None else str(chosen.version))
        self._publish_weights(name)
        return served, chosen.route, chosen.shadows

    def _publish_weights(self, name: str) -> None:
        plan = self.router.store.get(name) if self.router is not None else None
        revision = plan.revision if plan is not None else -1
        if self._weights_seen.get(name) == revision:
            return
        self._weights_seen[name] = revision
        gauge = self.metrics.route_weight
        for labels in self._weights_set.pop(name, []):
            gauge.remove(*labels)
        rows: list[tuple[str, str, str]] = []
        if plan is not None:
            weight = plan.canary_weight if plan.canary is not None else 0.0
            if plan.production is not None:
                rows.append((name, str(plan.production), "production"))
                gauge.labels(*rows[-1]).set(100.0 - weight)
            if plan.canary is not None:
                rows.append((name, str(plan.canary), "canary"))
                gauge.labels(*rows[-1]).set(weight)
            for v in plan.shadows:
                rows.append((name, str(v), "shadow"))
                gauge.labels(*rows[-1]).set(100.0)
        self._weights_set[name] = rows

    async def infer(self, request: InferRequest, protocol: str) -> InferResponse:
        """Validate, route, compute and build the response of one inference request."""
        started = time.perf_counter()
        served, route, shadow_versions = self._route(request)
        code: ErrorCode | None = None
        inflight = self._inflight.get(protocol)
        if inflight is None:
            inflight = self._inflight[protocol] = self.metrics.inflight.labels(protocol)
        inflight.inc()
        try:
            try:
                response, tensors, computed = await self._infer(served, request, started)
            except BatcherClosed:
                # the version was retired between routing and queueing: route again, once
                served, route, shadow_versions = self._route(request)
                response, tensors, computed = await self._infer(served, request, started)
            if shadow_versions:
                shadows = [self.manager.resolve(served.name, str(v)) for v in shadow_versions]
                self.shadows.schedule(shadows, tensors, computed, protocol)
            if self.predlog is not None:
                self._log(served, request, route, protocol, started, tensors, computed)
        except BatcherClosed:
            code = ErrorCode.UNAVAILABLE
            raise FleetError(
                code, f"model '{served.name}' version {served.version} is unloading", retry_after_s=1.0
            ) from None
        except FleetError as exc:
            code = exc.code
            raise
        except Exception as exc:
            code = ErrorCode.INTERNAL
            raise FleetError(
                ErrorCode.INTERNAL, f"model '{served.name}' version {served.version} failed: {exc}"
            ) from exc
        finally:
            inflight.dec()
            elapsed = time.perf_counter() - started
            served.stats.record_request(elapsed, code is None)
            counter, histogram = self._metric_children(served, protocol, route, code)
            counter.inc()
            histogram.observe(elapsed)
        return response

    async def _infer(
        self, served: ServedVersion, request: InferRequest, arrival: float
    ) -> tuple[InferResponse, dict[str, Any], dict[str, Any]]:
        tensors = validation.model_inputs(served, request)
        sched = served.scheduling
        level = sched.level(validation.priority(request.parameters))
        deadline = sched.deadline(arrival, validation.timeout_s(request.parameters), request.deadline)
        try:
            computed = await served.infer(tensors, level, deadline)
        except Rejected as exc:
            self._rejections(served, exc.reason).inc()
            code = ErrorCode.DEADLINE_EXCEEDED if exc.reason == "timeout" else ErrorCode.UNAVAILABLE
            retry = max(1.0, exc.retry_after_s or 0.0) if code is ErrorCode.UNAVAILABLE else None
            raise FleetError(
                code, f"model '{served.name}' version {served.version}: {exc}", retry_after_s=retry
            ) from None
        response = InferResponse(
            model_name=served.name,
            model_version=served.version_str,
            id=request.id,
            outputs=outputs.select(served, request, computed),
            parameters={"request_id": request.request_id},
        )
        return response, tensors, computed

    def _log(
        self,
        served: ServedVersion,
        request: InferRequest,
        route: str,
        protocol: str,
        started: float,
        tensors: dict[str, Any],
        computed: dict[str, Any],
    ) -> None:
        assert self.predlog is not None
        self.predlog.submit(
            LogEntry(
                request_id=request.request_id,
                time_ns=time.time_ns(),
                model=served.name,
                version=served.version_str,
                route=route,
                route_key=request.route_key,
                protocol=protocol,
                latency_s=time.perf_counter() - started,
                inputs=tensors,
                outputs=computed,
                batched=served.max_batch_size > 0,
                labels=served.labels,
                first_output=served.output_names[0],
            )
        )

    def _rejections(self, served: ServedVersion, reason: str) -> Any:
        key = (served.name, served.version_str, reason)
        found = self._rejected.get(key)
        if found is None:
            found = self._rejected[key] = self.metrics.rejected.labels(*key)
        return found

    def _metric_children(
        self, served: ServedVersion, protocol: str, route: str, code: ErrorCode | None
    ) -> tuple[Any, Any]:
        key = (served.name, served.version_str, protocol, route, CODE_LABEL[code])
        found = self._children.get(key)
        if found is None:
            found = (
                self.metrics.requests.labels(*key),
                self.metrics.request_duration.labels(served.name, served.version_str, protocol),
            )
            self._children[key] = found
        return found
