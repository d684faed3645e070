"""The image route on a real server: scikit-learn's sample photos and its digits data set as
PNGs, a colour model that checks channel order and layout, rollout routing, statistics, metrics
and the prediction log (the route goes through the data plane), bad images, and CORS."""

from __future__ import annotations

import http.client
import io
import json
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits, load_sample_images

from fleetserve.rollout.plan import RolloutPlan
from tests.support import models
from tests.support.image_models import COLOURS, colours_model, digits_without_slo
from tests.support.server import ServerProcess

PAGE_ORIGIN = "http://page.test:8080"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("image_api") / "models"
    root.mkdir()
    digits_without_slo(root)
    models.double_model(root)
    colours_model(root)
    # every request that names no version goes to the canary, version 2
    plan = RolloutPlan(model="colours", production=1, canary=2, canary_weight=100.0)
    (root / "colours" / "rollout.json").write_text(plan.model_dump_json())
    return root


@pytest.fixture(scope="module")
def srv(repo: Path) -> Iterator[ServerProcess]:
    with ServerProcess(repo, env={"FLEETSERVE_CORS_ORIGINS": f"{PAGE_ORIGIN},http://other.test"}) as proc:
        yield proc


def call(
    srv: ServerProcess, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    """One request on a fresh loopback connection: status, body and (lower-case) headers."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def post_image(
    srv: ServerProcess, path: str, data: bytes, content_type: str = "image/png", **headers: str
) -> tuple[int, Any]:
    status, body, _ = call(srv, "POST", path, data, {"Content-Type": content_type, **headers})
    return status, json.loads(body)


def encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def multipart(data: bytes, filename: str, content_type: str) -> tuple[bytes, str]:
    boundary = "----fleetserveTestBoundary7MA4YWxkTrZu0gW"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def assert_top_k(answer: dict[str, Any], k: int, labels: set[str]) -> None:
    rows = answer["top_k"]
    assert len(rows) == k, answer
    assert {r["label"] for r in rows} <= labels, rows
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True), rows
    assert all(0.0 <= s <= 1.0 for s in scores), rows
    assert answer["time_ms"] > 0 and answer["time_ms"] >= answer["infer_ms"] >= 0, answer
    assert len(answer["request_id"]) == 32, answer


# --- answers ---


def test_sample_photos_get_a_top_k_in_every_format(srv: ServerProcess) -> None:
    sample = load_sample_images()
    digits = {str(d) for d in range(10)}
    for path, pixels in zip(sample.filenames, sample.images, strict=True):
        jpeg = Path(path).read_bytes()  # the file as scikit-learn ships it
        photo = Image.fromarray(pixels, "RGB")
        bodies = [
            ("image/jpeg", jpeg),
            ("image/png", encode(photo, "PNG")),
            ("image/webp", encode(photo, "WEBP")),
        ]
        for content_type, data in bodies:
            status, answer = post_image(srv, "/v2/models/digits/image?k=3", data, content_type)
            assert status == 200, answer
            assert_top_k(answer, 3, digits)
            assert answer["model_name"] == "digits" and answer["model_version"] == "1", answer
            assert answer["image"] == {"format": content_type[6:].upper(), "width": 640, "height": 427}
            status, answer = post_image(srv, "/v2/models/colours/image", data, content_type)
            assert status == 200, answer
            assert_top_k(answer, 3, set(COLOURS))  # k is capped at the number of classes


def test_digits_from_the_data_set_as_upscaled_pngs_get_their_label(srv: ServerProcess) -> None:
    digits = load_digits()
    picks = np.arange(0, len(digits.images), 18)[:100]

    def classify(i: int) -> tuple[int, str]:
        ink = digits.images[i] / 16.0  # 0..1, 1 = full ink
        paper = Image.fromarray(np.rint(255 * (1 - ink)).astype(np.uint8), "L")  # dark ink on white
        png = encode(paper.resize((64, 64), Image.Resampling.NEAREST), "PNG")
        status, answer = post_image(srv, "/v2/models/digits/image?k=1", png)
        assert status == 200, answer
        return int(digits.target[i]), answer["top_k"][0]["label"]

    with ThreadPoolExecutor(8) as pool:  # concurrent, so the batcher merges some of them
        results = list(pool.map(classify, picks))
    right = sum(str(label) == got for label, got in results)
    assert right >= 0.9 * len(results), f"{right} of {len(results)} right: {results}"


def test_channel_order_and_layout_reach_the_model(srv: ServerProcess) -> None:
    for index, colour in enumerate(COLOURS):
        rgb = np.zeros((40, 30, 3), np.uint8)
        rgb[..., index] = 230
        image = Image.fromarray(rgb, "RGB")
        status, answer = post_image(srv, "/v2/models/colours/image?k=1", encode(image, "PNG"))
        assert status == 200 and answer["top_k"][0]["label"] == colour, answer
        body, ctype = multipart(encode(image, "JPEG"), f"{colour}.jpg", "image/jpeg")
        status, answer = post_image(srv, "/v2/models/colours/image?k=2", body, ctype)
        assert status == 200 and answer["top_k"][0]["label"] == colour, answer
        assert answer["top_k"][0]["index"] == index and len(answer["top_k"]) == 2


def test_the_rollout_plan_routes_and_an_explicit_version_wins(srv: ServerProcess) -> None:
    red = encode(Image.new("RGB", (16, 16), (255, 0, 0)), "PNG")
    status, answer = post_image(srv, "/v2/models/colours/image", red)
    assert status == 200 and answer["model_version"] == "2", answer  # the canary at 100 %
    status, answer = post_image(srv, "/v2/models/colours/versions/1/image", red)
    assert status == 200 and answer["model_version"] == "1", answer
    status, body, _ = call(srv, "GET", "/v2/models/colours/rollout")
    view = json.loads(body)
    assert status == 200 and view["plan"] is True, view
    assert (view["production"], view["canary"], view["canary_weight"]) == (1, 2, 100.0), view
    assert view["serving"] == [1, 2], view
    status, body, _ = call(srv, "GET", "/v2/models/digits/rollout")
    view = json.loads(body)
    assert status == 200 and (view["plan"], view["production"], view["canary"]) == (False, 1, None), view


def _stats_count(srv: ServerProcess, model: str, version: str) -> int:
    _, body, _ = call(srv, "GET", f"/v2/models/{model}/versions/{version}/stats")
    stats = json.loads(body)["model_stats"][0]
    return int(stats["inference_stats"]["success"]["count"])


def _metric(srv: ServerProcess, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_the_route_goes_through_the_data_plane(srv: ServerProcess) -> None:
    green = encode(Image.new("RGB", (16, 16), (0, 200, 0)), "PNG")
    count = _stats_count(srv, "colours", "2")
    labels = {"model": "colours", "version": "2", "route": "canary", "code": "ok"}
    metric = _metric(srv, "fleetserve_requests_total", **labels)
    ids = []
    for _ in range(3):
        status, answer = post_image(srv, "/v2/models/colours/image", green)
        assert status == 200, answer
        ids.append(answer["request_id"])
    assert _stats_count(srv, "colours", "2") == count + 3
    after = _metric(srv, "fleetserve_requests_total", **labels)
    assert after == metric + 3
    # the prediction log has the requests: feedback for their ids joins (the log is written off
    # the request path, so it may take a moment)
    feedback = json.dumps([{"request_id": rid, "label": "green"} for rid in ids]).encode()
    deadline = time.monotonic() + 15
    while True:
        status, body, _ = call(srv, "POST", "/v2/feedback", feedback, {"Content-Type": "application/json"})
        result = json.loads(body)
        if (status == 200 and result["accepted"] == 3) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200 and result["accepted"] == 3 and not result["unknown"], result


def test_the_client_request_id_is_kept(srv: ServerProcess) -> None:
    rid = "0123456789abcdef0123456789abcdef"
    red = encode(Image.new("RGB", (16, 16), (255, 0, 0)), "PNG")
    status, body, headers = call(srv, "POST", "/v2/models/colours/image", red, {"X-Request-ID": rid})
    assert status == 200 and json.loads(body)["request_id"] == rid and headers["x-request-id"] == rid


# --- errors ---


def error_of(status: int, body: bytes) -> str:
    parsed = json.loads(body)
    assert isinstance(parsed.get("error"), str) and parsed["error"], parsed
    return parsed["error"]


def test_bad_images_get_400_413_415_and_the_server_keeps_serving(srv: ServerProcess) -> None:
    png = encode(Image.new("L", (28, 28), 255), "PNG")
    gif = encode(Image.new("L", (28, 28), 255), "GIF")
    bomb = encode(Image.new("L", (8000, 6000), 255), "PNG")  # 48 megapixels, a few kB
    assert len(bomb) < 200_000
    cases = [
        ("image/png", b"this is not an image", 400, "not a decodable image"),
        (
            "image/jpeg",
            encode(Image.new("RGB", (300, 300), (9, 9, 9)), "JPEG")[:300],
            400,
            "cannot be decoded",
        ),
        ("image/png", b"", 400, "no image"),
        ("image/png", bomb, 413, "8000x6000 = 48000000 pixels"),
        ("image/gif", gif, 415, "image/gif is not supported"),
        ("application/octet-stream", gif, 415, "format GIF is not supported"),
        ("text/plain", png, 415, "text/plain is not supported"),
        ("multipart/form-data", png, 400, "boundary"),
    ]
    for content_type, data, want, words in cases:
        status, body, _ = call(srv, "POST", "/v2/models/digits/image", data, {"Content-Type": content_type})
        assert status == want and words in error_of(status, body), (content_type, status, body)
    body, ctype = multipart(gif, "a.gif", "image/gif")
    status, answer, _ = call(srv, "POST", "/v2/models/digits/image", body, {"Content-Type": ctype})
    assert status == 415 and "image/gif" in error_of(status, answer)
    # a body over the byte limit is refused from its Content-Length, before it is read
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=30)
    try:
        conn.putrequest("POST", "/v2/models/digits/image")
        conn.putheader("Content-Type", "image/png")
        conn.putheader("Content-Length", str(64 * 1024 * 1024))
        conn.endheaders()
        response = conn.getresponse()
        status, answer = response.status, response.read()
    finally:
        conn.close()
    assert status == 413 and "over the limit" in error_of(status, answer)
    status, answer = post_image(srv, "/v2/models/digits/image", png)
    assert status == 200 and len(answer["top_k"]) == 5, answer
    assert call(srv, "GET", "/v2/health/live")[0] == 200


def test_wrong_model_version_method_and_query(srv: ServerProcess) -> None:
    png = encode(Image.new("L", (28, 28), 255), "PNG")
    cases = [
        ("POST", "/v2/models/nope/image", 404, "nope"),
        ("POST", "/v2/models/digits/versions/9/image", 404, "9"),
        ("POST", "/v2/models/double/image", 400, "the image route needs three"),
        ("POST", "/v2/models/digits/image?k=0", 400, "k must be an integer"),
        ("POST", "/v2/models/digits/image?output=logits", 400, "no output 'logits'"),
        ("GET", "/v2/models/digits/image", 405, "use POST"),
        ("GET", "/v2/models/nope/rollout", 404, "nope"),
    ]
    for method, path, want, words in cases:
        status, body, _ = call(srv, method, path, png, {"Content-Type": "image/png"})
        assert status == want and words in error_of(status, body), (path, status, body)


# --- CORS ---


def test_cors_preflight_for_an_allowed_origin(srv: ServerProcess) -> None:
    status, body, headers = call(
        srv,
        "OPTIONS",
        "/v2/models/digits/image",
        headers={
            "Origin": PAGE_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-request-id",
        },
    )
    assert status == 204 and body == b"", (status, body)
    assert headers["access-control-allow-origin"] == PAGE_ORIGIN
    assert "POST" in headers["access-control-allow-methods"]
    assert "content-type" in headers["access-control-allow-headers"]
    png = encode(Image.new("L", (28, 28), 255), "PNG")
    status, body, headers = call(
        srv, "POST", "/v2/models/digits/image", png, {"Content-Type": "image/png", "Origin": PAGE_ORIGIN}
    )
    assert status == 200 and headers["access-control-allow-origin"] == PAGE_ORIGIN
    assert "x-request-id" in headers["access-control-expose-headers"]
    status, body, headers = call(srv, "GET", "/v2/models/nope", headers={"Origin": PAGE_ORIGIN})
    assert status == 404 and headers["access-control-allow-origin"] == PAGE_ORIGIN  # errors readable too


def test_cors_preflight_for_another_origin_is_denied(srv: ServerProcess) -> None:
    preflight = {"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"}
    status, body, headers = call(srv, "OPTIONS", "/v2/models/digits/image", headers=preflight)
    assert status == 403 and "http://evil.test is not allowed" in error_of(status, body)
    assert "access-control-allow-origin" not in headers
    status, _, headers = call(srv, "GET", "/v2/health/live", headers={"Origin": "http://evil.test"})
    assert status == 200 and "access-control-allow-origin" not in headers
    status, body, _ = call(
        srv, "OPTIONS", "/v2", headers={"Origin": PAGE_ORIGIN, "Access-Control-Request-Method": "DELETE"}
    )
    assert status == 403 and "DELETE" in error_of(status, body)


def test_cors_is_off_by_default(repo: Path) -> None:
    with ServerProcess(repo, "--model-control-mode", "explicit", "--load-model", "digits") as plain:
        preflight = {"Origin": PAGE_ORIGIN, "Access-Control-Request-Method": "POST"}
        status, body, headers = call(plain, "OPTIONS", "/v2/models/digits/image", headers=preflight)
        assert status == 403 and "FLEETSERVE_CORS_ORIGINS" in error_of(status, body)
        status, _, headers = call(plain, "GET", "/v2/health/ready", headers={"Origin": PAGE_ORIGIN})
        assert status == 200 and not any(k.startswith("access-control-") for k in headers)
