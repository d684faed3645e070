"""Publishing versions: atomic rename from a .tmp- folder, numbering, shared files kept."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fleetserve.trainer import publish

CONFIG = 'name: "m"\nplatform: "onnxruntime_onnx"\n'
LABELS = ("cat", "dog")


def _publish(repository: Path, content: bytes = b"onnx-bytes", **metadata: object) -> Path:
    return publish.publish_version(
        repository,
        "m",
        {"model.onnx": content},
        {"metrics": {"test_accuracy": 0.99}, **metadata},
        config_text=CONFIG,
        labels=LABELS,
    )


def _metadata(version_dir: Path) -> dict:
    return json.loads((version_dir / "metadata.json").read_text())


def test_first_version_is_1_with_its_files_and_the_shared_ones(tmp_path: Path) -> None:
    version_dir = _publish(tmp_path)
    assert version_dir == tmp_path / "m" / "1"
    assert (version_dir / "model.onnx").read_bytes() == b"onnx-bytes"
    document = _metadata(version_dir)
    assert document["model"] == "m"
    assert document["version"] == 1
    assert document["parent_version"] is None
    assert document["metrics"] == {"test_accuracy": 0.99}
    assert (tmp_path / "m" / "config.pbtxt").read_text() == CONFIG
    assert (tmp_path / "m" / "labels.txt").read_text() == "cat\ndog\n"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "config.pbtxt", "labels.txt"]


def test_versions_increment_and_name_their_parent(tmp_path: Path) -> None:
    first, second, third = _publish(tmp_path, b"a"), _publish(tmp_path, b"b"), _publish(tmp_path, b"c")
    assert [p.name for p in (first, second, third)] == ["1", "2", "3"]
    assert [_metadata(p)["parent_version"] for p in (first, second, third)] == [None, 1, 2]
    assert (first / "model.onnx").read_bytes() == b"a"
    assert (third / "model.onnx").read_bytes() == b"c"
    assert publish.version_numbers(tmp_path / "m") == [1, 2, 3]


def test_next_version_follows_the_highest_integer_folder_only(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    for name in ("3", "10", ".tmp-abandoned", "latest", "0", "007"):
        (model_dir / name).mkdir(parents=True)
    (model_dir / "12").write_text("a file, not a version")
    assert publish.version_numbers(model_dir) == [3, 10]
    version_dir = _publish(tmp_path)
    assert version_dir.name == "11"
    assert _metadata(version_dir)["parent_version"] == 10


def test_existing_config_and_labels_are_not_overwritten(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.pbtxt").write_text("hand-edited\n")
    _publish(tmp_path)
    _publish(tmp_path)
    assert (model_dir / "config.pbtxt").read_text() == "hand-edited\n"
    assert (model_dir / "labels.txt").read_text() == "cat\ndog\n"


def test_different_labels_are_refused_before_any_version_appears(tmp_path: Path) -> None:
    _publish(tmp_path)
    with pytest.raises(ValueError, match=r"labels\.txt"):
        publish.publish_version(tmp_path, "m", {"model.onnx": b"x"}, {}, config_text=CONFIG, labels=("a",))
    assert publish.version_numbers(tmp_path / "m") == [1]


def test_version_appears_by_one_rename_of_a_complete_tmp_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_rename = os.rename
    seen: list[tuple[str, str, list[str]]] = []

    def spying_rename(src: str | Path, dst: str | Path) -> None:
        source, target = Path(src), Path(dst)
        # At the moment of the rename the folder is complete and the target does not exist.
        seen.append((source.name, target.name, sorted(p.name for p in source.iterdir())))
        assert not target.exists()
        assert _metadata(source)["version"] == int(target.name)
        real_rename(src, dst)

    monkeypatch.setattr(publish.os, "rename", spying_rename)
    version_dir = _publish(tmp_path)
    assert len(seen) == 1
    source_name, target_name, files = seen[0]
    assert source_name.startswith(".tmp-")
    assert target_name == "1"
    assert files == ["metadata.json", "model.onnx"]
    assert not (tmp_path / "m" / source_name).exists()
    assert version_dir.is_dir()


def test_a_number_taken_meanwhile_moves_the_version_to_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(tmp_path)
    real_rename = os.rename
    calls: list[str] = []

    def racing_rename(src: str | Path, dst: str | Path) -> None:
        calls.append(Path(dst).name)
        if len(calls) == 1:
            # Another publisher lands version 2 between our scan and our rename.
            Path(dst).mkdir()
            (Path(dst) / "model.onnx").write_bytes(b"theirs")
        real_rename(src, dst)

    monkeypatch.setattr(publish.os, "rename", racing_rename)
    version_dir = _publish(tmp_path, b"ours")
    assert calls == ["2", "3"]
    assert version_dir.name == "3"
    assert (tmp_path / "m" / "2" / "model.onnx").read_bytes() == b"theirs"
    assert (version_dir / "model.onnx").read_bytes() == b"ours"
    assert _metadata(version_dir)["version"] == 3
    assert _metadata(version_dir)["parent_version"] == 2


def test_a_failed_publish_leaves_no_tmp_folder_and_no_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_rename(src: str | Path, dst: str | Path) -> None:
        raise PermissionError("read-only repository")

    monkeypatch.setattr(publish.os, "rename", failing_rename)
    with pytest.raises(PermissionError):
        _publish(tmp_path)
    leftovers = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert leftovers == ["config.pbtxt", "labels.txt"]


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../escape", " padded"])
def test_bad_file_names_are_rejected(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="invalid file name"):
        publish.publish_version(tmp_path, "m", {name: b"x"}, {}, config_text=CONFIG, labels=LABELS)


def test_bad_model_name_and_a_passed_metadata_file_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid model name"):
        publish.publish_version(tmp_path, "../m", {}, {}, config_text=CONFIG, labels=LABELS)
    with pytest.raises(ValueError, match=r"metadata\.json"):
        publish.publish_version(
            tmp_path, "m", {"metadata.json": b"{}"}, {}, config_text=CONFIG, labels=LABELS
        )
    assert not (tmp_path / "m").exists() or publish.version_numbers(tmp_path / "m") == []


def test_metadata_cannot_override_the_version_fields(tmp_path: Path) -> None:
    version_dir = _publish(tmp_path, version=99, parent_version=42, model="other")
    document = _metadata(version_dir)
    assert (document["model"], document["version"], document["parent_version"]) == ("m", 1, None)


def test_published_files_are_readable_by_others(tmp_path: Path) -> None:
    version_dir = _publish(tmp_path)
    reference = tmp_path / "plain"
    reference.mkdir()
    # Not mkdtemp's 0o700: the version folder gets a plain mkdir's mode (umask applied), so a
    # server running as another user can read it.
    assert version_dir.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777
