"""Reading uploads for the image route: raw and multipart bodies, types, limits, bad bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fleetserve.gateway import multipart
from fleetserve.gateway.image_decode import ImageLimits, Upload, decode, read_upload
from fleetserve.protocol.errors import ErrorCode, FleetError


def _encoded(fmt: str, size: tuple[int, int] = (20, 10), mode: str = "RGB", **save: object) -> bytes:
    rng = np.random.default_rng(1)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8).squeeze()
    out = io.BytesIO()
    Image.fromarray(pixels, mode).save(out, fmt, **save)
    return out.getvalue()


def _form(parts: list[tuple[str, str | None, str, bytes]], boundary: str = "----b0undary") -> bytes:
    body = b""
    for name, filename, ctype, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        body += f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


ZZ = "multipart/form-data; boundary=zz"
FORM = "multipart/form-data; boundary=----b0undary"


def _code(exc: pytest.ExceptionInfo[FleetError]) -> ErrorCode:
    return exc.value.code


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_each_supported_format_decodes(fmt: str) -> None:
    data = _encoded(fmt)
    decoded = decode(read_upload(data, f"image/{fmt.lower()}"), ImageLimits())
    assert (decoded.format, decoded.width, decoded.height) == (fmt, 20, 10)
    assert decoded.image.size == (20, 10)


def test_octet_stream_or_no_type_is_sniffed() -> None:
    data = _encoded("PNG")
    assert decode(read_upload(data, ""), ImageLimits()).format == "PNG"
    assert decode(read_upload(data, "application/octet-stream"), ImageLimits()).format == "PNG"


def test_multipart_file_field_with_binary_bytes_is_taken_intact() -> None:
    png = _encoded("PNG", (33, 7))
    payload = png + b"\r\n--not-the-boundary\r\n"  # bytes that look like framing stay data
    body = _form([("note", None, "text/plain", b"hello"), ("upload", "x.png", "image/png", payload)])
    upload = read_upload(body, 'multipart/form-data; boundary="----b0undary"')
    assert upload.data == payload and upload.media_type == "image/png" and upload.filename == "x.png"
    parts = multipart.parse_form(body, "multipart/form-data; boundary=----b0undary")
    assert [(p.name, p.filename, p.content_type) for p in parts] == [
        ("note", None, "text/plain"),
        ("upload", "x.png", "image/png"),
    ]


def test_multipart_field_named_image_without_filename() -> None:
    png = _encoded("PNG")
    body = _form([("image", None, "image/png", png)])
    assert read_upload(body, "multipart/form-data; boundary=----b0undary").data == png


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"x", "multipart/form-data", "needs a boundary"),
        (b"no boundary here", ZZ, "does not start with its boundary"),
        (b"--zz\r\nContent-Disposition: form-data; name=a\r\n\r\nabc", ZZ, "ends before"),
        (b"--zz\r\nX: y\r\n\r\nabc\r\n--zz--", ZZ, "needs 'Content-Disposition"),
        (_form([("note", None, "text/plain", b"hi")]), FORM, "no file field"),
    ],
)
def test_malformed_multipart_is_400(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(FleetError) as exc:
        read_upload(body, content_type)
    assert _code(exc) is ErrorCode.INVALID_ARGUMENT and message in exc.value.message


@pytest.mark.parametrize("content_type", ["image/gif", "text/plain", "application/json", "image/svg+xml"])
def test_unsupported_declared_type_is_415(content_type: str) -> None:
    with pytest.raises(FleetError) as exc:
        read_upload(_encoded("PNG"), content_type)
    assert _code(exc) is ErrorCode.UNSUPPORTED_MEDIA_TYPE and content_type in exc.value.message


def test_unsupported_file_part_type_is_415() -> None:
    body = _form([("image", "a.gif", "image/gif", _encoded("GIF", mode="L"))])
    with pytest.raises(FleetError) as exc:
        read_upload(body, "multipart/form-data; boundary=----b0undary")
    assert _code(exc) is ErrorCode.UNSUPPORTED_MEDIA_TYPE


def test_a_real_gif_sent_as_octet_stream_is_415() -> None:
    upload = read_upload(_encoded("GIF", mode="L"), "application/octet-stream")
    with pytest.raises(FleetError) as exc:
        decode(upload, ImageLimits())
    assert _code(exc) is ErrorCode.UNSUPPORTED_MEDIA_TYPE and "GIF" in exc.value.message


@pytest.mark.parametrize("data", [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_undecodable_bytes_are_400(data: bytes) -> None:
    with pytest.raises(FleetError) as exc:
        decode(read_upload(data, "image/png"), ImageLimits())
    assert _code(exc) is ErrorCode.INVALID_ARGUMENT


def test_truncated_image_is_400() -> None:
    data = _encoded("JPEG", (200, 200))
    with pytest.raises(FleetError) as exc:
        decode(read_upload(data[: len(data) // 2], "image/jpeg"), ImageLimits())
    assert _code(exc) is ErrorCode.INVALID_ARGUMENT and "cannot be decoded" in exc.value.message


def test_empty_image_is_400() -> None:
    with pytest.raises(FleetError) as exc:
        read_upload(b"", "image/png")
    assert _code(exc) is ErrorCode.INVALID_ARGUMENT and "no image" in exc.value.message


def test_over_the_byte_limit_is_413() -> None:
    data = _encoded("PNG", (64, 64))
    with pytest.raises(FleetError) as exc:
        decode(Upload(data, "image/png"), ImageLimits(max_bytes=len(data) - 1))
    assert _code(exc) is ErrorCode.PAYLOAD_TOO_LARGE and f"{len(data)} bytes" in exc.value.message
    assert decode(Upload(data, "image/png"), ImageLimits(max_bytes=len(data))).width == 64


def test_over_the_pixel_limit_is_413_before_decoding() -> None:
    data = _encoded("PNG", (300, 200), mode="L")
    with pytest.raises(FleetError) as exc:
        decode(Upload(data, "image/png"), ImageLimits(max_pixels=300 * 200 - 1))
    assert _code(exc) is ErrorCode.PAYLOAD_TOO_LARGE and "300x200 = 60000 pixels" in exc.value.message


def test_jpeg_draft_decodes_at_a_smaller_scale_that_still_covers_the_target() -> None:
    data = _encoded("JPEG", (640, 480))
    decoded = decode(Upload(data, "image/jpeg"), ImageLimits(), mode="L", size=(8, 8))
    assert (decoded.width, decoded.height) == (640, 480)  # as it was sent
    assert 8 <= decoded.image.size[0] < 640 and 8 <= decoded.image.size[1] < 480


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: width and height swap
    data = _encoded("JPEG", (40, 20), exif=exif.tobytes())
    decoded = decode(Upload(data, "image/jpeg"), ImageLimits())
    assert decoded.image.size == (20, 40)


def test_media_type_parameters_with_quotes() -> None:
    kind, params = multipart.media_type('form-data; name="a;b"; filename="c \\"d\\".png"')
    assert kind == "form-data" and params == {"name": "a;b", "filename": 'c "d".png'}
