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
from pathlib import Path

import pytest

from fleetserve.cluster import programs
from loadtests import ct_loop

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
