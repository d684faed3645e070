"""`fleetserve rollout serve` as a real process over a repository with file plans, and the
`fleetserve rollout ...` client commands as processes against it.

Prometheus is deliberately not running here: an automated rollout cannot read its guardrails
and must not promote (it holds, then rolls back with reason `guardrails_unavailable`).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_ports
from tests.support.processes import terminate

TOKEN = secrets.token_urlsafe(24)
WRONG = secrets.token_urlsafe(24)
MODELS = ("alpha", "beta", "gamma", "delta")


def make_repo(root: Path) -> Path:
    repo = root / "models"
    for model in MODELS:
        for v in (1, 2, 3):
            (repo / model / str(v)).mkdir(parents=True)
        for v in (1, 2):
            meta = {
                "model": model,
                "version": v,
                "created": f"2026-01-0{v}T00:00:00Z",
                "metrics": {"test_accuracy": 0.9 + v / 100},
            }
            (repo / model / str(v) / "metadata.json").write_text(json.dumps(meta))
    return repo


class Controller:
    """A `fleetserve rollout serve` process on a free port, stopped by its pid."""

    def __init__(self, repo: Path, log: Path) -> None:
        self.port, self.prometheus_port = free_ports(2)  # nothing listens on the second
        self.repo = repo
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "FLEETSERVE_ADMIN_TOKEN": TOKEN}
        self.log_path = log
        cmd = [
            sys.executable,
            "-m",
            "fleetserve.cli",
            "rollout",
            "serve",
            "--model-repository",
            str(repo),
            "--prometheus-url",
            f"http://127.0.0.1:{self.prometheus_port}",
            "--port",
            str(self.port),
            "--host",
            "127.0.0.1",
        ]
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.call("GET", "/v1/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"controller not live within 30 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = TOKEN, raw: bytes | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            ctype = resp.getheader("content-type", "")
            parsed = json.loads(payload) if ctype.startswith("application/json") else payload.decode()
            return resp.status, parsed, {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def cli(self, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in self.env.items() if k != "FLEETSERVE_ADMIN_TOKEN"}
        if token:
            env["FLEETSERVE_ADMIN_TOKEN"] = token
        cmd = [sys.executable, "-m", "fleetserve.cli", "rollout", *args]
        if "--controller" not in args:
            cmd += ["--controller", self.url]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False)

    def plan_file(self, model: str) -> dict[str, Any]:
        return json.loads((self.repo / model / "rollout.json").read_text())

    def stop(self) -> int | None:
        terminate(self.proc)
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    root = tmp_path_factory.mktemp("rollout")
    c = Controller(make_repo(root), root / "controller.log")
    try:
        yield c
    finally:
        rc = c.stop()
        assert rc == 0, c.log()
        assert TOKEN not in c.log(), "the admin token was written to the log"


def transitions(text: str, model: str, from_stage: str, to_stage: str, reason: str) -> float | None:
    """The value of fleetserve_rollout_transitions_total with these labels in a /metrics page."""
    want = {"model": model, "from_stage": from_stage, "to_stage": to_stage, "reason": reason}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "fleetserve_rollout_transitions_total" and sample.labels == want:
                return sample.value
    return None


def error_of(body: Any) -> str:
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    assert TOKEN not in body["error"] and WRONG not in body["error"]
    return body["error"]


# --- HTTP ------------------------------------------------------------------------------------


def test_status_lists_versions_with_metadata(ctl: Controller) -> None:
    status, body, _ = ctl.call("GET", "/v1/models/alpha", token=None)
    assert status == 200 and body["model"] == "alpha" and body["plan"] is None and body["auto"] is None
    rows = {r["version"]: r for r in body["versions"]}
    assert sorted(rows) == [1, 2, 3]
    assert rows[1]["metadata"]["metrics"] == {"test_accuracy": pytest.approx(0.91)}
    assert rows[2]["metadata"]["created"] == "2026-01-02T00:00:00Z"
    assert rows[3]["metadata"] is None and rows[3]["stage"] == "production"  # the highest, no plan yet


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("", 401), (WRONG, 403)],
)
def test_posts_need_the_token(ctl: Controller, token: str | None, status: int) -> None:
    code, body, headers = ctl.call("POST", "/v1/models/alpha/stage", {"version": 2}, token=token)
    assert code == status
    error_of(body)
    if status == 401:
        assert headers["www-authenticate"].startswith("Bearer")
    assert not (ctl.repo / "alpha" / "rollout.json").exists()  # nothing was written


def test_stage_canary_promote_rollback_write_rollout_json(ctl: Controller) -> None:
    code, body, _ = ctl.call("POST", "/v1/models/alpha/promote", {"version": 1, "reason": "baseline"})
    assert code == 200, body
    assert ctl.plan_file("alpha")["production"] == 1

    code, body, _ = ctl.call("POST", "/v1/models/alpha/stage", {"version": 2, "actor": "alice"})
    assert code == 200, body
    plan = ctl.plan_file("alpha")
    assert plan["shadows"] == [2] and plan["production"] == 1
    assert {r["version"]: r["stage"] for r in body["versions"]} == {1: "production", 2: "shadow", 3: "none"}

    code, body, _ = ctl.call("POST", "/v1/models/alpha/canary", {"version": 2, "weight": 25})
    assert code == 200, body
    plan = ctl.plan_file("alpha")
    assert (plan["canary"], plan["canary_weight"], plan["shadows"]) == (2, 25.0, [])

    code, body, _ = ctl.call("POST", "/v1/models/alpha/promote", {})
    assert code == 200, body
    plan = ctl.plan_file("alpha")
    assert (plan["production"], plan["canary"]) == (2, None)

    ctl.call("POST", "/v1/models/alpha/canary", {"version": 3, "weight": 5})
    code, body, _ = ctl.call("POST", "/v1/models/alpha/rollback", {"reason": "too slow"})
    assert code == 200, body
    plan = ctl.plan_file("alpha")
    assert (plan["production"], plan["canary"], plan["canary_weight"]) == (2, None, 0.0)
    moves = [(t["version"], t["from_stage"], t["to_stage"], t["reason"]) for t in plan["history"]]
    assert moves == [
        (1, "none", "production", "manual"),
        (2, "none", "shadow", "manual"),
        (2, "shadow", "canary", "manual"),
        (2, "canary", "production", "manual"),
        (3, "none", "canary", "manual"),
        (3, "canary", "rolled_back", "manual"),
    ]
    assert plan["history"][1]["actor"] == "alice"
    assert plan["history"][-1]["detail"]["note"] == "too slow"
    assert plan["revision"] == 6

    code, body, _ = ctl.call("GET", "/v1/models", token=None)
    assert code == 200 and any(m["model"] == "alpha" and m["production"] == 2 for m in body["models"])

    code, text, headers = ctl.call("GET", "/metrics", token=None)
    assert code == 200 and headers["content-type"].startswith("text/plain")
    assert transitions(text, "alpha", "canary", "rolled_back", "manual") == 1.0


@pytest.mark.parametrize(
    ("method", "path", "raw", "status", "text"),
    [
        ("POST", "/v1/models/delta/stage", b"{not json", 400, "not valid JSON"),
        ("POST", "/v1/models/delta/stage", b"[1]", 400, "JSON object"),
        ("POST", "/v1/models/delta/stage", b"{}", 400, "'version' is required"),
        ("POST", "/v1/models/delta/stage", b'{"version": "x"}', 400, "positive integer"),
        ("POST", "/v1/models/delta/stage", b'{"version": true}', 400, "positive integer"),
        ("POST", "/v1/models/delta/stage", b'{"version": 9}', 404, "no version 9"),
        ("POST", "/v1/models/nope/stage", b'{"version": 1}', 404, "no model 'nope'"),
        ("POST", "/v1/models/delta/canary", b'{"version": 2}', 400, "'weight' is required"),
        ("POST", "/v1/models/delta/canary", b'{"version": 2, "weight": 150}', 400, "0..100"),
        ("POST", "/v1/models/delta/promote", b'{"version": 0}', 400, "positive integer"),
        ("POST", "/v1/models/delta/rollback", b"", 409, "nothing to roll back"),
        ("POST", "/v1/models/delta/auto", b'{"version": 2, "steps": [50, 5]}', 400, "increase"),
        ("POST", "/v1/models/delta/auto", b'{"version": 2, "dwell_s": "long"}', 400, "dwell_s"),
        ("POST", "/v1/models/delta/reset", b"{}", 404, "no route"),
        ("GET", "/v1/models/delta/stage", b"", 405, "use POST"),
        ("DELETE", "/v1/models/delta", b"", 405, "use GET"),
        ("GET", "/v1/models/..", b"", 400, "invalid model name"),
        ("GET", "/v2/models", b"", 404, "no route"),
        ("GET", "/v1/models/nope", b"", 404, "no model 'nope'"),
    ],
)
def test_client_mistakes_get_clear_errors(
    ctl: Controller, method: str, path: str, raw: bytes, status: int, text: str
) -> None:
    code, body, _ = ctl.call(method, path, raw=raw)
    assert code == status, body
    assert text in error_of(body)


def test_conflict_is_409(ctl: Controller) -> None:
    assert ctl.call("POST", "/v1/models/delta/promote", {"version": 1})[0] == 200
    code, body, _ = ctl.call("POST", "/v1/models/delta/canary", {"version": 1, "weight": 5})
    assert code == 409 and "is production" in error_of(body)
    code, body, _ = ctl.call("POST", "/v1/models/delta/stage", raw=b"x" * 70_000)
    assert code == 413


# --- CLI -------------------------------------------------------------------------------------


def test_cli_commands(ctl: Controller) -> None:
    out = ctl.cli("status", "beta", token=None)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("beta: no rollout plan (replicas serve the highest version)")
    assert "production" in next(line for line in out.stdout.splitlines() if "│ v3 " in line)

    out = ctl.cli("promote", "beta", "1", "--reason", "first")
    assert out.returncode == 0, out.stderr
    assert "beta: v1 none -> production" in out.stdout and "production v1" in out.stdout

    out = ctl.cli("stage", "beta", "2")
    assert out.returncode == 0, out.stderr
    assert "beta: v2 none -> shadow" in out.stdout and "shadows v2" in out.stdout

    out = ctl.cli("canary", "beta", "2", "--weight", "10")
    assert out.returncode == 0, out.stderr
    assert "beta: v2 shadow -> canary" in out.stdout and "canary v2 at 10 %" in out.stdout
    assert ctl.plan_file("beta")["canary_weight"] == 10

    out = ctl.cli("status", "beta", token=None)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "beta: production v1, canary v2 at 10 % (revision 3)"
    row2 = next(line for line in lines if "│ v2 " in line)
    assert "canary" in row2 and "10 %" in row2 and "test_accuracy=0.9200" in row2
    row3 = next(line for line in lines if "│ v3 " in line)
    assert "none" in row3
    assert any("v2 shadow -> canary [manual] by cli" in line for line in lines)

    out = ctl.cli("rollback", "beta", "--reason", "bad")
    assert out.returncode == 0, out.stderr
    assert "beta: v2 canary -> rolled_back" in out.stdout

    out = ctl.cli("promote", "beta", "3")
    assert out.returncode == 0, out.stderr
    assert ctl.plan_file("beta")["production"] == 3

    out = ctl.cli("status", token=None)
    assert out.returncode == 0 and "beta" in out.stdout


def test_cli_errors(ctl: Controller) -> None:
    out = ctl.cli("stage", "beta", "2", token=WRONG)
    assert out.returncode == 1 and "the admin token is not valid (HTTP 403)" in out.stderr
    out = ctl.cli("stage", "beta", "2", token=None)
    assert out.returncode == 1 and "HTTP 401" in out.stderr
    out = ctl.cli("canary", "beta", "7", "--weight", "5")
    assert out.returncode == 1 and "no version 7" in out.stderr and "HTTP 404" in out.stderr
    out = ctl.cli("auto", "beta", "2", "--steps", "5,x")
    assert out.returncode == 2 and "comma-separated" in out.stderr
    (port,) = free_ports(1)
    out = ctl.cli("status", "beta", "--controller", f"http://127.0.0.1:{port}")
    assert out.returncode == 2 and "cannot reach the rollout controller" in out.stderr


# --- automated rollout without Prometheus ----------------------------------------------------


def test_auto_without_prometheus_never_promotes(ctl: Controller) -> None:
    assert ctl.cli("promote", "gamma", "1").returncode == 0
    out = ctl.cli(
        "auto",
        "gamma",
        "2",
        "--steps",
        "50,100",
        "--shadow-requests",
        "1",
        "--dwell-s",
        "0",
        "--poll-s",
        "0.1",
        "--timeout-s",
        "1",
        "--wait",
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "automated rollout of v2 started" in out.stdout and "canary 50, 100 %" in out.stdout
    assert "guardrails cannot be read" in out.stdout
    assert "rolled_back" in out.stdout
    plan = ctl.plan_file("gamma")
    assert plan["production"] == 1 and plan["canary"] is None and plan["shadows"] == []
    last = plan["history"][-1]
    assert (last["version"], last["from_stage"], last["to_stage"]) == (2, "shadow", "rolled_back")
    assert last["reason"] == "guardrails_unavailable" and last["actor"] == "auto"
    assert "cannot query Prometheus" in last["detail"]["message"]
    _code, body, _ = ctl.call("GET", "/v1/models/gamma", token=None)
    assert body["auto"]["phase"] == "rolled_back" and not body["auto"]["running"]
    _, text, _ = ctl.call("GET", "/metrics", token=None)
    assert transitions(text, "gamma", "shadow", "rolled_back", "guardrails_unavailable") == 1.0


def test_auto_is_cancelled_by_a_manual_command(ctl: Controller) -> None:
    code, body, _ = ctl.call(
        "POST", "/v1/models/gamma/auto", {"version": 3, "poll_s": 0.2, "timeout_s": 600, "shadow_requests": 1}
    )
    assert code == 202, body
    assert body["auto"]["running"] and body["auto"]["phase"] == "shadow"
    assert ctl.plan_file("gamma")["shadows"] == [3]
    code, body, _ = ctl.call("POST", "/v1/models/gamma/auto", {"version": 3})
    assert code == 409 and "is running" in error_of(body)
    code, body, _ = ctl.call("POST", "/v1/models/gamma/rollback", {"reason": "changed my mind"})
    assert code == 200, body
    assert body["auto"]["phase"] == "cancelled" and "cancelled by rollback" in body["auto"]["message"]
    plan = ctl.plan_file("gamma")
    assert plan["shadows"] == [] and plan["production"] == 1
    assert plan["history"][-1]["reason"] == "manual"
