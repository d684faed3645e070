"""Issue 6 end to end: the short continuous-training loop (`python -m loadtests.ct_loop --short`).

Real Redis, `fleetserve serve`, the predlog writer, the drift monitor, the trainer, the rollout
controller and Prometheus, on free loopback ports. Clean digits raise no alarm; inverted digits
raise it within 500 requests; the monitor starts the retraining on the labelled inverted rows;
the trainer publishes v2 (reason drift) and hands it to the controller, which shadows, canaries
and promotes it with no manual call; the promoted version reads inverted held-out digits within
2 points of v1 on clean ones; every request was answered 200; nothing is left running.

The report is printed (`pytest -s`). Under CI=true a missing redis-server or prometheus fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fleetserve.cluster import programs
from loadtests import ct_loop
from tests.unit.trainer.production_folder import write_folder

ROOT = Path(__file__).resolve().parents[2]

DRIFT_BUDGET = 500


def _require(program: programs.Program) -> None:
    if programs.find(program, None) is None:
        reason = f"{program.name} is not installed ({program.install_command()})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true: the loop must run")
        pytest.skip(reason)


def _processes_naming(folder: Path) -> list[str]:
    """Command lines of running processes that mention `folder` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> ct_loop.Loop:
    _require(programs.REDIS)
    _require(programs.PROMETHEUS)
    loop = ct_loop.Loop(ct_loop.SHORT, tmp_path_factory.mktemp("ct-loop"))
    report = loop.run()
    print("\n" + ct_loop.render(report))
    return loop


@pytest.fixture(scope="module")
def report(loop: ct_loop.Loop) -> ct_loop.Report:
    return loop.report


def test_the_loop_reaches_the_promotion(report: ct_loop.Report) -> None:
    assert report.outcome == "promoted", f"{ct_loop.render(report)}\n{report.logs}"


def test_no_alarm_on_clean_traffic_and_an_alarm_within_500_inverted_requests(report: ct_loop.Report) -> None:
    assert report.clean_requests > 0 and not report.clean_alarm
    assert report.drifted_requests_to_alarm is not None
    assert report.drifted_requests_to_alarm <= DRIFT_BUDGET
    assert report.stages["drift_start"] <= report.stages["alarm"] <= report.stages["retrain_started"]


def test_v2_is_published_by_the_trainer_because_of_drift(report: ct_loop.Report) -> None:
    meta = report.v2_metadata
    assert (meta.get("reason"), meta.get("parent_version")) == ("drift", 1), meta
    rows = meta["production_rows"]
    assert rows["train_rows"] + rows["evaluation_rows"] >= ct_loop.SHORT.min_rows  # the labelled traffic
    assert report.stages["retrain_started"] < report.stages["v2_published"]


def test_v2_is_promoted_by_the_controller_with_no_manual_call(report: ct_loop.Report) -> None:
    history = report.v2_history
    assert history, "v2 has no transitions"
    assert {t["actor"] for t in history} == {"auto"}, history
    stages = [t["to_stage"] for t in history]
    assert stages[0] == "shadow" and stages[-1] == "production", stages
    assert stages.count("canary") == len(ct_loop.SHORT.auto["steps"]), stages
    assert report.promoted_version == 2 and report.served_after == ["2"]


def test_accuracy_on_drifted_data_after_the_loop_is_within_2_points_of_v1_on_clean_data(
    report: ct_loop.Report,
) -> None:
    assert report.v1_clean_test_accuracy is not None and report.promoted_inverted_test_accuracy is not None
    assert report.v1_inverted_test_accuracy is not None
    assert report.v1_inverted_test_accuracy < 0.5  # the drift: v1 cannot read inverted digits
    assert report.promoted_inverted_test_accuracy >= report.v1_clean_test_accuracy - 0.02


def test_zero_failed_requests_and_no_label_lost(report: ct_loop.Report) -> None:
    assert report.requests > report.drifted_requests > 0
    assert report.failed_requests == 0, report.failures
    assert report.labels_accepted > 0 and report.labels_lost == 0


def test_every_process_is_stopped(loop: ct_loop.Loop) -> None:
    assert loop.report.processes_left == []
    assert {p.name for p in loop.parts} == {
        "redis",
        "gateway",
        "predlog",
        "drift",
        "controller",
        "prometheus",
    }
    assert all(p.proc is not None and p.proc.poll() is not None for p in loop.parts)
    if Path("/proc").is_dir():  # the trainer too (a child of the monitor)
        assert _processes_naming(loop.work) == []


# --- the loop's retrain command: it waits for the labelled rows, then runs the trainer ---------


def _retrain(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "loadtests.ct_retrain", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_the_retrain_command_runs_the_trainer_once_the_labelled_rows_are_there(tmp_path: Path) -> None:
    images = np.zeros((12, 1, 8, 8), np.float32)
    write_folder(tmp_path, images, [i % 10 for i in range(10)] + [None, None])  # 10 labelled
    trainer = [
        sys.executable,
        "-c",
        "import sys; print('trainer', sys.argv[1:]); sys.exit(7)",
        "--epochs",
        "1",
    ]
    done = _retrain(
        "--production-data", str(tmp_path), "--min-rows", "10", "--timeout-s", "5", "--", *trainer
    )
    assert done.returncode == 7, done.stdout + done.stderr  # the trainer's own exit status
    assert "10 labelled rows" in done.stdout and "trainer ['--epochs', '1']" in done.stdout


def test_the_retrain_command_refuses_to_train_on_too_few_rows(tmp_path: Path) -> None:
    write_folder(tmp_path, np.zeros((3, 1, 8, 8), np.float32), [1, 2, 3])
    never = [sys.executable, "-c", "raise SystemExit('the trainer must not run')"]
    done = _retrain("--production-data", str(tmp_path), "--min-rows", "10", "--timeout-s", "1", "--", *never)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "only 3 labelled rows of digits" in done.stderr and "10 needed: not training" in done.stderr
