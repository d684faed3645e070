"""Supervision: restart backoff, a process that dies is restarted after its delay, a process
that fails while starting stops the start-up with its log, and stopping goes in reverse."""

from __future__ import annotations

import io
import sys
import threading
from pathlib import Path

import pytest
from rich.console import Console

from fleetserve.cluster import components
from fleetserve.cluster.components import Component
from fleetserve.cluster.process import Backoff
from fleetserve.cluster.settings import UpSettings
from fleetserve.cluster.supervisor import StartFailed, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Always:
    def __init__(self, answer: bool = True) -> None:
        self.answer = answer

    def ready(self) -> bool:
        return self.answer

    def describe(self) -> str:
        return "always" if self.answer else "never"


def test_backoff_doubles_to_its_bound_and_resets_after_a_stable_run() -> None:
    b = Backoff(first=0.5, most=4.0, stable_s=30.0)
    assert [b.next_delay(1.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert b.next_delay(31.0) == 0.5
    assert b.next_delay(0.1) == 1.0


def _cluster(tmp_path: Path, *specs: tuple[str, str, bool]) -> components.Cluster:
    """A cluster of Python one-liners: (name, code, ready)."""
    comps = [
        Component(
            name, "test", [sys.executable, "-c", code], tmp_path / f"{name}.log", Always(ready), stage=i
        )
        for i, (name, code, ready) in enumerate(specs)
    ]
    s = UpSettings(data_dir=tmp_path, ready_timeout_s=5)
    cluster = components.build(
        s.model_copy(update={"nginx_bin": "/x", "redis_bin": "/x", "prometheus_bin": "/x"})
    )
    cluster.components = comps
    return cluster


def _supervisor(cluster: components.Cluster, clock: Clock) -> tuple[Supervisor, io.StringIO]:
    out = io.StringIO()
    return Supervisor(cluster, Console(file=out, width=200), threading.Event(), clock, tick_s=0.01), out


def test_a_process_that_dies_is_restarted_after_its_backoff(tmp_path: Path) -> None:
    clock = Clock()
    sup, out = _supervisor(_cluster(tmp_path, ("short", "print('hello')", True)), clock)
    assert sup.start()
    m = sup.processes[0]
    m.proc.wait(10)  # type: ignore[union-attr]
    sup.tick()
    assert m.restart_at == pytest.approx(1000.5) and m.starts == 1
    sup.tick()  # not yet due
    assert m.starts == 1
    clock.now += 0.6
    first_pid = m.pid
    sup.tick()
    assert m.starts == 2 and m.pid != first_pid
    m.proc.wait(10)  # type: ignore[union-attr]
    sup.tick()
    assert m.restart_at == pytest.approx(clock.now + 1.0)  # doubled: the run was short
    sup.stop_all()
    text = out.getvalue()
    assert "short (pid" in text and "exited with status 0" in text and "restarting in 0.5 s" in text
    assert (tmp_path / "short.log").read_text().splitlines().count("hello") == 2
    assert '"status": "stopped"' in (tmp_path / "cluster.json").read_text()


def test_a_process_that_fails_while_starting_stops_the_start_with_its_log(tmp_path: Path) -> None:
    code = "import sys; print('cannot bind the thing'); sys.exit(3)"
    sup, _ = _supervisor(_cluster(tmp_path, ("broken", code, False)), Clock())
    with pytest.raises(StartFailed, match=r"(?s)broken exited with status 3.*cannot bind the thing"):
        sup.start()
    sup.stop_all()


def test_a_process_never_ready_times_out_naming_its_probe(tmp_path: Path) -> None:
    clock = Clock()
    cluster = _cluster(tmp_path, ("slow", "import time; time.sleep(30)", False))
    sup, _ = _supervisor(cluster, clock)
    ticks = iter(range(1000))

    def advancing() -> float:
        clock.now += 1.0 if next(ticks) > 2 else 0.0
        return clock.now

    sup.clock = advancing
    with pytest.raises(StartFailed, match=r"not ready within 5 s: slow: never"):
        sup.start()
    sup.stop_all()
    assert sup.processes[0].exit_code() is not None


def test_stop_goes_in_reverse_start_order(tmp_path: Path) -> None:
    sleeper = "import time; time.sleep(60)"
    cluster = _cluster(
        tmp_path, ("first", sleeper, True), ("second", sleeper, True), ("third", sleeper, True)
    )
    sup, out = _supervisor(cluster, Clock())
    assert sup.start()
    sup.stop_all()
    lines = [line for line in out.getvalue().splitlines() if " stopped " in line]
    assert [line.split()[2] for line in lines] == ["third", "second", "first"]
    assert all(m.exit_code() is not None for m in sup.processes)
