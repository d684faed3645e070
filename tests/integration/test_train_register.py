"""`fleetserve train --register URL` against a real `fleetserve rollout serve`: the production
version is read from the controller, and the published version is handed to it as the
candidate of an automated rollout."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetserve.trainer.pipeline import run
from fleetserve.trainer.register import RegistrationError
from tests.support.ports import free_ports
from tests.support.processes import terminate

ROOT = Path(__file__).resolve().parents[2]
TOKEN = secrets.token_urlsafe(24)


class ControllerProcess:
    """`fleetserve rollout serve` on a free loopback port, stopped by its pid. Nothing listens
    on its Prometheus port, so an automated rollout never promotes here."""

    def __init__(self, repository: Path, log: Path) -> None:
        port, prometheus_port = free_ports(2)
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "fleetserve.cli", "rollout", "serve", "--model-repository"]
        command += [str(repository), "--port", str(port), "--host", "127.0.0.1"]
        command += ["--prometheus-url", f"http://127.0.0.1:{prometheus_port}"]
        self.log_path = log
        self._log = log.open("wb")
        env = {**os.environ, "FLEETSERVE_ADMIN_TOKEN": TOKEN}
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                self.get("/v1/health")
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the controller did not come up:\n{log.read_text(errors='replace')}")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        terminate(self.proc)
        self._log.close()


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "model_repository" / "digits", tmp_path / "models" / "digits")
    return tmp_path / "models"


@pytest.fixture
def controller(repository: Path, tmp_path: Path) -> Iterator[ControllerProcess]:
    process = ControllerProcess(repository, tmp_path / "controller.log")
    yield process
    process.stop()


def _train(repository: Path, url: str, token: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FLEETSERVE_ADMIN_TOKEN"}
    if token is not None:
        env["FLEETSERVE_ADMIN_TOKEN"] = token
    command = [sys.executable, "-m", "fleetserve.cli", "train", "--model-repository", str(repository)]
    # one epoch and a margin of 1: any candidate passes, this test is about the hand-over
    command += ["--epochs", "1", "--gate-margin", "1", "--threads", "1", "--no-progress", "--register", url]
    return subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)


def test_the_new_version_is_handed_to_the_controller(repository: Path, controller: ControllerProcess) -> None:
    done = _train(repository, controller.url, TOKEN)
    assert done.returncode == 0, done.stderr
    assert "automated rollout of v2 started" in done.stdout
    metadata = json.loads((repository / "digits" / "2" / "metadata.json").read_text())
    assert (metadata["production_version"], metadata["production_version_source"]) == (
        1,
        "rollout controller",
    )
    status = controller.get("/v1/models/digits")
    assert status["auto"]["version"] == 2
    assert [row["version"] for row in status["versions"]] == [1, 2]
    # v1 was pinned as production before v2 appeared, so v2 takes no traffic before its rollout
    assert status["plan"]["production"] == 1
    pinned = [t for t in status["plan"]["history"] if t["to_stage"] == "production"]
    assert [(t["version"], t["actor"]) for t in pinned] == [(1, "trainer")]
    assert "pinned digits v1 as production" in done.stderr


def test_a_controller_that_refuses_the_trainer_gets_nothing_published(
    repository: Path, controller: ControllerProcess
) -> None:
    # the trainer pins production before it publishes; refused there, it publishes nothing
    done = _train(repository, controller.url, "not-the-token")
    assert done.returncode == 2
    assert "cannot pin digits v1 as production before publishing" in done.stderr
    assert "HTTP 403" in done.stderr
    assert not (repository / "digits" / "2").exists()
    assert controller.get("/v1/models/digits")["auto"] is None


def test_an_unreachable_controller_stops_before_training(repository: Path) -> None:
    (port,) = free_ports(1)
    with pytest.raises(RegistrationError, match="cannot reach the rollout controller"):
        run("digits", repository, epochs=1, register=f"http://127.0.0.1:{port}")
    assert not (repository / "digits" / "2").exists()
