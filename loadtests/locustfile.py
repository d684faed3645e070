"""Locust users for a fleetserve cluster (through nginx, or a single replica).

- ``RestUser`` (tag ``rest``): v2 REST infer with binary tensors (the request body built by the
  unmodified ``tritonclient.http``, sent by Locust's HTTP client, the answer decoded by
  tritonclient and checked).
- ``GrpcUser`` (tag ``grpc``): ``tritonclient.grpc`` infer, each call reported as a Locust
  request event (request type ``grpc``).
- ``ImageUser`` (tag ``image``): PNG uploads to ``POST /v2/models/digits/image``; a server
  without that route fails these requests: leave it out with ``--exclude-tags image``.

Usage (``make loadtest`` runs this against ``make run``'s cluster)::

    locust -f loadtests/locustfile.py --headless -u 12 -r 12 -t 60s \\
        --host http://127.0.0.1:8000 [--grpc-host 127.0.0.1:8001] [--model digits] \\
        --html loadtest-report.html

``--grpc-host`` defaults to the host of ``--host`` with its port + 1 (8000 -> 8001, as CONTRACT.md).
"""

from __future__ import annotations

import io
import random
import time
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import grpc.experimental.gevent as grpc_gevent
import numpy as np

# grpc's own threads must cooperate with gevent, which Locust runs its users on; before any channel.
grpc_gevent.init_gevent()

import tritonclient.grpc as tgrpc  # noqa: E402
import tritonclient.http as thttp  # noqa: E402
from locust import FastHttpUser, User, between, events, tag, task  # noqa: E402
from locust.env import Environment  # noqa: E402

BATCH_SIZES = (1, 1, 1, 4, 8)


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--grpc-host", default="", help="gRPC host:port (default: --host's port + 1)")
    parser.add_argument("--model", default="digits", help="model to infer (input image [N,1,8,8] FP32)")


@events.init.add_listener
def _drop_users_of_excluded_tags(environment: Environment, **_: Any) -> None:
    """Locust filters a user's tasks by --tags / --exclude-tags but still spawns the user, idle:
    a user whose one tag is left out is not spawned at all, so the others get its share."""
    options = environment.parsed_options
    wanted = set(getattr(options, "tags", None) or []) if options is not None else set()
    excluded = set(getattr(options, "exclude_tags", None) or []) if options is not None else set()
    kept = [
        u
        for u in environment.user_classes
        if getattr(u, "tag_name", None) is None
        or (u.tag_name not in excluded and (not wanted or u.tag_name in wanted))
    ]
    environment.user_classes[:] = kept


@lru_cache(maxsize=1)
def _digits() -> np.ndarray:
    """scikit-learn's bundled 8x8 digits (no download), scaled to [0, 1] as the model expects."""
    from sklearn.datasets import load_digits

    return (load_digits().images / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)


@lru_cache(maxsize=1)
def _pngs() -> list[bytes]:
    """A few of the digits as 32x32 PNGs, dark on light as a photographed digit would be."""
    from PIL import Image

    pictures = []
    for image in _digits()[:16]:
        pixels = (255 - image[0] * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels, mode="L").resize((32, 32)).save(buf, format="PNG")
        pictures.append(buf.getvalue())
    return pictures


def _batch(rng: random.Random) -> np.ndarray:
    images = _digits()
    n = rng.choice(BATCH_SIZES)
    start = rng.randrange(len(images) - n)
    return images[start : start + n]


def grpc_target(environment: Environment) -> str:
    """--grpc-host, else --host's host with its port + 1."""
    options = environment.parsed_options
    given = getattr(options, "grpc_host", "") if options is not None else ""
    if given:
        return str(given)
    url = urlsplit(environment.host or "http://127.0.0.1:8000")
    return f"{url.hostname}:{(url.port or 80) + 1}"


def model_name(environment: Environment) -> str:
    options = environment.parsed_options
    return str(getattr(options, "model", "digits") if options is not None else "digits")


class RestUser(FastHttpUser):
    """v2 REST with the binary tensor extension (tritonclient's default encoding)."""

    weight = 3
    wait_time = between(0.0, 0.01)
    tag_name = "rest"

    def on_start(self) -> None:
        self.rng = random.Random()
        self.model = model_name(self.environment)

    @tag("rest")
    @task
    def infer(self) -> None:
        batch = _batch(self.rng)
        inp = thttp.InferInput("image", list(batch.shape), "FP32")
        inp.set_data_from_numpy(batch, binary_data=True)
        out = thttp.InferRequestedOutput("probabilities", binary_data=True)
        body, json_size = thttp.InferenceServerClient.generate_request_body([inp], outputs=[out])
        headers = {"Content-Type": "application/octet-stream"}
        if json_size is not None:
            headers["Inference-Header-Content-Length"] = str(json_size)
        with self.client.post(
            f"/v2/models/{self.model}/infer",
            data=body,
            headers=headers,
            name="rest infer",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            length = response.headers.get("Inference-Header-Content-Length")
            try:
                result = thttp.InferResult.from_response_body(
                    response.content, header_length=int(length) if length else None
                )
                probabilities = result.as_numpy("probabilities")
            except Exception as exc:  # any decoding failure is a failed request
                response.failure(f"undecodable answer: {exc}")
                return
            if probabilities is None or probabilities.shape != (len(batch), 10):
                response.failure(f"probabilities of shape {getattr(probabilities, 'shape', None)}")


class GrpcUser(User):
    """tritonclient.grpc infer; each call fires a Locust request event."""

    weight = 3
    wait_time = between(0.0, 0.01)
    tag_name = "grpc"

    def on_start(self) -> None:
        self.rng = random.Random()
        self.model = model_name(self.environment)
        self.grpc = tgrpc.InferenceServerClient(grpc_target(self.environment))

    def on_stop(self) -> None:
        self.grpc.close()

    @tag("grpc")
    @task
    def infer(self) -> None:
        batch = _batch(self.rng)
        inp = tgrpc.InferInput("image", list(batch.shape), "FP32")
        inp.set_data_from_numpy(batch)
        start = time.perf_counter()
        exception: Exception | None = None
        length = 0
        try:
            result = self.grpc.infer(self.model, [inp], client_timeout=30)
            probabilities = result.as_numpy("probabilities")
            if probabilities is None or probabilities.shape != (len(batch), 10):
                raise ValueError(f"probabilities of shape {getattr(probabilities, 'shape', None)}")
            length = probabilities.nbytes
        except Exception as exc:  # reported to Locust as this request's failure, readably
            exception = RuntimeError(f"{type(exc).__name__}: {exc}")
        self.environment.events.request.fire(
            request_type="grpc",
            name="grpc infer",
            response_time=(time.perf_counter() - start) * 1000,
            response_length=length,
            exception=exception,
            context={},
        )


class ImageUser(FastHttpUser):
    """PNG uploads to the image route; its answer must hold the top-k classes."""

    weight = 1
    wait_time = between(0.0, 0.05)
    tag_name = "image"

    def on_start(self) -> None:
        self.rng = random.Random()
        self.model = model_name(self.environment)

    @tag("image")
    @task
    def upload(self) -> None:
        picture = self.rng.choice(_pngs())
        with self.client.post(
            f"/v2/models/{self.model}/image?k=3",
            data=picture,
            headers={"Content-Type": "image/png"},
            name="image upload",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            try:
                top = response.json()["top_k"]
            except (ValueError, KeyError, TypeError) as exc:
                response.failure(f"no top_k in the answer: {exc}")
                return
            if len(top) != 3:
                response.failure(f"{len(top)} classes instead of 3")
