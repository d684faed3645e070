"""The model manager over a repository of small real ONNX models."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from fleetserve.protocol.errors import ErrorCode, FleetError
from fleetserve.protocol.types import IndexEntry
from fleetserve.repository.manager import ModelManager, check_model_name
from fleetserve.runtimes.base import RuntimeOptions
from tests.support import models

ALL = "version_policy: { all: {} }\n"
X = np.arange(8, dtype=np.float32).reshape(2, 4)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture
async def manager(repo: Path) -> AsyncIterator[ModelManager]:
    mgr = ModelManager(repo, RuntimeOptions(), default_max_batch_size=4)
    yield mgr
    await mgr.stop()


def _error(mgr: ModelManager, name: str, version: str = "") -> FleetError:
    with pytest.raises(FleetError) as info:
        mgr.resolve(name, version)
    return info.value


async def _factor(mgr: ModelManager, name: str = "double", version: str = "") -> float:
    """The factor a serving `double` version multiplies by (2 x its version)."""
    out = await mgr.resolve(name, version).infer({"x": X})
    return float(out["y"][0, 1] / X[0, 1])


def _rewrite(path: Path, text: str) -> None:
    """Write a file so that its fingerprint surely changes, even on a coarse mtime clock."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


# --- load / resolve / unload ---


async def test_load_serves_the_latest_version_by_default(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo, versions=(1, 2))
    await manager.load("double")
    served = manager.resolve("double")
    assert (served.name, served.version, served.version_str) == ("double", 2, "2")
    assert served.max_batch_size == 4  # derived: every dim is dynamic-first
    assert await _factor(manager) == 4.0
    assert manager.resolve("double", "2") is served
    err = _error(manager, "double", "1")
    assert err.code is ErrorCode.NOT_FOUND
    assert "has no version 1 (serving: 2)" in err.message
    assert manager.is_ready("double")
    assert not manager.is_ready("double", "1")
    assert manager.all_ready()


async def test_resolve_empty_version_picks_the_highest_serving(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo, versions=(1, 3, 2), config=ALL)
    await manager.load("double")
    assert [sv.version for sv in manager.served_versions("double")] == [1, 2, 3]
    assert manager.resolve("double").version == 3
    assert await _factor(manager, version="1") == 2.0
    assert await _factor(manager, version="3") == 6.0
    assert await _factor(manager) == 6.0


async def test_resolve_unknown_model(manager: ModelManager) -> None:
    err = _error(manager, "nope")
    assert err.code is ErrorCode.NOT_FOUND
    assert "unknown model 'nope'" in err.message


@pytest.mark.parametrize("version", ["9", "abc", "-1"])
async def test_resolve_unknown_version_names_what_serves(
    repo: Path, manager: ModelManager, version: str
) -> None:
    models.double_model(repo, versions=(1, 2), config=ALL)
    await manager.load("double")
    err = _error(manager, "double", version)
    assert err.code is ErrorCode.NOT_FOUND
    assert "model 'double' has no version" in err.message
    assert version in err.message
    if version == "9":
        assert "(serving: 1, 2)" in err.message


async def test_unload_makes_the_model_unavailable(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo)
    await manager.load("double")
    served = manager.resolve("double")
    await manager.unload("double")
    err = _error(manager, "double")
    assert err.code is ErrorCode.UNAVAILABLE
    assert "unloaded" in err.message
    assert manager.served_versions("double") == []
    assert manager.index() == [IndexEntry("double", "", "UNAVAILABLE", "unloaded")]
    assert manager.all_ready()  # an explicitly unloaded model is not asked to serve
    await manager.stop()
    assert served.batcher._closed


async def test_load_again_after_unload(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo)
    await manager.load("double")
    await manager.unload("double")
    await manager.load("double")
    assert await _factor(manager) == 2.0


async def test_load_and_unload_of_a_missing_model(manager: ModelManager) -> None:
    with pytest.raises(FleetError) as info:
        await manager.load("ghost")
    assert info.value.code is ErrorCode.NOT_FOUND
    assert "no model 'ghost'" in info.value.message
    with pytest.raises(FleetError) as info:
        await manager.unload("ghost")
    assert info.value.code is ErrorCode.NOT_FOUND


async def test_unload_of_a_model_never_loaded(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo)
    await manager.unload("double")
    assert _error(manager, "double").code is ErrorCode.UNAVAILABLE
    await manager.poll()
    assert _error(manager, "double").code is ErrorCode.UNAVAILABLE


async def test_start_loads_everything_or_the_named_models(repo: Path) -> None:
    models.double_model(repo)
    models.identity_model(repo, "INT32")
    everything = ModelManager(repo, RuntimeOptions())
    await everything.start("poll", [])
    assert [sv.name for sv in everything.all_served()] == ["double", "identity_int32"]
    await everything.stop()
    explicit = ModelManager(repo, RuntimeOptions())
    await explicit.start("explicit", ["identity_int32", "missing"])
    assert [sv.name for sv in explicit.all_served()] == ["identity_int32"]
    await explicit.stop()


# --- failures ---


async def test_corrupt_model_file_makes_only_that_version_unavailable(
    repo: Path, manager: ModelManager
) -> None:
    models.double_model(repo, versions=(1, 2), config=ALL)
    models.identity_model(repo, "FP32")
    (repo / "double" / "2" / "model.onnx").write_bytes(b"\x00garbage\xff" * 10)
    await manager.start("none", [])
    err = _error(manager, "double", "2")
    assert err.code is ErrorCode.UNAVAILABLE
    assert "version 2 is not ready" in err.message
    assert manager.resolve("double").version == 1
    out = await manager.resolve("identity_fp32").infer({"INPUT0": X})
    np.testing.assert_array_equal(out["OUTPUT0"], X)
    rows = manager.index()
    assert [(r.name, r.version, r.state) for r in rows] == [
        ("double", "1", "READY"),
        ("double", "2", "UNAVAILABLE"),
        ("identity_fp32", "1", "READY"),
    ]
    assert rows[1].reason  # the loader's reason, e.g. an onnxruntime error
    assert rows[1].reason in err.message


async def test_a_model_whose_only_version_is_corrupt(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo)
    (repo / "double" / "1" / "model.onnx").write_bytes(b"not onnx")
    await manager.load("double")
    err = _error(manager, "double")
    assert err.code is ErrorCode.UNAVAILABLE
    assert "version 1:" in err.message
    assert not manager.all_ready()


async def test_broken_config_makes_the_model_unavailable_with_the_reason(
    repo: Path, manager: ModelManager
) -> None:
    models.double_model(repo, config='name: "other"\n')
    models.identity_model(repo, "INT8")
    await manager.start("none", [])
    err = _error(manager, "double")
    assert err.code is ErrorCode.UNAVAILABLE
    assert "names the model 'other'" in err.message
    assert IndexEntry("double", "", "UNAVAILABLE", err.message.split(": ", 1)[1]) in manager.index()
    assert manager.is_ready("identity_int8")


async def test_config_naming_a_tensor_the_model_lacks(repo: Path, manager: ModelManager) -> None:
    models.double_model(
        repo, config='max_batch_size: 4\ninput [ { name: "image" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
    )
    await manager.load("double")
    err = _error(manager, "double")
    assert err.code is ErrorCode.UNAVAILABLE
    assert "declares input 'image'" in err.message


async def test_a_model_with_no_versions(repo: Path, manager: ModelManager) -> None:
    (repo / "empty").mkdir()
    await manager.load("empty")
    err = _error(manager, "empty")
    assert err.code is ErrorCode.UNAVAILABLE
    assert "no version to serve" in err.message


async def test_failed_reload_keeps_the_working_version_serving(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo)
    await manager.load("double")
    served = manager.resolve("double")
    (repo / "double" / "1" / "model.onnx").write_bytes(b"corrupted later")
    for _ in range(2):  # the second poll sees the same broken files: nothing changes
        await manager.poll()
        assert manager.resolve("double") is served
        assert manager.resolve("double", "1") is served
        assert await _factor(manager) == 2.0
        rows = manager.index()
        assert [(r.name, r.version, r.state) for r in rows] == [("double", "1", "READY")]
        assert rows[0].reason.startswith("reload failed: ")
        assert manager.index(ready_only=True) == rows


# --- poll ---


async def test_poll_picks_up_a_new_version(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo, versions=(1,))
    await manager.poll()
    old = manager.resolve("double")
    assert old.version == 1
    models.double_model(repo, versions=(2,))
    await manager.poll()
    assert manager.resolve("double").version == 2
    assert await _factor(manager) == 4.0
    assert _error(manager, "double", "1").code is ErrorCode.NOT_FOUND
    await manager.stop()
    assert old.batcher._closed  # the replaced version was retired


async def test_poll_drops_a_removed_version(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo, versions=(1, 2), config=ALL)
    await manager.poll()
    shutil.rmtree(repo / "double" / "2")
    await manager.poll()
    assert [sv.version for sv in manager.served_versions("double")] == [1]
    assert manager.resolve("double").version == 1


async def test_poll_applies_a_changed_config(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo, versions=(1, 2))
    await manager.poll()
    assert [sv.version for sv in manager.served_versions("double")] == [2]
    _rewrite(repo / "double" / "config.pbtxt", ALL)
    await manager.poll()
    assert [sv.version for sv in manager.served_versions("double")] == [1, 2]
    _rewrite(repo / "double" / "config.pbtxt", "version_policy: { specific: { versions: [ 1 ] } }\n")
    await manager.poll()
    assert [sv.version for sv in manager.served_versions("double")] == [1]


async def test_poll_reloads_when_the_config_changes_batching(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo, config="max_batch_size: 2\n")
    await manager.poll()
    assert manager.resolve("double").max_batch_size == 2
    _rewrite(repo / "double" / "config.pbtxt", "max_batch_size: 8\n")
    await manager.poll()
    assert manager.resolve("double").max_batch_size == 8


async def test_poll_without_changes_keeps_the_same_versions(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo, versions=(1, 2), config=ALL)
    await manager.poll()
    before = manager.served_versions("double")
    await manager.poll()
    after = manager.served_versions("double")
    assert all(a is b for a, b in zip(before, after, strict=True))


async def test_poll_picks_up_a_new_model_and_drops_a_removed_one(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo)
    await manager.poll()
    models.identity_model(repo, "INT64")
    await manager.poll()
    assert manager.is_ready("identity_int64")
    shutil.rmtree(repo / "double")
    await manager.poll()
    assert _error(manager, "double").code is ErrorCode.NOT_FOUND
    assert [r.name for r in manager.index()] == ["identity_int64"]


async def test_poll_recovers_a_fixed_version(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo)
    good = (repo / "double" / "1" / "model.onnx").read_bytes()
    (repo / "double" / "1" / "model.onnx").write_bytes(b"broken")
    await manager.poll()
    assert _error(manager, "double").code is ErrorCode.UNAVAILABLE
    (repo / "double" / "1" / "model.onnx").write_bytes(good)
    await manager.poll()
    assert await _factor(manager) == 2.0
    assert manager.index() == [IndexEntry("double", "1", "READY", "")]


async def test_an_unloaded_model_stays_unloaded_across_poll(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo, versions=(1,))
    await manager.poll()
    await manager.unload("double")
    models.double_model(repo, versions=(2,))
    _rewrite(repo / "double" / "config.pbtxt", ALL)
    await manager.poll()
    await manager.poll()
    assert _error(manager, "double").code is ErrorCode.UNAVAILABLE
    assert manager.index() == [IndexEntry("double", "", "UNAVAILABLE", "unloaded")]
    await manager.load("double")
    assert [sv.version for sv in manager.served_versions("double")] == [1, 2]


async def test_on_ready_reports_versions_coming_and_going(repo: Path) -> None:
    events: list[tuple[str, str, bool]] = []
    models.double_model(repo, versions=(1,))
    mgr = ModelManager(repo, RuntimeOptions(), on_ready=lambda n, v, ok: events.append((n, v, ok)))
    await mgr.poll()
    models.double_model(repo, versions=(2,))
    await mgr.poll()
    await mgr.stop()
    assert events[0] == ("double", "1", True)
    assert ("double", "1", False) in events
    assert ("double", "2", True) in events


# --- names and index ---


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", "..", ".hidden", "a\\b", "x\n", "a" * 200])
async def test_check_model_name_rejects_paths(manager: ModelManager, name: str) -> None:
    with pytest.raises(FleetError) as info:
        check_model_name(name)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT
    with pytest.raises(FleetError) as info:
        await manager.load(name)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT


@pytest.mark.parametrize("name", ["digits", "resnet-50", "m_1.v2", "A"])
def test_check_model_name_accepts_folder_names(name: str) -> None:
    check_model_name(name)


async def test_index_lists_every_model_and_ready_only_filters(repo: Path, manager: ModelManager) -> None:
    models.double_model(repo, versions=(1, 2), config=ALL)
    (repo / "double" / "1" / "model.onnx").write_bytes(b"broken")
    models.identity_model(repo, "BOOL")
    models.identity_model(repo, "UINT8")
    (repo / ".tmp-upload").mkdir()  # not a model name: never listed
    await manager.load("double")
    await manager.load("identity_bool")
    rows = manager.index()
    assert [(r.name, r.version, r.state) for r in rows] == [
        ("double", "2", "READY"),
        ("double", "1", "UNAVAILABLE"),
        ("identity_bool", "1", "READY"),
        ("identity_uint8", "", "UNAVAILABLE"),  # present, never loaded
    ]
    assert [(r.name, r.version, r.state, r.reason) for r in manager.index(ready_only=True)] == [
        ("double", "2", "READY", ""),
        ("identity_bool", "1", "READY", ""),
    ]
