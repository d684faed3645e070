"""New versions appear and old ones go without a restart, under continuous load, and no
request fails; every answer names the version that computed it."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support import models
from tests.support.server import ServerProcess


def _publish(repo: Path, version: int) -> None:
    """Write version `version` of `double` in a temporary folder and rename it into place."""
    staging = repo / "staging"
    models.double_model(staging, versions=(version,))
    os.rename(staging / "double" / str(version), repo / "double" / str(version))
    shutil.rmtree(staging)


def _ready_version(server: ServerProcess) -> list[str]:
    with urllib.request.urlopen(f"{server.base}/v2/models/double", timeout=5) as r:
        return json.loads(r.read())["versions"]


def test_versions_come_and_go_under_load_without_a_failed_request(tmp_path: Path) -> None:
    repo = tmp_path / "models"
    models.double_model(repo, versions=(1,))
    body = json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]}]}
    ).encode()
    failures: list[str] = []
    answers: list[tuple[str, float]] = []
    stop = threading.Event()

    def load(server: ServerProcess) -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            req = urllib.request.Request(f"{server.base}/v2/models/double/infer", data=body, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    answer = json.loads(r.read())
                answers.append((answer["model_version"], answer["outputs"][0]["data"][0]))
            except (urllib.error.URLError, OSError, ValueError) as exc:
                failures.append(repr(exc))

    with ServerProcess(repo, "--repository-poll-secs", "0.2") as server:
        threads = [threading.Thread(target=load, args=(server,)) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            _publish(repo, 2)  # latest 1: version 2 replaces version 1
            _wait(lambda: _ready_version(server) == ["2"], "version 2 to replace version 1")
            time.sleep(0.5)
            _publish(repo, 3)
            _wait(lambda: _ready_version(server) == ["3"], "version 3 to replace version 2")
            shutil.rmtree(repo / "double" / "3")  # removing the newest brings back the latest left
            _wait(lambda: _ready_version(server) == ["2"], "version 2 to come back")
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert server.alive()
    assert not failures, failures[:5]
    seen = {v for v, _ in answers}
    assert {"1", "2", "3"} <= seen
    for version, y in answers:
        assert y == 2.0 * int(version), (version, y)  # the version named is the one that computed


def _wait(predicate, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
