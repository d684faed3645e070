"""Shared fixtures: a real server over a repository of small models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import models
from tests.support.server import ServerProcess


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with digits, double and an identity model per v2 datatype."""
    repo = tmp_path_factory.mktemp("repo") / "models"
    repo.mkdir()
    models.digits_model(repo)
    models.double_model(repo)
    for datatype in models.ONNX_TYPES:
        if datatype != "BF16":  # onnxruntime's Python API cannot pass bfloat16 (TorchScript serves it)
            models.identity_model(repo, datatype)
    models.identity_model(repo, "FP32", name="identity_wide", width="W")
    return repo


@pytest.fixture(scope="session")
def server(model_repo: Path) -> Iterator[ServerProcess]:
    """One real server shared by the conformance tests (poll mode, the default; no token)."""
    with ServerProcess(model_repo) as proc:
        yield proc
