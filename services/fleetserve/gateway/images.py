"""The image route: an uploaded picture in, the model's top-k labels out.

`POST /v2/models/{model}[/versions/{v}]/image` takes a JPEG / PNG / WebP (raw body or
multipart/form-data), preprocesses it as the model's config.pbtxt declares (image_prep), and
asks the data plane for Triton's classification of the first (or the named) output. It is an
ordinary v2 request from there on: rollout routing, batching, statistics and the prediction log
apply as to any other.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from fleetserve.protocol.errors import invalid
from fleetserve.protocol.types import InferRequest, InputTensor, RequestedOutput
from fleetserve.repository.config import config_specs

from .dataplane import DataPlane
from .image_decode import DecodedImage, ImageLimits, Upload, decode, read_upload
from .image_prep import ImageSpec, image_spec, preprocess

DEFAULT_K = 5
MAX_K = 1000
# Below this many bytes an image is decoded on the event loop: a thread handoff costs more.
_INLINE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ImageQuery:
    """The route's query parameters: `k` (top-k, default 5) and `output` (default the first)."""

    k: int = DEFAULT_K
    output: str | None = None


def parse_query(query_string: bytes) -> ImageQuery:
    """Read `?k=..&output=..`; INVALID_ARGUMENT for anything else or a bad value."""
    try:
        values = parse_qs(query_string.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise invalid("the query string is not UTF-8") from None
    unknown = sorted(set(values) - {"k", "output"})
    if unknown:
        raise invalid(f"unknown query parameter(s) {', '.join(unknown)}; the image route takes k and output")
    k = DEFAULT_K
    if "k" in values:
        text = values["k"][-1]
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_K:
            raise invalid(f"k must be an integer from 1 to {MAX_K}, not {text!r}")
        k = int(text)
    output = values["output"][-1] if "output" in values else None
    return ImageQuery(k, output or None)


class ImageClassifier:
    """Answers the image route over one data plane."""

    def __init__(self, dataplane: DataPlane, limits: ImageLimits | None = None) -> None:
        self.dp = dataplane
        self.limits = limits or ImageLimits()

    @property
    def max_bytes(self) -> int:
        """The largest body the route reads (the image plus room for multipart framing)."""
        return self.limits.max_bytes + 64 * 1024

    async def classify(
        self,
        body: bytes,
        content_type: str,
        model: str,
        version: str,
        request_id: str,
        query: ImageQuery,
        route_key: str | None = None,
    ) -> dict[str, Any]:
        """Decode, preprocess, infer through the data plane, and answer the top-k as JSON-ready data."""
        started = time.perf_counter()
        config = self.dp.model_config(model, version)  # NOT_FOUND / UNAVAILABLE first
        spec = image_spec(config, config_specs(config)[0])
        output = query.output or (config.output[0].name if config.output else "")
        upload = read_upload(body, content_type)
        if len(upload.data) <= _INLINE_BYTES:
            decoded, tensor = self._prepare(upload, spec)
        else:
            decoded, tensor = await asyncio.to_thread(self._prepare, upload, spec)
        request = InferRequest(
            model_name=model,
            model_version=version,
            inputs=[InputTensor(spec.input_name, spec.datatype, tensor.shape, tensor)],
            outputs=[RequestedOutput(output, classification=query.k)],
            request_id=request_id,
            route_key=route_key,
        )
        inferred = time.perf_counter()
        response = await self.dp.infer(request, "rest")
        done = time.perf_counter()
        return {
            "model_name": response.model_name,
            "model_version": response.model_version,
            "request_id": request_id,
            "output": output,
            "top_k": top_k(response.outputs[0].data),
            "image": {"format": decoded.format, "width": decoded.width, "height": decoded.height},
            "time_ms": round((done - started) * 1000, 3),
            "infer_ms": round((done - inferred) * 1000, 3),
        }

    def _prepare(self, upload: Upload, spec: ImageSpec) -> tuple[DecodedImage, np.ndarray]:
        mode = "L" if spec.channels == 1 else "RGB"
        decoded = decode(upload, self.limits, mode=mode, size=(spec.width, spec.height))
        return decoded, preprocess(decoded.image, spec)


def top_k(classified: np.ndarray) -> list[dict[str, Any]]:
    """The classification extension's "score:index[:label]" strings as {label, index, score}."""
    rows: list[dict[str, Any]] = []
    for item in classified.reshape(-1):
        text = item.decode() if isinstance(item, bytes) else str(item)
        score, index, *label = text.split(":", 2)
        rows.append({"label": label[0] if label else index, "index": int(index), "score": float(score)})
    return rows
