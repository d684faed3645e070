"""The trainer's calls to the rollout controller, against a fake controller on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fleetserve.trainer.register import (
    RegistrationError,
    controller_production_version,
    hand_over,
    latest_version,
    pin_production,
    rollout_options,
)


class FakeController:
    """Answers GET /v1/models/<m> with `status` and records POSTs; `refuse` makes POSTs fail."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {"model": "digits", "plan": None, "versions": []}
        self.posts: list[tuple[str, dict[str, Any], str | None]] = []
        self.refuse = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, code: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path == "/v1/models/digits":
                    self._answer(200, fake.status)
                else:
                    self._answer(404, {"error": "no model 'x' in the repository and no rollout plan for it"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.posts.append((self.path, body, self.headers.get("Authorization")))
                if fake.refuse:
                    self._answer(409, {"error": "an automated rollout of digits is already running"})
                else:
                    self._answer(200, {"auto": {"config": {"shadow_requests": 100, "steps": [5.0, 50.0]}}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()
        self.stopped = False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()


@pytest.fixture
def controller() -> Iterator[FakeController]:
    fake = FakeController()
    yield fake
    fake.stop()


def test_the_production_stage_of_the_versions_names_the_production_version(
    controller: FakeController,
) -> None:
    controller.status["versions"] = [
        {"version": 1, "stage": "production"},
        {"version": 2, "stage": "rolled_back"},
    ]
    assert controller_production_version(controller.url, "digits") == 1
    controller.status["versions"] = []
    controller.status["plan"] = {"production": 3}
    assert controller_production_version(controller.url, "digits") == 3
    controller.status["plan"] = None
    assert controller_production_version(controller.url, "digits") is None


def test_a_model_the_controller_does_not_know_has_no_production_version(controller: FakeController) -> None:
    assert controller_production_version(controller.url, "x") is None


def test_an_unreachable_controller_is_an_error_naming_it(controller: FakeController) -> None:
    url = controller.url
    controller.stop()
    with pytest.raises(RegistrationError, match="cannot reach the rollout controller"):
        controller_production_version(url, "digits")


def test_hand_over_starts_the_automated_rollout_with_the_token(controller: FakeController) -> None:
    hand_over(controller.url, "digits", 4, token="secret")
    ((path, body, auth),) = controller.posts
    assert path == "/v1/models/digits/auto"
    assert body["version"] == 4
    assert auth == "Bearer secret"


def test_a_refused_hand_over_says_the_version_is_published(controller: FakeController) -> None:
    controller.refuse = True
    with pytest.raises(RegistrationError, match="v4 is published"):
        hand_over(controller.url, "digits", 4)


def test_latest_version_of_the_repository(tmp_path: Path) -> None:
    assert latest_version(tmp_path / "digits") is None
    for name in ("1", "3", ".tmp-abc", "x"):
        (tmp_path / "digits" / name).mkdir(parents=True)
    assert latest_version(tmp_path / "digits") == 3


def test_pin_production_pins_only_when_the_plan_has_none(controller: FakeController) -> None:
    assert pin_production(controller.url, "digits", 1, token="secret")
    path, body, auth = controller.posts[-1]
    assert path == "/v1/models/digits/promote" and body["version"] == 1 and auth == "Bearer secret"
    controller.status["plan"] = {"production": 1}
    assert not pin_production(controller.url, "digits", 1)
    assert len(controller.posts) == 1


def test_a_drift_candidate_is_handed_over_without_judging_agreement(controller: FakeController) -> None:
    hand_over(controller.url, "digits", 4, reason="drift")
    _, body, _ = controller.posts[-1]
    assert body["judge_agreement"] is False and body["require_accuracy"] is True
    hand_over(controller.url, "digits", 5)
    _, body, _ = controller.posts[-1]
    assert "judge_agreement" not in body and "require_accuracy" not in body
    assert rollout_options("manual") == {}
