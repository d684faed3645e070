"""Triton's version policy over a model's version folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetserve.repository import policy
from fleetserve.wire import model_config_pb2 as mc


def test_version_folders_keeps_positive_integer_folders_only(tmp_path: Path) -> None:
    for name in (
        "1",
        "10",
        "2",
        "0",
        "-3",
        "v4",
        ".tmp-xyz",
        ".tmp-5",
        "7b",
        "007",
        "\u0661",
    ):  # ARABIC-INDIC DIGIT ONE
        (tmp_path / name).mkdir()
    (tmp_path / "3").write_text("a file, not a version")
    (tmp_path / "config.pbtxt").write_text("")
    assert policy.version_folders(tmp_path) == [1, 2, 10]


def test_version_folders_of_an_empty_model(tmp_path: Path) -> None:
    assert policy.version_folders(tmp_path) == []


def test_default_policy_is_the_latest_version() -> None:
    assert policy.select(mc.ModelVersionPolicy(), [1, 5, 3]) == [5]


def test_no_versions_selects_nothing() -> None:
    assert policy.select(mc.ModelVersionPolicy(), []) == []


@pytest.mark.parametrize(("n", "expected"), [(0, [5]), (1, [5]), (2, [3, 5]), (10, [1, 3, 5])])
def test_latest_n(n: int, expected: list[int]) -> None:
    p = mc.ModelVersionPolicy(latest=mc.ModelVersionPolicy.Latest(num_versions=n))
    assert policy.select(p, [3, 1, 5]) == expected


def test_all() -> None:
    p = mc.ModelVersionPolicy(all=mc.ModelVersionPolicy.All())
    assert policy.select(p, [3, 1, 5]) == [1, 3, 5]


def test_specific() -> None:
    p = mc.ModelVersionPolicy(specific=mc.ModelVersionPolicy.Specific(versions=[5, 1, 9]))
    assert policy.select(p, [1, 3, 5]) == [1, 5]


def test_specific_with_none_present() -> None:
    p = mc.ModelVersionPolicy(specific=mc.ModelVersionPolicy.Specific(versions=[9]))
    assert policy.select(p, [1, 3]) == []
