"""The trainer end to end: train digits into a fresh repository and serve the ONNX file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format

from fleetserve.trainer import data
from fleetserve.trainer.pipeline import run
from fleetserve.wire import model_config_pb2

EPOCHS = 10
SEED = 0


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    repository = tmp_path_factory.mktemp("repository")
    started = time.perf_counter()
    version_dir = run("digits", repository=repository, epochs=EPOCHS, seed=SEED, threads=1)
    return version_dir, time.perf_counter() - started


@pytest.fixture(scope="module")
def metadata(published: tuple[Path, float]) -> dict:
    return json.loads((published[0] / "metadata.json").read_text())


@pytest.fixture(scope="module")
def session(published: tuple[Path, float]) -> ort.InferenceSession:
    return ort.InferenceSession(str(published[0] / "model.onnx"), providers=["CPUExecutionProvider"])


def test_training_publishes_version_1_quickly(published: tuple[Path, float]) -> None:
    version_dir, seconds = published
    assert version_dir.name == "1"
    assert sorted(p.name for p in version_dir.iterdir()) == ["metadata.json", "model.onnx"]
    assert sorted(p.name for p in version_dir.parent.iterdir()) == ["1", "config.pbtxt", "labels.txt"]
    assert seconds < 60
    assert (version_dir / "model.onnx").stat().st_size < 1_000_000


def test_metadata_records_the_run(metadata: dict) -> None:
    assert metadata["model"] == "digits"
    assert metadata["version"] == 1
    assert metadata["parent_version"] is None
    assert metadata["created"].endswith("Z")
    assert (metadata["seed"], metadata["epochs"]) == (SEED, EPOCHS)
    assert {"torch", "onnx"} <= metadata["framework"].keys()
    digits = data.load(seed=SEED)
    assert metadata["dataset"] == {
        "name": "sklearn-digits",
        "sha256": digits.sha256,
        "splits": digits.sizes(),
    }
    assert metadata["metrics"]["validation_accuracy"] >= 0.95
    assert metadata["metrics"]["test_accuracy"] >= 0.95
    assert [t["name"] for t in metadata["inputs"]] == ["image"]
    assert [t["name"] for t in metadata["outputs"]] == ["probabilities"]
    # no production data: the drift reference describes the held-out split, not the training one
    profile = metadata["reference_profile"]
    assert profile["source"] == "held-out"
    assert profile["items"] == len(digits.validation) + len(digits.test)


def test_onnxruntime_reproduces_the_recorded_test_accuracy(
    metadata: dict, session: ort.InferenceSession
) -> None:
    test = data.load(seed=SEED).test
    (probabilities,) = session.run(["probabilities"], {"image": test.images})
    assert probabilities.shape == (len(test), 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float((probabilities.argmax(axis=1) == test.labels).mean())
    # A near-tie could flip one example between torch and onnxruntime, no more.
    assert abs(accuracy - metadata["metrics"]["test_accuracy"]) <= 1.0 / len(test)
    assert accuracy >= 0.95


def test_onnx_signature_has_a_dynamic_batch(session: ort.InferenceSession) -> None:
    (image,) = session.get_inputs()
    (output,) = session.get_outputs()
    assert (image.name, image.type, image.shape[1:]) == ("image", "tensor(float)", [1, 8, 8])
    assert (output.name, output.type, output.shape[1:]) == ("probabilities", "tensor(float)", [10])
    assert isinstance(image.shape[0], str)
    for batch in (1, 7, 64):
        (result,) = session.run(None, {"image": np.zeros((batch, 1, 8, 8), np.float32)})
        assert result.shape == (batch, 10)


def test_config_and_labels_describe_the_onnx_model(published: tuple[Path, float]) -> None:
    model_dir = published[0].parent
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert (config.name, config.platform, config.max_batch_size) == ("digits", "onnxruntime_onnx", 64)
    assert [(i.name, list(i.dims)) for i in config.input] == [("image", [1, 8, 8])]
    assert [(o.name, list(o.dims), o.label_filename) for o in config.output] == [
        ("probabilities", [10], "labels.txt")
    ]
    assert config.parameters["image_size"].string_value == "8,8"
    assert config.parameters["image_invert"].string_value == "true"
    assert config.HasField("dynamic_batching")
    assert (model_dir / "labels.txt").read_text().splitlines() == [str(d) for d in range(10)]


def test_a_second_run_publishes_version_2_with_parent_1(published: tuple[Path, float]) -> None:
    repository = published[0].parent.parent
    config_before = (published[0].parent / "config.pbtxt").read_bytes()
    # One epoch is far worse than version 1: a margin of 1.0 lets any candidate through the gate.
    version_dir = run("digits", repository=repository, epochs=1, seed=1, gate_margin=1.0, threads=1)
    document = json.loads((version_dir / "metadata.json").read_text())
    assert version_dir.name == "2"
    assert (document["version"], document["parent_version"], document["seed"]) == (2, 1, 1)
    assert (published[0].parent / "config.pbtxt").read_bytes() == config_before


def test_an_unknown_model_is_refused_without_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model"):
        run("resnet", repository=tmp_path, epochs=1)
    assert list(tmp_path.iterdir()) == []
