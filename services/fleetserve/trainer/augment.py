"""Augmentation of the digits images, and the drift kinds it is meant to make a model robust to.

Images are float32 ``N x 1 x 8 x 8`` with ink on a 0..1 scale (1 = full ink), the layout of
:mod:`fleetserve.trainer.data`. Every random draw comes from a ``numpy.random.Generator`` the
caller passes in, so a run seeded the same way sees the same augmented batches.

``augment`` is what training applies to each example every epoch: a small shift and rotation
(one bilinear resampling), Gaussian noise, and optionally intensity inversion. ``invert``,
``shift`` and ``add_noise`` are the drift kinds themselves, usable to make drifted traffic or
drifted test data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    """How strongly to perturb each training example.

    ``max_shift``: pixels along each axis, drawn uniformly in [-max_shift, max_shift].
    ``max_rotation_degrees``: drawn uniformly in [-max, max]. ``max_noise_std``: each image
    gets Gaussian noise with a std drawn uniformly in [0, max]. ``invert_probability``: the
    share of images whose intensities are flipped (x -> 1 - x). The result is clipped to 0..1.
    """

    max_shift: float = 1.0
    max_rotation_degrees: float = 10.0
    max_noise_std: float = 0.2
    invert_probability: float = 0.0

    def __post_init__(self) -> None:
        for name in ("max_shift", "max_rotation_degrees", "max_noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"augmentation {name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.invert_probability <= 1.0:
            raise ValueError(f"invert_probability must be in [0, 1], got {self.invert_probability}")

    @property
    def enabled(self) -> bool:
        """False when every perturbation is zero (augment returns its input unchanged)."""
        return any((self.max_shift, self.max_rotation_degrees, self.max_noise_std, self.invert_probability))


NONE = Augmentation(max_shift=0.0, max_rotation_degrees=0.0, max_noise_std=0.0, invert_probability=0.0)


def augment(images: np.ndarray, config: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """A perturbed copy of ``images`` (N x C x H x W float32), drawn from ``rng``.

    The draws per image are made in a fixed order (shift, rotation, noise std, inversion,
    then the noise itself), so the same generator state gives the same output.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be N x C x H x W, got shape {images.shape}")
    count, _, height, width = images.shape
    out = np.ascontiguousarray(images, dtype=np.float32)
    if count == 0 or not config.enabled:
        return out.copy()
    shifts = rng.uniform(-config.max_shift, config.max_shift, size=(count, 2))
    angles = np.deg2rad(rng.uniform(-config.max_rotation_degrees, config.max_rotation_degrees, size=count))
    noise_std = np.asarray(rng.uniform(0.0, config.max_noise_std, size=count), dtype=np.float32)
    inverted = rng.random(count) < config.invert_probability
    noise = rng.standard_normal(out.shape).astype(np.float32)
    if config.max_shift or config.max_rotation_degrees:
        out = _affine(out, angles, shifts[:, 0], shifts[:, 1], height, width)
    out = out + noise * noise_std[:, None, None, None]
    out = np.clip(out, 0.0, 1.0)
    out[inverted] = 1.0 - out[inverted]
    return out.astype(np.float32, copy=False)


def _affine(
    images: np.ndarray, angles: np.ndarray, dx: np.ndarray, dy: np.ndarray, height: int, width: int
) -> np.ndarray:
    """Rotate each image about its centre by ``angles`` (radians), then shift it by (dx, dy) pixels."""
    cos, sin = np.cos(angles), np.sin(angles)
    theta = np.zeros((images.shape[0], 2, 3), dtype=np.float32)
    # affine_grid maps output coordinates (-1..1) to input ones: the inverse transform.
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    theta[:, 0, 2] = -2.0 * dx / width
    theta[:, 1, 2] = -2.0 * dy / height
    with torch.inference_mode():
        source = torch.from_numpy(images)
        grid = F.affine_grid(torch.from_numpy(theta), list(source.shape), align_corners=False)
        moved = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return moved.numpy().copy()


def invert(images: np.ndarray) -> np.ndarray:
    """Intensity inversion, the 'inverted' drift: x -> 1 - x."""
    return (1.0 - np.asarray(images, dtype=np.float32)).astype(np.float32)


def shift(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The 'shifted' drift: every image moved by whole pixels (dx right, dy down), zeros fill in."""
    out = np.zeros_like(np.asarray(images, dtype=np.float32))
    height, width = out.shape[-2:]
    if abs(dx) >= width or abs(dy) >= height:
        return out
    src_y = slice(max(0, -dy), height - max(0, dy))
    dst_y = slice(max(0, dy), height - max(0, -dy))
    src_x = slice(max(0, -dx), width - max(0, dx))
    dst_x = slice(max(0, dx), width - max(0, -dx))
    out[..., dst_y, dst_x] = images[..., src_y, src_x]
    return out


def add_noise(images: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """The 'noisy' drift: Gaussian noise of ``std`` added, clipped to 0..1."""
    if std < 0 or math.isnan(std):
        raise ValueError(f"noise std must be >= 0, got {std}")
    noise = rng.standard_normal(np.shape(images)).astype(np.float32)
    noisy = np.asarray(images, dtype=np.float32) + std * noise
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)
