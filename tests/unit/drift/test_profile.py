"""Reference profiles: histograms, the profile of inputs and outputs (against numpy computed
directly), JSON, loading from metadata.json, and the committed digits v1 profile."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

from fleetserve.drift.detectors import bin_counts
from fleetserve.drift.profile import (
    histogram,
    load_reference,
    parse_reference,
    reference_profile,
)
from fleetserve.drift.reference_build import digits_reference, store_reference

DIGITS_V1 = Path(__file__).resolve().parents[3] / "model_repository" / "digits" / "1"


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def test_histogram_edges_are_quantiles_with_outer_bins() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=1000)
    h = histogram(values, bins=10)
    edges, counts = np.asarray(h["edges"]), np.asarray(h["counts"])
    assert len(counts) == len(edges) + 1 == 12
    assert counts[0] == 0 and counts[-1] == 0 and counts.sum() == 1000
    assert edges[0] == values.min() and edges[-1] > values.max()
    assert np.all(np.diff(edges) > 0)
    assert counts[1:-1].min() >= 99 and counts[1:-1].max() <= 101  # deciles
    assert bin_counts(values, edges).tolist() == counts.tolist()


def test_a_point_mass_gets_a_bin_of_its_own() -> None:
    values = np.concatenate([np.zeros(900), np.linspace(0.1, 1.0, 100)])
    h = histogram(values, bins=10)
    edges, counts = h["edges"], h["counts"]
    assert edges[0] == 0.0
    assert counts[1] == 900  # [0, next edge): only the zeros
    constant = histogram(np.full(50, 1.0), bins=10)
    assert constant["counts"] == [0, 50, 0]
    assert bin_counts(np.array([0.99, 1.0, 1.01]), np.asarray(constant["edges"])).tolist() == [1, 1, 1]


def test_histogram_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no values"):
        histogram(np.array([]))
    with pytest.raises(ValueError, match="finite"):
        histogram(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="bins"):
        histogram(np.ones(3), bins=0)


def test_reference_profile_of_inputs_and_outputs() -> None:
    rng = np.random.default_rng(1)
    n = 400
    image = rng.random((n, 2, 3, 3), dtype=np.float32)
    extra = rng.normal(size=(n, 3, 5)).astype(np.float32)
    probs = softmax(rng.normal(size=(n, 7)) * 3)
    profile = reference_profile({"image": image, "extra": extra}, probs, bins=8)
    assert profile["items"] == n and profile["bins"] == 8 and profile["schema_version"] == 1
    stats = ("mean", "std", "min", "max")
    want = {f"{t}[{c}].{st}" for t, ch in (("image", 2), ("extra", 3)) for c in range(ch) for st in stats}
    assert set(profile["inputs"]) == want
    for name, array in (("image", image), ("extra", extra)):
        x = array.reshape(n, array.shape[1], -1).astype(np.float64)
        for s, values in (("mean", x.mean(2)), ("std", x.std(2)), ("min", x.min(2)), ("max", x.max(2))):
            for c in range(array.shape[1]):
                h = profile["inputs"][f"{name}[{c}].{s}"]
                assert sum(h["counts"]) == n
                assert bin_counts(values[:, c], np.asarray(h["edges"])).tolist() == h["counts"]
                assert h["edges"][0] == pytest.approx(values[:, c].min(), abs=0)
    assert profile["classes"]["counts"] == np.bincount(probs.argmax(1), minlength=7).tolist()
    assert profile["confidence"]["mean"] == pytest.approx(float(probs.max(1).astype(np.float64).mean()))
    assert sum(profile["confidence"]["counts"]) == n
    # JSON as it is stored, and back
    parsed = parse_reference(json.loads(json.dumps(profile, allow_nan=False)))
    assert parsed.items == n and set(parsed.inputs) == set(profile["inputs"])
    assert parsed.classes.tolist() == profile["classes"]["counts"]


def test_reference_profile_rejects_mismatched_shapes() -> None:
    probs = softmax(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="4 items"):
        reference_profile({"image": np.zeros((5, 1, 2, 2), np.float32)}, probs)
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        reference_profile({"image": np.zeros((4, 1, 2, 2), np.float32)}, probs[:, 0])


def test_parse_reference_names_what_is_wrong() -> None:
    good = reference_profile({"x": np.arange(20, dtype=np.float32).reshape(20, 1)}, softmax(np.eye(20, 4)))
    with pytest.raises(ValueError, match="schema_version"):
        parse_reference({**good, "schema_version": 9})
    bad = json.loads(json.dumps(good))
    bad["inputs"]["x[0].mean"]["counts"] = [1, 2]
    with pytest.raises(ValueError, match=r"inputs.x\[0\].mean: counts"):
        parse_reference(bad)
    bad = json.loads(json.dumps(good))
    bad["confidence"]["edges"] = [3.0, 1.0]
    with pytest.raises(ValueError, match="confidence: edges"):
        parse_reference(bad)
    with pytest.raises(ValueError, match="malformed reference profile: KeyError"):
        parse_reference({"schema_version": 1})
    with pytest.raises(ValueError, match="malformed"):
        parse_reference([])  # type: ignore[arg-type]


def test_load_reference_from_metadata(tmp_path: Path) -> None:
    assert load_reference(tmp_path) is None  # no metadata.json
    (tmp_path / "metadata.json").write_text(json.dumps({"model": "m"}))
    assert load_reference(tmp_path) is None  # no profile in it
    profile = reference_profile({"x": np.arange(10, dtype=np.float32).reshape(10, 1)}, softmax(np.eye(10, 3)))
    (tmp_path / "metadata.json").chmod(0o640)
    store_reference(tmp_path, profile)
    kept = json.loads((tmp_path / "metadata.json").read_text())
    assert kept["model"] == "m" and kept["reference_profile"] == profile
    assert stat.S_IMODE((tmp_path / "metadata.json").stat().st_mode) == 0o640  # mode kept
    assert [p.name for p in tmp_path.iterdir()] == ["metadata.json"]  # no temporary file left
    loaded = load_reference(tmp_path)
    assert loaded is not None and loaded.items == 10
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        load_reference(tmp_path)


def test_committed_digits_v1_profile_is_its_training_split() -> None:
    """The profile in model_repository/digits/1 is what its model gives on the training split."""
    metadata = json.loads((DIGITS_V1 / "metadata.json").read_text())
    for key in ("model", "version", "dataset", "metrics", "inputs", "outputs", "labels", "onnx"):
        assert key in metadata  # the trainer's keys are kept
    stored = metadata["reference_profile"]
    fresh = digits_reference(DIGITS_V1)
    assert stored["items"] == fresh["items"] == metadata["dataset"]["splits"]["train"]
    assert stored["inputs"] == fresh["inputs"]  # data only: exact
    assert stored["classes"] == fresh["classes"]
    assert stored["confidence"]["counts"] == fresh["confidence"]["counts"]
    assert stored["confidence"]["edges"] == pytest.approx(fresh["confidence"]["edges"], abs=1e-6)
    assert stored["confidence"]["mean"] == pytest.approx(fresh["confidence"]["mean"], abs=1e-6)
    assert set(stored["inputs"]) == {f"image[0].{s}" for s in ("mean", "std", "min", "max")}
