"""Image preprocessing as a model's config.pbtxt declares it (the `image_*` parameters).

The keys (shared/CONTRACT.md): `image_size` ("H,W"), `image_channels` (1 or 3), `image_layout`
(NCHW or NHWC), `image_scale`, `image_mean` and `image_std` (per channel, comma-separated),
`image_invert` ("true" / "false") and `image_resize` (bilinear or nearest). What a config leaves
out is taken from the input's dims where they are fixed. The tensor is computed as
``((255 - p if invert else p) * scale - mean) / std`` per channel, in the input's datatype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from fleetserve.protocol import datatypes
from fleetserve.protocol.errors import invalid
from fleetserve.protocol.types import TensorMetadata
from fleetserve.wire import model_config_pb2 as mc

_RESIZE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
_LAYOUTS = ("NCHW", "NHWC")
_NUMERIC = {"FP16", "FP32", "FP64", "BF16", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64"}


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """How an image becomes a model's input tensor."""

    input_name: str
    datatype: str
    height: int
    width: int
    channels: int
    layout: str  # NCHW or NHWC (N only when the model batches)
    batched: bool
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    invert: bool = False
    resize: str = "bilinear"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The v2 shape of the tensor one image becomes."""
        c, h, w = self.channels, self.height, self.width
        chw = (c, h, w) if self.layout == "NCHW" else (h, w, c)
        return (1, *chw) if self.batched else chw


def image_spec(config: mc.ModelConfig, inputs: list[TensorMetadata]) -> ImageSpec:
    """The preprocessing a model declares, checked against its (single) input.

    Raises INVALID_ARGUMENT naming the model and what is missing or inconsistent.
    """
    model = config.name
    if len(inputs) != 1:
        names = ", ".join(s.name for s in inputs)
        raise invalid(f"the image route needs a model with one input; '{model}' has {len(inputs)} ({names})")
    spec = inputs[0]
    if spec.datatype not in _NUMERIC:
        raise invalid(f"model '{model}' input '{spec.name}' is {spec.datatype}, not a numeric image tensor")
    params = {k: v.string_value.strip() for k, v in config.parameters.items()}
    batched = config.max_batch_size > 0
    dims = spec.shape[1:] if batched else spec.shape
    if len(dims) != 3:
        raise invalid(
            f"model '{model}' input '{spec.name}' has dims {list(dims)}: the image route needs "
            "three (channels, height, width in the order image_layout names)"
        )
    layout = params.get("image_layout", "").upper() or _guess_layout(dims)
    if layout not in _LAYOUTS:
        raise invalid(f"model '{model}': image_layout must be NCHW or NHWC, not {layout!r}")
    c_dim, h_dim, w_dim = (dims[0], dims[1], dims[2]) if layout == "NCHW" else (dims[2], dims[0], dims[1])
    height, width = _size(model, params.get("image_size"), h_dim, w_dim)
    channels = c_dim
    if "image_channels" in params:
        channels = _int(model, "image_channels", params["image_channels"])
    if channels not in (1, 3):
        raise invalid(f"model '{model}': image_channels must be 1 or 3, not {channels}")
    checks = (("channels", c_dim, channels), ("height", h_dim, height), ("width", w_dim, width))
    for name, declared, wanted in checks:
        if declared >= 0 and declared != wanted:
            raise invalid(f"model '{model}': image {name} {wanted} does not match input dims {list(dims)}")
    resize = params.get("image_resize", "bilinear").lower()
    if resize not in _RESIZE:
        raise invalid(f"model '{model}': image_resize must be bilinear or nearest, not {resize!r}")
    mean = _floats(model, "image_mean", params.get("image_mean"), channels, 0.0)
    std = _floats(model, "image_std", params.get("image_std"), channels, 1.0)
    if any(s == 0 for s in std):
        raise invalid(f"model '{model}': image_std must not be 0")
    invert = params.get("image_invert", "false").lower()
    if invert not in ("true", "false"):
        raise invalid(f"model '{model}': image_invert must be true or false, not {invert!r}")
    return ImageSpec(
        input_name=spec.name,
        datatype=spec.datatype,
        height=height,
        width=width,
        channels=channels,
        layout=layout,
        batched=batched,
        scale=float(_number(model, "image_scale", params.get("image_scale", "1"))),
        mean=mean,
        std=std,
        invert=invert == "true",
        resize=resize,
    )


def preprocess(image: Image.Image, spec: ImageSpec) -> np.ndarray:
    """The model's input tensor for one decoded image (colour to grey for a 1-channel model;
    transparent pixels count as white, as the page's canvas and most icons expect)."""
    image = _flatten_alpha(image)
    image = image.convert("L" if spec.channels == 1 else "RGB")
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), _RESIZE[spec.resize])
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if spec.invert:
        pixels = 255.0 - pixels
    values = (pixels * spec.scale - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if spec.layout == "NCHW":
        values = values.transpose(2, 0, 1)
    dtype = datatypes.BY_NAME[spec.datatype].dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return np.ascontiguousarray(values.reshape(spec.input_shape).astype(dtype))


def _flatten_alpha(image: Image.Image) -> Image.Image:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image


def _guess_layout(dims: tuple[int, ...]) -> str:
    # channels last only when the last dim looks like channels and the first does not
    return "NHWC" if dims[-1] in (1, 3) and dims[0] not in (1, 3) else "NCHW"


def _size(model: str, text: str | None, h_dim: int, w_dim: int) -> tuple[int, int]:
    if text:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2:
            raise invalid(f"model '{model}': image_size must be 'H,W', not {text!r}")
        h, w = (_int(model, "image_size", p) for p in parts)
        if h <= 0 or w <= 0:
            raise invalid(f"model '{model}': image_size must be positive, not {text!r}")
        return h, w
    if h_dim > 0 and w_dim > 0:
        return h_dim, w_dim
    raise invalid(f"model '{model}' has variable image dims and no image_size parameter")


def _floats(model: str, key: str, text: str | None, channels: int, default: float) -> tuple[float, ...]:
    if not text:
        return (default,) * channels
    values = tuple(_number(model, key, p) for p in text.split(","))
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise invalid(f"model '{model}': {key} has {len(values)} values for {channels} channels")
    return values


def _number(model: str, key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise invalid(f"model '{model}': {key} must be a number, not {text!r}") from None


def _int(model: str, key: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise invalid(f"model '{model}': {key} must be an integer, not {text!r}") from None
