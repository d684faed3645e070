"""Records from entries: profiles and top-k checked against numpy."""

from __future__ import annotations

import random

import numpy as np
import pytest

from fleetserve.predlog.entry import LogEntry, Logged
from fleetserve.predlog.records import feedback_record, item_count, record_id, records_of, to_records
from fleetserve.protocol.tensors import from_raw


def entry(
    inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], batched: bool = True, **kw: object
) -> LogEntry:
    fields: dict[str, object] = {
        "request_id": "req",
        "time_ns": 1_700_000_000_000_000_000,
        "model": "digits",
        "version": "2",
        "route": "canary",
        "route_key": "user-7",
        "protocol": "grpc",
        "latency_s": 0.004,
        "inputs": inputs,
        "outputs": outputs,
        "batched": batched,
        "labels": None,
        "first_output": next(iter(outputs)),
    }
    fields.update(kw)
    return LogEntry(**fields)  # type: ignore[arg-type]


def test_one_record_per_item_with_the_request_fields() -> None:
    rng = np.random.default_rng(0)
    e = entry(
        {"image": rng.random((3, 1, 8, 8), np.float32)}, {"probabilities": rng.random((3, 10), np.float32)}
    )
    records = to_records(e)
    assert (
        [r.record_id for r in records]
        == ["req:0", "req:1", "req:2"]
        == [record_id("req", i) for i in range(3)]
    )
    for i, r in enumerate(records):
        assert (r.request_id, r.item_index, r.schema_version) == ("req", i, 1)
        assert (r.model, r.version, r.route, r.route_key, r.protocol) == (
            "digits",
            "2",
            "canary",
            "user-7",
            "grpc",
        )
        assert r.time_unix_ns == e.time_ns and r.latency_seconds == pytest.approx(0.004)
        assert not r.sample


def test_profiles_are_per_item_per_channel_as_numpy_computes_them() -> None:
    rng = np.random.default_rng(1)
    images = (rng.random((4, 3, 5, 6)) * 255).astype(np.float32)
    mask = rng.integers(0, 2, (4, 7)).astype(np.int64)
    records = to_records(entry({"image": images, "mask": mask}, {"y": rng.random((4, 2), np.float32)}))
    for i, r in enumerate(records):
        image, m = r.inputs
        assert image.name == "image" and m.name == "mask"
        x = images[i].reshape(3, -1).astype(np.float64)
        np.testing.assert_allclose(image.mean, x.mean(axis=1))
        np.testing.assert_allclose(image.std, x.std(axis=1))
        np.testing.assert_allclose(image.min, x.min(axis=1))
        np.testing.assert_allclose(image.max, x.max(axis=1))
        # a vector item: each element is a channel
        np.testing.assert_allclose(m.mean, mask[i].astype(np.float64))
        assert list(m.std) == [0.0] * 7


def test_top_k_and_confidence_as_numpy_sorts_them_with_label_names() -> None:
    rng = np.random.default_rng(2)
    scores = rng.random((5, 10)).astype(np.float32)
    scores[0, 3] = scores[0, 8] = 2.0  # a tie: the lower index first
    labels = [f"digit-{i}" for i in range(10)]
    records = to_records(
        entry({"x": rng.random((5, 4), np.float32)}, {"probs": scores}, labels=labels), top_k=3
    )
    for i, r in enumerate(records):
        expected = np.argsort(-scores[i], kind="stable")[:3]
        assert [c.index for c in r.top] == expected.tolist()
        np.testing.assert_allclose([c.score for c in r.top], scores[i][expected])
        assert [c.label for c in r.top] == [labels[j] for j in expected]
        assert r.confidence == pytest.approx(float(scores[i].max()))
    assert [c.index for c in records[0].top[:2]] == [3, 8]


def test_the_first_output_named_is_used_and_k_is_capped() -> None:
    out = {"other": np.zeros((1, 4), np.float32), "probs": np.array([[0.1, 0.7, 0.2]], np.float32)}
    (r,) = to_records(entry({"x": np.ones((1, 2), np.float32)}, out, first_output="probs"), top_k=5)
    assert [c.index for c in r.top] == [1, 2, 0]
    assert [c.label for c in r.top] == ["", "", ""]  # no labels.txt


def test_an_unbatched_request_is_one_item() -> None:
    image = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    e = entry({"image": image}, {"y": np.array([0.2, 0.5, 0.3], np.float32)}, batched=False)
    assert item_count(e) == 1
    (r,) = to_records(e)
    np.testing.assert_allclose(r.inputs[0].mean, image.reshape(2, -1).mean(axis=1))
    assert r.top[0].index == 1 and r.confidence == pytest.approx(0.5)


def test_sampled_records_carry_the_tensor_that_decodes_back() -> None:
    rng = np.random.default_rng(3)
    images = rng.random((200, 1, 4, 4)).astype(np.float32)
    e = entry({"image": images}, {"y": rng.random((200, 3), np.float32)})
    records = to_records(e, tensor_sample_rate=0.25, rng=random.Random(0))
    sampled = [r for r in records if r.sample]
    assert 30 <= len(sampled) <= 70
    for r in sampled:
        (t,) = r.sample
        assert (t.name, t.datatype, list(t.shape)) == ("image", "FP32", [1, 4, 4])
        np.testing.assert_array_equal(from_raw(t.raw, "FP32", (1, 4, 4), "image"), images[r.item_index])
    assert all(r.sample for r in to_records(e, tensor_sample_rate=1.0))


def test_inputs_that_are_not_numbers_get_a_named_empty_profile() -> None:
    text = np.array([[b"a"], [b"bc"]], dtype=object)
    records = to_records(entry({"text": text}, {"y": np.ones((2, 2), np.float32)}), tensor_sample_rate=1.0)
    assert [(p.name, list(p.mean)) for p in records[1].inputs] == [("text", [])]
    assert records[1].sample[0].datatype == "BYTES"


def test_an_empty_batch_gives_no_record() -> None:
    assert to_records(entry({"x": np.zeros((0, 3), np.float32)}, {"y": np.zeros((0, 2), np.float32)})) == []


def test_many_entries_at_once_give_what_each_gives_alone_and_set_bad_ones_apart() -> None:
    rng = np.random.default_rng(4)
    entries = []
    for i in range(12):
        width = 4 if i % 3 else 6  # two kinds of requests, interleaved
        e = entry(
            {"x": rng.random((1 + i % 2, width), np.float32)}, {"y": rng.random((1 + i % 2, 5), np.float32)}
        )
        e.request_id = f"r{i}"
        entries.append(e)
    entries.append(
        entry({"x": rng.random((4,), np.float32)}, {"y": rng.random(5).astype(np.float32)}, batched=False)
    )
    bad = entry(
        {"x": rng.random((3, 4), np.float32)}, {"y": rng.random((2, 5), np.float32)}, request_id="bad"
    )
    entries.insert(5, bad)
    records, failed = records_of(entries, top_k=3)
    assert failed == [bad]
    assert records == [r for e in entries if e is not bad for r in to_records(e, top_k=3)]


def test_a_feedback_record_names_the_item_and_says_whether_it_replaces_a_label() -> None:
    logged = Logged(model="digits", version="3", route="canary", items=2, time_ns=5, labels={1: 4})
    first = feedback_record("req", 0, 7, logged, time_ns=99)
    assert (first.record_id, first.item_index, first.label, first.replaced) == ("req:0", 0, 7, False)
    assert (first.model, first.version, first.time_unix_ns, first.schema_version) == ("digits", "3", 99, 1)
    assert feedback_record("req", 1, 2, logged, time_ns=100).replaced
