"""Retraining on labelled production data: inverted digits logged by the prediction log, labelled,
mixed into training; the candidate is gated against the served version 1 and published."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fleetserve.cli import main
from fleetserve.drift.profile import parse_reference
from fleetserve.trainer import data as digits_data
from fleetserve.trainer import evaluate
from fleetserve.trainer.augment import invert
from fleetserve.trainer.gate import GateRefused
from fleetserve.trainer.pipeline import run
from tests.unit.trainer.production_folder import write_folder

ROOT = Path(__file__).resolve().parents[2]
SEED = 0


def _repository(root: Path) -> Path:
    """A copy of the project's repository with digits version 1, the version in production."""
    shutil.copytree(ROOT / "model_repository" / "digits", root / "digits")
    return root


@pytest.fixture(scope="module")
def digits() -> digits_data.DigitsData:
    return digits_data.load(seed=SEED)


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory, digits: digits_data.DigitsData) -> Path:
    """The prediction log of drifted traffic: the validation digits inverted, labelled, in random
    order; plus unlabelled traffic, which is not training data."""
    out = tmp_path_factory.mktemp("predlog")
    order = np.random.default_rng(SEED).permutation(len(digits.validation))
    images = invert(digits.validation.images[order])
    write_folder(out, images, digits.validation.labels[order].tolist())
    write_folder(out, images[:20], [None] * 20, prefix="unlabelled", start_ns=1_767_312_000_000_000_000)
    return out


def _retrain(root: Path, production: Path) -> Path:
    return run("digits", _repository(root), seed=SEED, production_data=production, reason="drift", threads=1)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory, production: Path) -> Path:
    return _retrain(tmp_path_factory.mktemp("repository"), production)


@pytest.fixture(scope="module")
def metadata(retrained: Path) -> dict:
    return json.loads((retrained / "metadata.json").read_text())


def _inverted_test_accuracy(version_dir: Path, digits: digits_data.DigitsData) -> float:
    # the test split is in no training data, clean or inverted
    drifted = evaluate.EvalSet("inverted", invert(digits.test.images), digits.test.labels)
    session = evaluate.parent_session(version_dir.parent, int(version_dir.name))
    return evaluate.accuracies(session, {"inverted": drifted})["inverted_accuracy"]


def test_drift_retraining_publishes_version_2_that_reads_inverted_digits(
    retrained: Path, metadata: dict, digits: digits_data.DigitsData
) -> None:
    assert retrained.name == "2"
    assert (metadata["parent_version"], metadata["production_version"], metadata["reason"]) == (1, 1, "drift")
    before = _inverted_test_accuracy(retrained.parent / "1", digits)
    after = _inverted_test_accuracy(retrained, digits)
    assert after > before + 0.5, (before, after)
    assert metadata["gate"]["passed"] is True


def test_the_gate_figures_compare_both_versions_on_the_same_data(metadata: dict, retrained: Path) -> None:
    metrics = metadata["metrics"]
    assert metrics["production_accuracy"] > metrics["parent_production_accuracy"]
    assert metrics["test_accuracy"] >= metrics["parent_test_accuracy"] - metadata["gate"]["margin"]
    # version 1's held-out figure, measured again with onnxruntime, is the one it recorded
    v1 = json.loads((retrained.parent / "1" / "metadata.json").read_text())
    assert metrics["parent_test_accuracy"] == pytest.approx(v1["metrics"]["test_accuracy"], abs=1 / 360)


def test_metadata_names_the_production_rows_and_holds_the_reference_profile(
    metadata: dict, digits: digits_data.DigitsData
) -> None:
    rows = metadata["production_data"]
    total = len(digits.validation)
    assert (rows["rows_read"], rows["train_rows"] + rows["evaluation_rows"]) == (total, total)
    assert rows["evaluation_rows"] == int(np.ceil(total * 0.3))
    assert metadata["data_sha256"] != metadata["dataset"]["sha256"]
    assert metadata["duration_seconds"] >= metadata["training_seconds"] > 0
    profile = metadata["reference_profile"]
    # retrained because of drift: the reference describes the production traffic (all its rows)
    assert profile["source"] == "production"
    assert profile["items"] == rows["train_rows"] + rows["evaluation_rows"]
    reference = parse_reference(profile)
    assert reference is not None


def test_a_second_run_gives_the_same_data_hash_and_metrics(
    tmp_path: Path, production: Path, metadata: dict
) -> None:
    again = json.loads((_retrain(tmp_path, production) / "metadata.json").read_text())
    assert again["data_sha256"] == metadata["data_sha256"]
    assert again["metrics"] == metadata["metrics"]
    assert again["training"]["final_loss"] == metadata["training"]["final_loss"]


def test_a_bad_candidate_is_refused_and_nothing_is_published(tmp_path: Path) -> None:
    repository = _repository(tmp_path)
    with pytest.raises(
        GateRefused, match=r"held-out accuracy 0\.\d{4} is 0\.\d{4} below v1's 0\.9722"
    ) as refused:
        run("digits", repository, epochs=1, seed=SEED, threads=1)
    assert refused.value.decision.parent_version == 1
    assert sorted(p.name for p in (repository / "digits").iterdir()) == ["1", "config.pbtxt", "labels.txt"]


def _train_cli(repository: Path, *args: str) -> int:
    """`fleetserve train` in this process (the command's own parsing, settings and exit status)."""
    return main(["train", "--model-repository", str(repository), "--threads", "1", "--no-progress", *args])


def test_the_cli_exits_non_zero_naming_the_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = _repository(tmp_path)
    assert _train_cli(repository, "--epochs", "1") == 1
    stderr = capsys.readouterr().err
    assert "not published: gate refused (reason manual, against production v1)" in stderr
    assert "below v1's 0.9722, more than the margin 0.0100" in stderr
    assert not (repository / "digits" / "2").exists()


def test_drift_retraining_without_production_data_is_refused_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = _repository(tmp_path)
    for name, value in (("EPOCHS", "1"), ("REASON", "drift"), ("GATE_MARGIN", "1")):
        monkeypatch.setenv(f"FLEETSERVE_{name}", value)
    assert _train_cli(repository) == 1
    stderr = capsys.readouterr().err
    assert "reason drift" in stderr and "--production-data" in stderr
    assert not (repository / "digits" / "2").exists()


def test_a_missing_production_folder_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _train_cli(_repository(tmp_path), "--production-data", str(tmp_path / "nowhere")) == 2
    assert "nowhere does not exist" in capsys.readouterr().err


def test_too_few_labelled_rows_exit_3_before_training(
    tmp_path: Path, production: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = _repository(tmp_path)
    args = ("--production-data", str(production), "--reason", "drift")
    code = _train_cli(repository, *args, "--min-production-rows", "100000", "--wait-for-rows-s", "0")
    assert code == 3
    stderr = capsys.readouterr().err
    assert "not trained:" in stderr and "100000 needed" in stderr
    assert not (repository / "digits" / "2").exists()
