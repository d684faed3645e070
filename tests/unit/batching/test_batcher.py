"""The generic Batcher with a fake `run`, an injected clock, and executors made busy on purpose."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from fleetserve.batching.batcher import Batcher, BatcherClosed, BatchReport
from fleetserve.common.clock import FakeClock

WAIT = 5.0  # seconds; a bound on waits that normally take microseconds


class Runner:
    """A fake `run`: records batches; blocks on `gate` while it is closed."""

    def __init__(self, *, blocking: bool = False) -> None:
        self.calls: list[list[Any]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        if not blocking:
            self.gate.set()
        self.fail_with: Exception | None = None
        self.result: Any = None  # when set, returned as is instead of one result per item

    def __call__(self, items: list[Any]) -> Any:
        self.calls.append(list(items))
        self.entered.set()
        assert self.gate.wait(WAIT), "test never opened the gate"
        if self.fail_with is not None:
            exc, self.fail_with = self.fail_with, None
            raise exc
        if self.result is not None:
            result, self.result = self.result, None
            return result
        return [f"r-{item}" for item in items]

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, WAIT)
        self.entered.clear()


async def _until(predicate, what: str) -> None:
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"timed out waiting for {what}")


async def _busy_then_queue(batcher: Batcher, runner: Runner, first: Any, queued: list[tuple[Any, int, Any]]):
    """Submit `first` and hold it in `run`; queue the rest behind it. Returns the tasks."""
    head = asyncio.create_task(batcher.submit(first))
    await runner.wait_entered()
    tasks = [asyncio.create_task(batcher.submit(item, size, key)) for item, size, key in queued]
    await _until(lambda: batcher.depth == len(queued), "items to queue")
    return head, tasks


async def test_single_item_result() -> None:
    runner = Runner()
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=4)
    assert await batcher.submit("a") == "r-a"
    assert runner.calls == [["a"]]
    assert batcher.inflight == 0
    await batcher.close()


async def test_queued_items_form_one_larger_batch_and_results_go_to_the_right_futures() -> None:
    runner = Runner(blocking=True)
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8)
    head, tasks = await _busy_then_queue(batcher, runner, "a", [("b", 1, None), ("c", 3, None), ("d", 2, None)])
    assert batcher.inflight == 4
    runner.gate.set()
    assert await head == "r-a"
    assert await asyncio.gather(*tasks) == ["r-b", "r-c", "r-d"]
    assert runner.calls == [["a"], ["b", "c", "d"]]
    await batcher.close()


async def test_max_batch_size_limits_rows_and_never_splits_an_item() -> None:
    runner = Runner(blocking=True)
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=4)
    head, tasks = await _busy_then_queue(
        batcher, runner, "a", [("b", 1, None), ("c", 3, None), ("d", 2, None), ("e", 2, None)]
    )
    runner.gate.set()
    await head
    assert await asyncio.gather(*tasks) == ["r-b", "r-c", "r-d", "r-e"]
    assert runner.calls == [["a"], ["b", "c"], ["d", "e"]]
    await batcher.close()


async def test_keys_keep_incompatible_items_apart() -> None:
    runner = Runner(blocking=True)
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8)
    head, tasks = await _busy_then_queue(
        batcher, runner, "a", [("b1", 1, "k1"), ("c2", 1, "k2"), ("d1", 1, "k1"), ("e2", 1, "k2")]
    )
    runner.gate.set()
    await head
    assert await asyncio.gather(*tasks) == ["r-b1", "r-c2", "r-d1", "r-e2"]
    assert runner.calls == [["a"], ["b1", "d1"], ["c2", "e2"]]
    await batcher.close()


async def test_no_batching_when_max_batch_size_is_zero() -> None:
    runner = Runner(blocking=True)
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=0)
    head, tasks = await _busy_then_queue(batcher, runner, "a", [("b", 1, None), ("c", 1, None)])
    runner.gate.set()
    await head
    assert await asyncio.gather(*tasks) == ["r-b", "r-c"]
    assert runner.calls == [["a"], ["b"], ["c"]]
    await batcher.close()


async def test_cancelled_items_are_skipped() -> None:
    runner = Runner(blocking=True)
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8)
    head, (b, c, d) = await _busy_then_queue(batcher, runner, "a", [("b", 1, None), ("c", 1, None), ("d", 1, None)])
    b.cancel()
    d.cancel()
    await asyncio.gather(b, d, return_exceptions=True)
    runner.gate.set()
    await head
    assert await c == "r-c"
    assert runner.calls == [["a"], ["c"]]
    assert b.cancelled()
    await batcher.close()


async def test_a_failing_run_fails_its_batch_and_the_batcher_keeps_working() -> None:
    runner = Runner(blocking=True)
    reports: list[BatchReport] = []
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8, on_batch=reports.append)
    head, tasks = await _busy_then_queue(batcher, runner, "a", [("b", 1, None), ("c", 1, None)])
    assert await asyncio.to_thread(lambda: True)
    runner.fail_with = None
    runner.gate.set()
    assert await head == "r-a"
    assert await asyncio.gather(*tasks) == ["r-b", "r-c"]

    runner.gate.clear()
    head, tasks = await _busy_then_queue(batcher, runner, "x", [("y", 1, None), ("z", 1, None)])
    runner.fail_with = ValueError("model exploded")
    runner.gate.set()
    # "x" was already running when fail_with was set: it fails; y and z run after it
    with pytest.raises(ValueError, match="model exploded"):
        await head
    assert await asyncio.gather(*tasks) == ["r-y", "r-z"]
    assert [r.failed for r in reports] == [False, False, True, False]
    assert await batcher.submit("later") == "r-later"
    await batcher.close()


async def test_a_failing_batch_fails_every_item_in_it() -> None:
    runner = Runner(blocking=True)
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8)
    head, tasks = await _busy_then_queue(batcher, runner, "a", [("b", 1, None), ("c", 1, None)])
    runner.gate.set()
    await head
    await asyncio.gather(*tasks)

    runner.gate.clear()
    head, tasks = await _busy_then_queue(batcher, runner, "x", [("y", 1, None), ("z", 1, None)])
    runner.gate.set()
    assert await head == "r-x"
    # y and z form the next batch; make that batch fail
    await _until(lambda: len(runner.calls) == 4, "the second batch")
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results == ["r-y", "r-z"]

    runner.fail_with = RuntimeError("boom")
    runner.gate.clear()
    head, tasks = await _busy_then_queue(batcher, runner, "p", [("q", 1, None), ("r", 1, None)])
    runner.gate.set()
    with pytest.raises(RuntimeError, match="boom"):
        await head
    assert await asyncio.gather(*tasks) == ["r-q", "r-r"]
    await batcher.close()


async def test_queued_batch_that_raises_fails_all_its_items() -> None:
    calls: list[list[str]] = []
    gate = threading.Event()
    entered = threading.Event()

    def run(items: list[str]) -> list[str]:
        calls.append(items)
        if items == ["a"]:
            entered.set()
            gate.wait(WAIT)
            return ["ok"]
        if "bad" in items:
            raise KeyError("bad item")
        return [f"r-{i}" for i in items]

    batcher: Batcher[str, str] = Batcher(run, max_batch_size=8)
    head = asyncio.create_task(batcher.submit("a"))
    assert await asyncio.to_thread(entered.wait, WAIT)
    tasks = [asyncio.create_task(batcher.submit(x)) for x in ("b", "bad", "c")]
    await _until(lambda: batcher.depth == 3, "items to queue")
    gate.set()
    assert await head == "ok"
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, KeyError) for r in results)
    assert calls == [["a"], ["b", "bad", "c"]]
    assert await batcher.submit("d") == "r-d"
    await batcher.close()


@pytest.mark.parametrize("result", [["only-one"], ["x", "y", "z"]])
async def test_wrong_number_of_results_fails_the_batch_clearly(result: list[str]) -> None:
    runner = Runner(blocking=True)
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8)
    head, tasks = await _busy_then_queue(batcher, runner, "a", [("b", 1, None), ("c", 1, None)])
    runner.gate.set()
    await head
    # the queued batch of two is already on its way; the one after gets the bad result
    await asyncio.gather(*tasks)
    runner.gate.clear()
    head, tasks = await _busy_then_queue(batcher, runner, "x", [("y", 1, None), ("z", 1, None)])
    runner.gate.set()
    await head
    runner.result = None
    await asyncio.gather(*tasks)

    runner.result = result
    items = [asyncio.create_task(batcher.submit(x)) for x in ("p", "q")]
    results = await asyncio.gather(*items, return_exceptions=True)
    # p ran alone (idle executor) and got the bad result; q follows in its own batch
    assert isinstance(results[0], RuntimeError)
    assert f"batch of 1 items gave {len(result)} results" in str(results[0])
    assert results[1] == "r-q"
    assert await batcher.submit("after") == "r-after"
    await batcher.close()


async def test_wrong_number_of_results_for_a_batch_of_two() -> None:
    runner = Runner(blocking=True)
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8)
    head, tasks = await _busy_then_queue(batcher, runner, "a", [("b", 1, None), ("c", 1, None)])
    runner.result = ["one"]
    runner.gate.set()
    with pytest.raises(RuntimeError, match="batch of 1 items gave 1 results"):
        await head
    assert await asyncio.gather(*tasks) == ["r-b", "r-c"]
    await batcher.close()


@pytest.mark.parametrize("result", [None, 7, "ab"])
async def test_run_returning_a_non_list_fails_the_batch_instead_of_hanging(result: Any) -> None:
    runner = Runner()
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8)
    runner.result = result if result is not None else "sentinel-none"
    if result is None:

        def run(items: list[str]) -> Any:
            return None

        batcher = Batcher(run, max_batch_size=8)
    with pytest.raises(RuntimeError, match="batch of 2 items|batch of 1 items"):
        await asyncio.wait_for(batcher.submit("p"), WAIT)
    await batcher.close()


async def test_on_batch_reports_rows_items_and_queue_times_with_a_fake_clock() -> None:
    clock = FakeClock(start=1000.0)
    runner = Runner(blocking=True)
    reports: list[BatchReport] = []
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8, on_batch=reports.append, clock=clock)
    head = asyncio.create_task(batcher.submit("a", 2))
    await runner.wait_entered()  # "a" started at 1000.0
    b = asyncio.create_task(batcher.submit("b", 3))
    await _until(lambda: batcher.depth == 1, "b to queue")
    clock.advance(0.5)
    c = asyncio.create_task(batcher.submit("c", 1))
    await _until(lambda: batcher.depth == 2, "c to queue")
    clock.advance(0.25)  # now 1000.75: "a" ends, "b" + "c" start
    runner.gate.set()
    await asyncio.gather(head, b, c)
    assert len(reports) == 2
    first, second = reports
    assert (first.items, first.rows, first.failed) == (1, 2, False)
    assert first.queue_seconds == [0.0]
    assert first.compute_seconds == pytest.approx(0.75)
    assert (second.items, second.rows, second.failed) == (2, 4, False)
    assert second.queue_seconds == pytest.approx([0.75, 0.25])
    assert second.compute_seconds == 0.0
    await batcher.close()


async def test_on_batch_reports_failed_batches() -> None:
    runner = Runner()
    runner.fail_with = OSError("disk")
    reports: list[BatchReport] = []
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=4, on_batch=reports.append, clock=FakeClock())
    with pytest.raises(OSError, match="disk"):
        await batcher.submit("a", 3)
    assert len(reports) == 1
    assert (reports[0].items, reports[0].rows, reports[0].failed) == (1, 3, True)
    await batcher.close()


async def test_an_on_batch_that_raises_does_not_stall_the_queue() -> None:
    runner = Runner(blocking=True)

    def on_batch(report: BatchReport) -> None:
        raise ValueError("metrics broke")

    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8, on_batch=on_batch)
    head, tasks = await _busy_then_queue(batcher, runner, "a", [("b", 1, None)])
    runner.gate.set()
    assert await asyncio.wait_for(head, WAIT) == "r-a"
    assert await asyncio.wait_for(asyncio.gather(*tasks), WAIT) == ["r-b"]
    await batcher.close()


async def test_two_executors_run_batches_at_the_same_time() -> None:
    both = threading.Barrier(2, timeout=WAIT)
    threads: set[str] = set()

    def run(items: list[str]) -> list[str]:
        threads.add(threading.current_thread().name)
        both.wait()  # only returns when two batches are running at once
        return items

    batcher: Batcher[str, str] = Batcher(run, max_batch_size=8, executors=2, name="m-v1")
    assert await asyncio.gather(batcher.submit("a"), batcher.submit("b")) == ["a", "b"]
    assert threads == {"m-v1-0", "m-v1-1"}
    await batcher.close()


async def test_close_drains_in_flight_items_then_rejects_new_ones() -> None:
    runner = Runner(blocking=True)
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8)
    head, tasks = await _busy_then_queue(batcher, runner, "a", [("b", 1, None)])
    closing = asyncio.create_task(batcher.close())
    await asyncio.sleep(0)
    with pytest.raises(BatcherClosed):
        await batcher.submit("late")
    assert not closing.done()  # still draining "a" and "b"
    runner.gate.set()
    await asyncio.wait_for(closing, WAIT)
    assert await head == "r-a"
    assert await asyncio.gather(*tasks) == ["r-b"]
    assert runner.calls == [["a"], ["b"]]
    assert all(not ex.thread.is_alive() for ex in batcher._executors)
    with pytest.raises(BatcherClosed):
        await batcher.submit("later")


async def test_close_after_drain_timeout_rejects_what_is_still_queued() -> None:
    runner = Runner(blocking=True)
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8)
    head, (queued,) = await _busy_then_queue(batcher, runner, "a", [("b", 1, None)])
    closing = asyncio.create_task(batcher.close(drain_timeout=0.05))
    with pytest.raises(BatcherClosed):
        await asyncio.wait_for(queued, WAIT)
    runner.gate.set()
    await asyncio.wait_for(closing, WAIT)
    assert await head == "r-a"
    assert runner.calls == [["a"]]


async def test_close_of_an_unused_batcher() -> None:
    batcher: Batcher[str, str] = Batcher(Runner(), max_batch_size=8)
    await asyncio.wait_for(batcher.close(), WAIT)
    with pytest.raises(BatcherClosed):
        await batcher.submit("x")
