"""Labelled production samples read back from a prediction-log Parquet folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fleetserve.predlog import parquet
from fleetserve.predlog.entry import Logged
from fleetserve.predlog.records import feedback_record
from fleetserve.trainer.production import NotEnoughProductionData, load_production, wait_for_rows
from tests.unit.trainer.production_folder import START_NS, STEP_NS, write_folder


def _images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, 1, 8, 8), dtype=np.float32)


def _load(out: Path, fraction: float = 0.3, model: str = "digits"):
    return load_production(
        out, model, input_name="image", item_shape=(1, 8, 8), num_classes=10, eval_fraction=fraction
    )


def test_labelled_sampled_rows_come_back_decoded_and_split_by_time(tmp_path: Path) -> None:
    images = _images(10)
    labels = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    ids = write_folder(tmp_path, images, labels)
    data = _load(tmp_path)
    assert (len(data.train), len(data.evaluation), data.rows_read, data.skipped) == (7, 3, 10, {})
    np.testing.assert_array_equal(data.train.images, images[:7])
    np.testing.assert_array_equal(data.evaluation.images, images[7:])
    assert data.train.labels.tolist() == labels[:7]
    assert data.evaluation.labels.tolist() == labels[7:]
    assert data.evaluation.record_ids == tuple(ids[7:])
    assert data.train.images.dtype == np.float32
    assert data.evaluation.times_ns.tolist() == [START_NS + i * STEP_NS for i in (7, 8, 9)]
    assert data.summary()["evaluation_since_ns"] == START_NS + 7 * STEP_NS


def test_unlabelled_unsampled_and_other_models_rows_are_left_out(tmp_path: Path) -> None:
    images = _images(6)
    write_folder(tmp_path, images, [0, None, 2, 3, 4, 5], sampled=[True, True, False, True, True, True])
    write_folder(tmp_path, _images(4, seed=1), [1, 1, 1, 1], model="other", prefix="o")
    data = _load(tmp_path, fraction=0.5)
    # row 1 has no label (not read), row 2 no sampled tensor (read, skipped)
    assert data.rows_read == 5
    assert data.skipped == {"no sampled input tensor": 1}
    kept = np.concatenate([data.train.images, data.evaluation.images])
    np.testing.assert_array_equal(kept, images[[0, 3, 4, 5]])
    assert (len(data.train), len(data.evaluation)) == (2, 2)


def test_labels_out_of_range_and_other_shapes_are_skipped_with_a_reason(tmp_path: Path) -> None:
    write_folder(tmp_path, _images(3), [1, 12, 2])
    write_folder(
        tmp_path, np.zeros((2, 3, 8, 8), np.float32), [1, 2], prefix="big", start_ns=START_NS + 10**12
    )
    data = _load(tmp_path)
    assert data.skipped == {"label out of range": 1, "other input shape": 2}
    assert len(data.train) + len(data.evaluation) == 2


def test_a_replaced_label_wins(tmp_path: Path) -> None:
    images = _images(2)
    write_folder(tmp_path, images, [7, 8])
    # a later label for the first request (same record id) from another feedback file
    logged = Logged(model="digits", version="1", route="production", items=1, time_ns=START_NS, labels={0: 7})
    later = feedback_record("req00000", 0, 2, logged, START_NS + 100 * STEP_NS)
    parquet.write_durably(
        parquet.feedback_table([later]),
        parquet.feedback_dir(tmp_path, parquet.utc_date(START_NS)) / "part-z.parquet",
    )
    data = _load(tmp_path, fraction=0.5)
    assert data.train.labels.tolist() == [2]
    assert data.evaluation.labels.tolist() == [8]


def test_the_hash_names_the_rows(tmp_path: Path) -> None:
    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    images = _images(5)
    write_folder(first, images, [1, 2, 3, 4, 5])
    write_folder(second, images, [1, 2, 3, 4, 5])
    write_folder(third, images, [1, 2, 3, 4, 6])
    assert _load(first).sha256 == _load(second).sha256
    assert _load(first).sha256 != _load(third).sha256


def test_an_empty_folder_gives_no_samples(tmp_path: Path) -> None:
    data = _load(tmp_path)
    assert (len(data.train), len(data.evaluation), data.rows_read) == (0, 0, 0)
    assert data.train.images.shape == (0, 1, 8, 8)


def test_a_missing_folder_and_a_bad_fraction_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="predlog --out"):
        _load(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="fraction"):
        _load(tmp_path, fraction=1.0)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_waiting_for_rows_reads_again_until_enough_have_come(tmp_path: Path) -> None:
    out = tmp_path / "predlog"  # not there yet: the writer makes it with its first file
    clock = _Clock()
    arrivals = iter([0, 4, 10])  # labelled rows in the folder at each read

    def load():
        have = next(arrivals)
        if have:
            write_folder(out, _images(have, seed=have), [i % 10 for i in range(have)], prefix=f"r{have}-")
        return _load(out)

    data = wait_for_rows(load, 12, 60.0, poll_s=5.0, clock=clock, sleep=clock.sleep)
    assert len(data.train) + len(data.evaluation) == 14 and clock.now == 10.0


def test_waiting_for_rows_gives_up_at_the_timeout_naming_the_counts(tmp_path: Path) -> None:
    write_folder(tmp_path, _images(3), [1, 2, 3])
    clock = _Clock()
    with pytest.raises(NotEnoughProductionData, match="3 usable labelled production rows, 10 needed"):
        wait_for_rows(lambda: _load(tmp_path), 10, 20.0, poll_s=5.0, clock=clock, sleep=clock.sleep)
    assert clock.now == 20.0
