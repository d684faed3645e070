"""Reading an uploaded image: raw body or multipart/form-data, checked and decoded by Pillow.

Every failure is a FleetError a client can act on: 400 for bytes that are not an image, 413 for
an image over the byte or pixel limit, 415 for a type other than JPEG, PNG or WebP.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from fleetserve.protocol.errors import ErrorCode, FleetError, invalid

from . import multipart

# Declared types the route takes; octet-stream (or none) is sniffed.
MEDIA_TYPES = {"image/jpeg": "JPEG", "image/jpg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
FORMATS = ("JPEG", "PNG", "WEBP")
_SNIFFED = ("", "application/octet-stream")
# Form fields that carry the image when the part has no file name.
_FIELDS = ("image", "file")


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """The image route's limits: encoded bytes and decoded pixels (width x height)."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000


@dataclass(frozen=True, slots=True)
class Upload:
    """The image bytes of a request and the media type they were declared as."""

    data: bytes
    media_type: str
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """A decoded image with the format and size it had on the wire."""

    image: Image.Image
    format: str
    width: int
    height: int


def unsupported(media_type: str) -> FleetError:
    """The 415 for a media type the route does not take."""
    return FleetError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        f"Content-Type {media_type} is not supported here: send image/jpeg, image/png or image/webp "
        "as the body, or as a file field of multipart/form-data",
    )


def read_upload(body: bytes, content_type: str) -> Upload:
    """The image of a request body, raw or in multipart/form-data (the first file field, or a
    field named 'image' or 'file')."""
    kind, _ = multipart.media_type(content_type)
    if kind == "multipart/form-data":
        parts = multipart.parse_form(body, content_type)
        chosen = next((p for p in parts if p.filename is not None), None)
        chosen = chosen or next((p for p in parts if p.name in _FIELDS), None)
        if chosen is None:
            names = ", ".join(p.name for p in parts) or "none"
            raise invalid(f"multipart body has no file field (fields: {names}); send the image as 'image'")
        upload = Upload(chosen.data, chosen.content_type, chosen.filename)
    else:
        upload = Upload(body, kind)
    if upload.media_type not in MEDIA_TYPES and upload.media_type not in _SNIFFED:
        raise unsupported(upload.media_type)
    if not upload.data:
        raise invalid("the request carries no image (the image is empty)")
    return upload


def decode(
    upload: Upload, limits: ImageLimits, *, mode: str | None = None, size: tuple[int, int] | None = None
) -> DecodedImage:
    """Decode an upload, checking type and pixel count before the pixels are read.

    `mode` and `size` (width, height) are what the image will be turned into; a JPEG is then
    decoded at the smallest scale that still covers `size` (Pillow's draft mode).
    """
    if len(upload.data) > limits.max_bytes:
        raise too_large(f"image of {len(upload.data)} bytes is over the limit of {limits.max_bytes} bytes")
    try:
        image = Image.open(io.BytesIO(upload.data))
    except Image.DecompressionBombError as exc:
        raise too_large(f"image has too many pixels: {exc}") from None
    except UnidentifiedImageError:
        raise invalid("the body is not a decodable image (JPEG, PNG or WebP expected)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise invalid(f"the image cannot be decoded: {exc}") from None
    fmt = image.format or "unknown"
    if fmt not in FORMATS:
        raise FleetError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"image format {fmt} is not supported here: send JPEG, PNG or WebP",
        )
    width, height = image.size
    if width * height > limits.max_pixels:
        raise too_large(
            f"image of {width}x{height} = {width * height} pixels is over the limit of {limits.max_pixels}"
        )
    if fmt == "JPEG" and mode is not None and size is not None:
        image.draft(mode, size)
    try:
        image.load()
        upright: Image.Image = ImageOps.exif_transpose(image) or image
    except (OSError, ValueError, SyntaxError) as exc:
        raise invalid(f"the {fmt} image cannot be decoded: {exc}") from None
    return DecodedImage(upright, fmt, width, height)


def too_large(message: str) -> FleetError:
    """The 413 of the image route."""
    return FleetError(ErrorCode.PAYLOAD_TOO_LARGE, message)
