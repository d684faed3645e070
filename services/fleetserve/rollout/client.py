"""The `fleetserve rollout status|stage|canary|promote|rollback|auto` commands: clients of the
controller's HTTP API (token from FLEETSERVE_ADMIN_TOKEN), printing readable output.

Each command returns the process exit status: 0 done, 1 refused or failed (the controller's
message goes to stderr), 2 the controller could not be reached.
"""

from __future__ import annotations

import getpass
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


class ControllerError(Exception):
    """The controller answered with an error, or could not be reached (status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_steps(text: str) -> list[float]:
    """'5,25,50,100' -> [5.0, 25.0, 50.0, 100.0] (ValueError on anything else)."""
    try:
        steps = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"steps must be comma-separated percentages, not {text!r}") from None
    if not steps:
        raise ValueError("at least one step is needed")
    return steps


def call(
    controller: str, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None
) -> Any:
    """One API call; the decoded JSON answer, or ControllerError."""
    url = controller.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            message = json.loads(raw).get("error") or raw.decode(errors="replace")
        except (ValueError, AttributeError):
            message = raw.decode(errors="replace") or exc.reason
        raise ControllerError(exc.code, str(message)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ControllerError(0, f"cannot reach the rollout controller at {controller}: {reason}") from None


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=120)


def _v(version: Any) -> str:
    return "-" if version is None else f"v{int(version)}"


def _when(ts: Any) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S")


def _run(fn: Any, *args: Any) -> int:
    try:
        fn(*args)
    except ControllerError as exc:
        where = f" (HTTP {exc.status})" if exc.status else ""
        print(f"fleetserve rollout: {exc.message}{where}", file=sys.stderr)
        return 2 if exc.status == 0 else 1
    return 0


def _plan_line(st: dict[str, Any]) -> str:
    plan = st.get("plan")
    if not plan:
        return f"{st['model']}: no rollout plan (replicas serve the highest version)"
    parts = [f"production {_v(plan.get('production'))}"]
    if plan.get("canary") is not None:
        parts.append(f"canary {_v(plan['canary'])} at {plan.get('canary_weight', 0):g} %")
    if plan.get("shadows"):
        parts.append("shadows " + ", ".join(_v(s) for s in plan["shadows"]))
    return f"{st['model']}: " + ", ".join(parts) + f" (revision {plan.get('revision', 0)})"


def print_status(st: dict[str, Any], console: Console | None = None, history: int = 5) -> None:
    """The plan, a table of versions (stage, trainer metrics, timestamps), the auto run, recent history."""
    console = console or _console()
    console.print(_plan_line(st), highlight=False, markup=False)
    table = Table("version", "stage", "weight", "metrics", "created", "last change")
    for row in st.get("versions", []):
        meta = row.get("metadata") or {}
        metrics = meta.get("metrics") or {}
        shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        if row.get("metadata_error"):
            shown = row["metadata_error"]
        weight = row.get("weight")
        cells = (
            _v(row["version"]),
            row["stage"],
            "-" if weight is None else f"{weight:g} %",
            shown or "-",
            str(meta.get("created", "-")),
            _when(row.get("last_transition_at")),
        )
        table.add_row(*(Text(c) for c in cells))
    console.print(table)
    auto = st.get("auto")
    if auto:
        state = "running" if auto.get("running") else "ended"
        console.print(
            f"auto {_v(auto['version'])}: {auto['phase']} ({state}) - {auto.get('message', '')}",
            highlight=False,
        )
    recent = ((st.get("plan") or {}).get("history") or [])[-history:]
    for t in recent:
        detail = t.get("detail") or {}
        extra = ", ".join(f"{k}={_fmt(v)}" for k, v in detail.items())
        console.print(
            f"  {_when(t['time'])} {_v(t.get('version'))} {t['from_stage']} -> {t['to_stage']}"
            f" [{t['reason']}] by {t.get('actor') or '-'}" + (f" ({extra})" if extra else ""),
            highlight=False,
            markup=False,
        )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}" if value == int(value) or abs(value) >= 1e-3 else f"{value:.3g}"
    return str(value)


def status(controller: str, model: str | None) -> int:
    """Print a model's status (or the list of models with a plan)."""

    def go() -> None:
        if model is None:
            rows = call(controller, "GET", "/v1/models")["models"]
            console = _console()
            table = Table("model", "production", "canary", "weight", "shadows", "auto")
            for r in rows:
                cells = (
                    r["model"],
                    _v(r["production"]),
                    _v(r["canary"]),
                    f"{r['canary_weight']:g} %" if r["canary"] is not None else "-",
                    ", ".join(_v(s) for s in r["shadows"]) or "-",
                    r.get("auto") or "-",
                )
                table.add_row(*(Text(c) for c in cells))
            console.print(table)
            return
        print_status(call(controller, "GET", f"/v1/models/{urllib.parse.quote(model, safe='')}"))

    return _run(go)


def command(controller: str, token: str | None, model: str, name: str, body: dict[str, Any]) -> int:
    """POST a command (stage, canary, promote, rollback) and print what the plan became."""

    def go() -> None:
        payload = {"actor": _actor(), **{k: v for k, v in body.items() if v is not None}}
        path = f"/v1/models/{urllib.parse.quote(model, safe='')}/{name}"
        st = call(controller, "POST", path, payload, token)
        history = (st.get("plan") or {}).get("history") or []
        made = [t for t in history if t.get("time") == history[-1].get("time")] if history else []
        for t in made:
            print(f"{model}: {_v(t.get('version'))} {t.get('from_stage')} -> {t.get('to_stage')}")
        print(_plan_line(st))

    return _run(go)


def auto(
    controller: str, token: str | None, model: str, version: int, options: dict[str, Any], wait: bool = False
) -> int:
    """Start an automated rollout; with `wait`, follow it until it ends (0 only when promoted)."""
    outcome: list[str] = []

    def go() -> None:
        payload = {
            "actor": _actor(),
            "version": version,
            **{k: v for k, v in options.items() if v is not None},
        }
        path = f"/v1/models/{urllib.parse.quote(model, safe='')}/auto"
        st = call(controller, "POST", path, payload, token)
        cfg = (st.get("auto") or {}).get("config") or {}
        steps = ", ".join(f"{s:g}" for s in cfg.get("steps", []))
        print(
            f"{model}: automated rollout of v{version} started: shadow until {cfg.get('shadow_requests')} "
            f"comparisons, then canary {steps} % ({cfg.get('dwell_s', 0):g} s each), then promote"
        )
        if not wait:
            print(f"  follow it with: fleetserve rollout status {model}")
            return
        last = ""
        while True:
            st = call(controller, "GET", f"/v1/models/{urllib.parse.quote(model, safe='')}")
            a = st.get("auto") or {}
            line = f"  {a.get('phase')}: {a.get('message', '')}"
            if line != last:
                print(line, flush=True)
                last = line
            if not a.get("running", False):
                outcome.append(str(a.get("phase")))
                print(_plan_line(st))
                return
            time.sleep(1.0)

    rc = _run(go)
    if rc == 0 and wait and outcome != ["promoted"]:
        return 1
    return rc
