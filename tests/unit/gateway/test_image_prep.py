"""Image preprocessing as config.pbtxt declares it: the spec read from `image_*` parameters and
the tensor computed from a decoded image."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import text_format
from PIL import Image

from fleetserve.gateway.image_prep import ImageSpec, image_spec, preprocess
from fleetserve.protocol.errors import ErrorCode, FleetError
from fleetserve.repository.config import config_specs
from fleetserve.wire import model_config_pb2 as mc
from tests.support.models import DIGITS


def _config(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def _spec(text: str) -> ImageSpec:
    config = _config(text)
    return image_spec(config, config_specs(config)[0])


def _params(**values: str) -> str:
    rows = (f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}\n' for k, v in values.items())
    return "".join(rows)


COLOUR = (
    'name: "colour" max_batch_size: 4\n'
    'input [ { name: "pixels" data_type: TYPE_FP32 dims: [ 2, 3, 3 ] } ]\n'
    'output [ { name: "scores" data_type: TYPE_FP32 dims: [ 3 ] } ]\n'
)


def test_digits_config_gives_its_spec() -> None:
    spec = _spec((DIGITS / "config.pbtxt").read_text())
    assert (spec.input_name, spec.datatype, spec.layout, spec.batched) == ("image", "FP32", "NCHW", True)
    assert (spec.height, spec.width, spec.channels) == (8, 8, 1)
    assert spec.invert and spec.resize == "bilinear" and spec.scale == pytest.approx(1 / 255)
    assert spec.input_shape == (1, 1, 8, 8)


def test_colour_photo_becomes_grey_for_a_one_channel_model() -> None:
    spec = _spec((DIGITS / "config.pbtxt").read_text())
    # left half pure red, right half pure blue: luminance L = R*299/1000 + G*587/1000 + B*114/1000
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, :4, 0] = 255
    rgb[:, 4:, 2] = 255
    tensor = preprocess(Image.fromarray(rgb, "RGB"), spec)
    assert tensor.shape == (1, 1, 8, 8) and tensor.dtype == np.float32
    red, blue = round(255 * 0.299), round(255 * 0.114)
    # inverted (255 - L) and scaled by 1/255
    np.testing.assert_allclose(tensor[0, 0, :, :4], (255 - red) / 255, atol=1 / 255)
    np.testing.assert_allclose(tensor[0, 0, :, 4:], (255 - blue) / 255, atol=1 / 255)


def test_white_paper_with_black_ink_becomes_full_ink_after_invert() -> None:
    spec = _spec((DIGITS / "config.pbtxt").read_text())
    grey = np.full((80, 80), 255, np.uint8)
    grey[:, 20:60] = 0  # a thick vertical stroke (columns 2 to 5 of 8)
    tensor = preprocess(Image.fromarray(grey, "L"), spec)[0, 0]
    assert tensor[:, 0].max() == pytest.approx(0.0, abs=1e-6)  # paper: no ink
    assert tensor[:, 4].min() > 0.9  # the stroke's middle: ink


def test_transparent_pixels_count_as_white() -> None:
    spec = _spec((DIGITS / "config.pbtxt").read_text())
    rgba = np.zeros((8, 8, 4), np.uint8)  # fully transparent black
    rgba[2:6, 2:6] = (0, 0, 0, 255)  # an opaque black square
    tensor = preprocess(Image.fromarray(rgba, "RGBA"), spec)[0, 0]
    assert tensor[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert tensor[3, 3] == pytest.approx(1.0, abs=1e-6)


def test_nhwc_layout_mean_std_and_channel_order() -> None:
    spec = _spec(
        COLOUR + _params(image_layout="NHWC", image_scale="1", image_mean="10,20,30", image_std="2,4,5")
    )
    assert (spec.height, spec.width, spec.channels, spec.layout) == (2, 3, 3, "NHWC")
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 50, 100, 230
    tensor = preprocess(Image.fromarray(rgb, "RGB"), spec)
    assert tensor.shape == (1, 2, 3, 3)
    np.testing.assert_allclose(tensor[0, 0, 0], [(50 - 10) / 2, (100 - 20) / 4, (230 - 30) / 5])


def test_nchw_resize_nearest_and_unbatched_model() -> None:
    config = (
        'name: "m" max_batch_size: 0\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 3 ] } ]\n'
    ) + _params(image_size="2,2", image_resize="nearest")
    spec = _spec(config)
    assert spec.input_shape == (3, 2, 2) and not spec.batched
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[:2, :2] = (255, 0, 0)
    rgb[2:, 2:] = (0, 0, 255)
    tensor = preprocess(Image.fromarray(rgb, "RGB"), spec)
    assert tensor[:, 0, 0].tolist() == [255, 0, 0]  # scale 1 by default
    assert tensor[:, 1, 1].tolist() == [0, 0, 255]


def test_integer_input_is_rounded_and_clipped() -> None:
    config = (
        'name: "u8" max_batch_size: 1\n'
        'input [ { name: "x" data_type: TYPE_UINT8 dims: [ 1, 2, 2 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
    ) + _params(image_scale="2")
    tensor = preprocess(Image.fromarray(np.array([[0, 100], [200, 255]], np.uint8), "L"), _spec(config))
    assert tensor.dtype == np.uint8 and tensor.reshape(-1).tolist() == [0, 200, 255, 255]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (_params(image_layout="NWHC"), "image_layout must be NCHW or NHWC"),
        (_params(image_channels="3"), "does not match input dims"),
        (_params(image_size="8"), "image_size must be 'H,W'"),
        (_params(image_size="a,b"), "image_size must be an integer"),
        (_params(image_resize="cubic"), "image_resize must be bilinear or nearest"),
        (_params(image_std="0"), "image_std must not be 0"),
        (_params(image_mean="1,2,3"), "image_mean has 3 values for 1 channels"),
        (_params(image_invert="yes"), "image_invert must be true or false"),
        (_params(image_scale="half"), "image_scale must be a number"),
    ],
)
def test_bad_parameters_name_the_key(extra: str, message: str) -> None:
    base = (DIGITS / "config.pbtxt").read_text()
    base = "\n".join(line for line in base.splitlines() if "image_" not in line)
    with pytest.raises(FleetError) as err:
        _spec(base + "\n" + extra)
    assert err.value.code is ErrorCode.INVALID_ARGUMENT and message in err.value.message


def test_models_that_take_no_images_are_refused_clearly() -> None:
    two = (
        'name: "two" max_batch_size: 2\n'
        'input [ { name: "a" data_type: TYPE_FP32 dims: [ 4 ] },'
        ' { name: "b" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    )
    with pytest.raises(FleetError, match="needs a model with one input; 'two' has 2"):
        _spec(two)
    flat = 'name: "flat" max_batch_size: 2\ninput [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    flat += 'output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    with pytest.raises(FleetError, match=r"has dims \[4\]: the image route needs three"):
        _spec(flat)
    var = 'name: "var" max_batch_size: 2\ninput [ { name: "x" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] } ]\n'
    var += 'output [ { name: "y" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    with pytest.raises(FleetError, match="variable image dims and no image_size"):
        _spec(var)
