"""The retrain trigger: parsing the command, running it without a shell with the drifting
version in its environment, one at a time per model, and the cooldown."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from fleetserve.common.clock import FakeClock
from fleetserve.drift.retrain import (
    COOLDOWN,
    FAILED,
    NO_COMMAND,
    RUNNING,
    STARTED,
    Retrainer,
    parse_command,
)


def test_parse_command_forms() -> None:
    assert parse_command(None) is None
    assert parse_command("   ") is None
    assert parse_command("fleetserve train --model {model} --reason drift") == [
        "fleetserve",
        "train",
        "--model",
        "{model}",
        "--reason",
        "drift",
    ]
    assert parse_command("echo 'a b' ; rm -rf x") == ["echo", "a b", ";", "rm", "-rf", "x"]  # no shell
    assert parse_command('["python", "-c", "print(1)"]') == ["python", "-c", "print(1)"]
    assert parse_command(["a", "b"]) == ["a", "b"]
    with pytest.raises(ValueError, match="JSON list"):
        parse_command('["unclosed"')
    with pytest.raises(ValueError, match="list of strings"):
        parse_command("[1, 2]")


def wait_exit(retrainer: Retrainer, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while retrainer.running() and time.monotonic() < deadline:
        time.sleep(0.02)
        retrainer.poll()
    assert not retrainer.running(), "the retrain command did not finish"


def test_the_command_runs_with_the_version_in_its_environment(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    script = (
        "import json, os, sys; "
        "json.dump({'argv': sys.argv[2:], 'env': {k: v for k, v in os.environ.items() "
        "if k.startswith('FLEETSERVE_DRIFT_')}}, open(sys.argv[1], 'w'))"
    )
    clock = FakeClock()
    retrainer = Retrainer([sys.executable, "-c", script, str(out), "{model}", "v{version}"], 60.0, clock)
    result = retrainer.trigger("digits", "1", ["image[0].mean:psi", "class:js"])
    assert result.outcome == STARTED
    assert retrainer.running() == {"digits": "1"}
    assert retrainer.trigger("digits", "1", []).outcome == RUNNING  # one at a time per model
    wait_exit(retrainer)
    assert retrainer.exits == [("digits", "1", 0)]
    seen = json.loads(out.read_text())
    assert seen["argv"] == ["digits", "v1"]
    assert seen["env"] == {
        "FLEETSERVE_DRIFT_MODEL": "digits",
        "FLEETSERVE_DRIFT_VERSION": "1",
        "FLEETSERVE_DRIFT_FEATURES": "image[0].mean:psi,class:js",
        "FLEETSERVE_DRIFT_REASON": "drift",
    }
    # the cooldown holds for the model, whichever version asks
    clock.advance(30)
    cooled = retrainer.trigger("digits", "2", [])
    assert cooled.outcome == COOLDOWN and "30 s left" in cooled.detail
    assert retrainer.trigger("other", "1", []).outcome == STARTED  # other models are free
    wait_exit(retrainer)
    clock.advance(31)
    assert retrainer.trigger("digits", "2", []).outcome == STARTED
    wait_exit(retrainer)
    assert retrainer.outcomes == {
        ("digits", "1", STARTED): 1,
        ("other", "1", STARTED): 1,
        ("digits", "2", STARTED): 1,
    }


def test_failures_and_no_command_are_counted() -> None:
    missing = Retrainer(["/nonexistent/fleetserve-retrain"], 0.0, FakeClock())
    result = missing.trigger("digits", "1", [])
    assert result.outcome == FAILED and "nonexistent" in result.detail
    assert missing.running() == {}
    none = Retrainer(None, 0.0, FakeClock())
    assert none.trigger("digits", "1", []).outcome == NO_COMMAND
    assert missing.outcomes == {("digits", "1", FAILED): 1}
    assert none.outcomes == {("digits", "1", NO_COMMAND): 1}


def test_a_failing_command_reports_its_status() -> None:
    retrainer = Retrainer([sys.executable, "-c", "raise SystemExit(3)"], 0.0, FakeClock())
    assert retrainer.trigger("digits", "1", []).outcome == STARTED
    wait_exit(retrainer)
    assert retrainer.exits == [("digits", "1", 3)]


def test_a_failed_command_is_retried_after_retry_s_not_the_cooldown() -> None:
    clock = FakeClock()
    retrainer = Retrainer([sys.executable, "-c", "raise SystemExit(3)"], 3600.0, clock, retry_s=60.0)
    assert retrainer.trigger("digits", "1", []).outcome == STARTED
    assert not retrainer.failed("digits")  # still running
    wait_exit(retrainer)
    assert retrainer.failed("digits")
    clock.advance(30)
    early = retrainer.trigger("digits", "1", [])
    assert early.outcome == COOLDOWN and "retry after a failed retraining: 30 s left" in early.detail
    clock.advance(31)
    assert retrainer.trigger("digits", "1", []).outcome == STARTED
    assert not retrainer.failed("digits")


def test_a_successful_command_keeps_the_full_cooldown() -> None:
    clock = FakeClock()
    retrainer = Retrainer([sys.executable, "-c", "pass"], 3600.0, clock, retry_s=60.0)
    assert retrainer.trigger("digits", "1", []).outcome == STARTED
    wait_exit(retrainer)
    assert not retrainer.failed("digits")
    clock.advance(61)
    assert retrainer.trigger("digits", "1", []).outcome == COOLDOWN
