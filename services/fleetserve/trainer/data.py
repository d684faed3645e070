"""scikit-learn's bundled digits data set, split deterministically for training.

The data ships inside scikit-learn (no download). Images are 8x8 grey levels 0..16; they
are returned as float32 ``N x 1 x 8 x 8`` scaled to 0..1, the layout the model takes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DATASET_NAME = "sklearn-digits"
NUM_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)
# The digits' grey levels run 0..16 (16 = full ink).
_MAX_LEVEL = 16.0


@dataclass(frozen=True)
class Split:
    """One part of the data set.

    ``images``: float32, N x 1 x 8 x 8, ink 0..1. ``labels``: int64, N. ``index``: int64, N,
    each example's row in scikit-learn's digits arrays, ascending.
    """

    images: np.ndarray
    labels: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class DigitsData:
    """The three splits, the data set's name and the sha256 of its raw arrays."""

    train: Split
    validation: Split
    test: Split
    name: str
    sha256: str

    def sizes(self) -> dict[str, int]:
        """Number of examples in each split, keyed train / validation / test."""
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def dataset_hash(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 over the raw arrays' dtype, shape and bytes (C order), as hex."""
    digest = hashlib.sha256()
    for array in (images, labels):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def load(seed: int = 0, validation_fraction: float = 0.15, test_fraction: float = 0.2) -> DigitsData:
    """Load the digits and split them, stratified by class, reproducibly from ``seed``.

    The fractions are of the whole data set; the rest is the training split.
    """
    if min(validation_fraction, test_fraction) <= 0 or validation_fraction + test_fraction >= 1:
        raise ValueError(
            f"fractions must be in (0, 1) and sum below 1, got {validation_fraction} and {test_fraction}"
        )
    bunch = load_digits()
    raw_images: np.ndarray = bunch.images
    raw_labels: np.ndarray = bunch.target
    images = (raw_images / _MAX_LEVEL).astype(np.float32).reshape(-1, *IMAGE_SHAPE)
    labels = raw_labels.astype(np.int64)
    index = np.arange(labels.shape[0])
    rest, test_index = train_test_split(index, test_size=test_fraction, stratify=labels, random_state=seed)
    train_index, validation_index = train_test_split(
        rest,
        test_size=validation_fraction / (1.0 - test_fraction),
        stratify=labels[rest],
        random_state=seed,
    )
    return DigitsData(
        train=_take(images, labels, train_index),
        validation=_take(images, labels, validation_index),
        test=_take(images, labels, test_index),
        name=DATASET_NAME,
        sha256=dataset_hash(raw_images, raw_labels),
    )


def _take(images: np.ndarray, labels: np.ndarray, index: np.ndarray) -> Split:
    # Sorted so a split's order does not depend on how train_test_split shuffled it.
    index = np.sort(index)
    return Split(
        images=np.ascontiguousarray(images[index]),
        labels=np.ascontiguousarray(labels[index]),
        index=index.astype(np.int64),
    )
