"""The digits data: layout, scaling, deterministic stratified splits, dataset hash."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from sklearn.datasets import load_digits

from fleetserve.trainer import data


@pytest.fixture(scope="module")
def digits() -> data.DigitsData:
    return data.load(seed=0)


@pytest.fixture(scope="module")
def raw() -> tuple[np.ndarray, np.ndarray]:
    bunch = load_digits()
    return bunch.images, bunch.target


def test_images_are_float32_nchw_scaled_to_unit_range(digits: data.DigitsData, raw) -> None:
    raw_images, _ = raw
    for split in (digits.train, digits.validation, digits.test):
        assert split.images.dtype == np.float32
        assert split.images.shape == (len(split), 1, 8, 8)
        assert split.images.flags["C_CONTIGUOUS"]
        assert split.images.min() >= 0.0
        assert split.images.max() <= 1.0
        # Scaling is a plain division by 16 of the raw grey levels, row for row.
        np.testing.assert_allclose(split.images[:, 0] * 16.0, raw_images[split.index], atol=1e-5)


def test_labels_match_the_raw_targets(digits: data.DigitsData, raw) -> None:
    _, raw_labels = raw
    for split in (digits.train, digits.validation, digits.test):
        assert split.labels.dtype == np.int64
        np.testing.assert_array_equal(split.labels, raw_labels[split.index])
        assert set(np.unique(split.labels)) == set(range(10))


def test_splits_are_disjoint_and_cover_the_data_set(digits: data.DigitsData, raw) -> None:
    everything = np.concatenate([digits.train.index, digits.validation.index, digits.test.index])
    assert len(everything) == len(raw[1]) == 1797
    assert len(np.unique(everything)) == len(everything)
    assert digits.sizes() == {"train": 1167, "validation": 270, "test": 360}


def test_splits_are_stratified_by_class(digits: data.DigitsData, raw) -> None:
    _, raw_labels = raw
    overall = np.bincount(raw_labels, minlength=10) / len(raw_labels)
    for split in (digits.train, digits.validation, digits.test):
        share = np.bincount(split.labels, minlength=10) / len(split)
        # Stratification keeps every class within about one example of its overall share.
        assert np.all(np.abs(share - overall) <= 1.5 / len(split))


def test_same_seed_same_split_other_seed_other_split() -> None:
    first, again, other = data.load(seed=3), data.load(seed=3), data.load(seed=4)
    np.testing.assert_array_equal(first.test.index, again.test.index)
    np.testing.assert_array_equal(first.train.images, again.train.images)
    assert not np.array_equal(first.test.index, other.test.index)
    assert first.sizes() == other.sizes()


def test_hash_is_sha256_of_the_raw_arrays_and_independent_of_the_seed(raw) -> None:
    raw_images, raw_labels = raw
    # The definition, written out: sha256 over each array's dtype, shape and C-order bytes.
    digest = hashlib.sha256()
    for array in (raw_images, raw_labels):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    expected = digest.hexdigest()
    assert data.dataset_hash(raw_images, raw_labels) == expected
    assert data.load(seed=0).sha256 == data.load(seed=9).sha256 == expected
    assert data.load(seed=0).name == "sklearn-digits"


def test_hash_changes_when_one_value_changes(raw) -> None:
    raw_images, raw_labels = raw
    changed = raw_images.copy()
    changed[100, 4, 4] += 1
    assert data.dataset_hash(changed, raw_labels) != data.dataset_hash(raw_images, raw_labels)
    relabelled = raw_labels.copy()
    relabelled[0] = (relabelled[0] + 1) % 10
    assert data.dataset_hash(raw_images, relabelled) != data.dataset_hash(raw_images, raw_labels)


@pytest.mark.parametrize(("validation", "test"), [(0.0, 0.2), (0.2, 0.0), (0.5, 0.5), (-0.1, 0.2)])
def test_bad_fractions_are_rejected(validation: float, test: float) -> None:
    with pytest.raises(ValueError, match="fractions"):
        data.load(seed=0, validation_fraction=validation, test_fraction=test)
