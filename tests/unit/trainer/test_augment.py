"""Augmentation and the epoch's examples: reproducible from a seed, and doing what they say."""

from __future__ import annotations

import numpy as np
import pytest

from fleetserve.trainer import data as digits_data
from fleetserve.trainer.augment import NONE, Augmentation, add_noise, augment, invert, shift
from fleetserve.trainer.train import Extra, epoch_examples


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return digits_data.load(seed=0).train.images[:64]


def test_the_same_seed_gives_the_same_augmented_images(images: np.ndarray) -> None:
    config = Augmentation(invert_probability=0.5)
    first = augment(images, config, np.random.default_rng(7))
    second = augment(images, config, np.random.default_rng(7))
    other = augment(images, config, np.random.default_rng(8))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
    assert first.shape == images.shape and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0


def test_augmentation_perturbs_but_keeps_the_ink(images: np.ndarray) -> None:
    out = augment(images, Augmentation(), np.random.default_rng(0))
    assert not np.array_equal(out, images)
    # a small shift, rotation and noise keep most of the ink where it was
    correlation = np.corrcoef(out.reshape(len(out), -1).ravel(), images.reshape(len(images), -1).ravel())[
        0, 1
    ]
    assert correlation > 0.6


def test_no_augmentation_is_the_identity(images: np.ndarray) -> None:
    np.testing.assert_array_equal(augment(images, NONE, np.random.default_rng(0)), images)


def test_full_inversion_flips_every_image(images: np.ndarray) -> None:
    config = Augmentation(max_shift=0, max_rotation_degrees=0, max_noise_std=0, invert_probability=1.0)
    np.testing.assert_allclose(augment(images, config, np.random.default_rng(0)), 1.0 - images, atol=1e-6)


def test_a_whole_pixel_shift_without_rotation_moves_the_image(images: np.ndarray) -> None:
    # the augmentation's resampling agrees with the drift's integer shift at whole pixels
    config = Augmentation(max_shift=0, max_rotation_degrees=0, max_noise_std=0)
    np.testing.assert_array_equal(augment(images, config, np.random.default_rng(0)), images)
    moved = shift(images, 1, -2)
    np.testing.assert_array_equal(moved[..., 0:6, 1:8], images[..., 2:8, 0:7])
    assert moved[..., :, 0].sum() == 0 and moved[..., 6:, :].sum() == 0


def test_the_drift_kinds(images: np.ndarray) -> None:
    np.testing.assert_allclose(invert(images), 1.0 - images)
    noisy = add_noise(images, 0.3, np.random.default_rng(0))
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert 0.1 < float(np.abs(noisy - images).mean()) < 0.4
    with pytest.raises(ValueError, match="noise std"):
        add_noise(images, -1.0, np.random.default_rng(0))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="invert_probability"):
        Augmentation(invert_probability=1.5)
    with pytest.raises(ValueError, match="max_shift"):
        Augmentation(max_shift=-1)


def test_an_epoch_draws_production_examples_by_weight_reproducibly() -> None:
    split = digits_data.load(seed=0).validation
    extra = Extra(invert(split.images[:40]), split.labels[:40])
    config = Augmentation()
    first = epoch_examples(split, extra, 2.5, config, np.random.default_rng(3))
    second = epoch_examples(split, extra, 2.5, config, np.random.default_rng(3))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    # every production example twice, and a third time for about half of them
    drawn = len(first[1]) - len(split)
    assert 80 <= drawn <= 120
    whole = epoch_examples(split, extra, 3.0, config, np.random.default_rng(3))
    assert len(whole[1]) == len(split) + 120
    none = epoch_examples(split, extra, 0.0, config, np.random.default_rng(3))
    assert len(none[1]) == len(split)
