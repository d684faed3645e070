"""Triton's version policy: which of a model's version folders are served."""

from __future__ import annotations

from pathlib import Path

from fleetserve.wire import model_config_pb2 as mc


def version_folders(model_dir: Path) -> list[int]:
    """The positive-integer version folders of a model, ascending; other names are ignored."""
    found: list[int] = []
    for entry in model_dir.iterdir():
        name = entry.name
        # "007" is not version 7: the loader finds a version's folder by str(version).
        if entry.is_dir() and name.isdigit() and name.isascii() and int(name) > 0 and name[0] != "0":
            found.append(int(name))
    return sorted(found)


def select(policy: mc.ModelVersionPolicy, available: list[int]) -> list[int]:
    """The versions the policy serves out of those available (default: the latest one)."""
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return sorted(available)
    if choice == "specific":
        wanted = set(policy.specific.versions)
        return sorted(v for v in available if v in wanted)
    n = policy.latest.num_versions if choice == "latest" and policy.latest.num_versions > 0 else 1
    return sorted(available)[-n:]
