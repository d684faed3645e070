"""The generic Batcher with a fake `run`, an injected clock, and executors made busy on purpose."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from fleetserve.batching.batcher import Batcher, BatcherClosed, BatchReport
from fleetserve.batching.loop_load import LoopLoad
from fleetserve.batching.policy import AdaptivePolicy, FixedWindowPolicy
from fleetserve.common.clock import FakeClock

WAIT = 5.0  # seconds; a bound on waits that normally take microseconds


class Runner:
    """A fake `run`: records batches and blocks on `gate` while it is closed.

    Items steer it: a batch holding "raise..." raises, "short" / "long" give one result too few /
    too many, "none" returns None; otherwise each item gives "r-<item>".
    """

    def __init__(self, *, blocking: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        if not blocking:
            self.gate.set()

    def __call__(self, items: list[str]) -> Any:
        self.calls.append(list(items))
        self.entered.set()
        assert self.gate.wait(WAIT), "test never opened the gate"
        results = [f"r-{item}" for item in items]
        if any(item.startswith("raise") for item in items):
            raise ValueError(f"model exploded on {items}")
        if "short" in items:
            return results[:-1]
        if "long" in items:
            return [*results, "extra"]
        if "none" in items:
            return None
        return results

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
    head, tasks = await _busy_then_queue(
        batcher, runner, "a", [("b", 1, None), ("c", 3, None), ("d", 2, None)]
    )
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
    head, (b, c, d) = await _busy_then_queue(
        batcher, runner, "a", [("b", 1, None), ("c", 1, None), ("d", 1, None)]
    )
    b.cancel()
    d.cancel()
    await asyncio.gather(b, d, return_exceptions=True)
    runner.gate.set()
    await head
    assert await c == "r-c"
    assert runner.calls == [["a"], ["c"]]
    assert b.cancelled()
    await batcher.close()


async def test_a_failing_run_fails_every_item_of_its_batch_and_the_batcher_keeps_working() -> None:
    runner = Runner(blocking=True)
    reports: list[BatchReport] = []
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8, on_batch=reports.append)
    head, tasks = await _busy_then_queue(
        batcher, runner, "a", [("b", 1, None), ("raise", 1, None), ("c", 1, None)]
    )
    runner.gate.set()
    assert await head == "r-a"
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, ValueError) and "model exploded" in str(r) for r in results)
    assert runner.calls == [["a"], ["b", "raise", "c"]]
    assert [(r.items, r.failed) for r in reports] == [(1, False), (3, True)]
    assert await batcher.submit("later") == "r-later"
    with pytest.raises(ValueError, match="model exploded"):
        await batcher.submit("raise-again")
    assert await batcher.submit("after") == "r-after"
    await batcher.close()


@pytest.mark.parametrize(("bad", "got"), [("short", 1), ("long", 3)])
async def test_wrong_number_of_results_fails_the_batch_clearly(bad: str, got: int) -> None:
    runner = Runner(blocking=True)
    reports: list[BatchReport] = []
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8, on_batch=reports.append)
    head, tasks = await _busy_then_queue(batcher, runner, "a", [("b", 1, None), (bad, 1, None)])
    runner.gate.set()
    assert await head == "r-a"
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for r in results:
        assert isinstance(r, RuntimeError)
        assert f"batch of 2 items gave {got} results" in str(r)
    assert reports[-1].failed
    assert await batcher.submit("later") == "r-later"
    await batcher.close()


async def test_run_returning_a_non_list_fails_the_batch_instead_of_hanging() -> None:
    batcher: Batcher[str, str] = Batcher(Runner(), max_batch_size=8)
    with pytest.raises(RuntimeError, match="batch of 1 items gave"):
        await asyncio.wait_for(batcher.submit("none"), WAIT)
    assert await asyncio.wait_for(batcher.submit("later"), WAIT) == "r-later"
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
    reports: list[BatchReport] = []
    batcher: Batcher[str, str] = Batcher(
        Runner(), max_batch_size=4, on_batch=reports.append, clock=FakeClock()
    )
    with pytest.raises(ValueError, match="model exploded"):
        await batcher.submit("raise", 3)
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
    first = asyncio.create_task(batcher.submit("a"))
    await _until(lambda: len(threads) == 1, "the first batch to run")
    # the first executor is busy: the second takes the next item instead of queueing it
    assert await asyncio.gather(first, batcher.submit("b")) == ["a", "b"]
    assert threads == {"m-v1-0", "m-v1-1"}
    await batcher.close()


async def test_items_submitted_together_form_one_batch_even_when_idle() -> None:
    runner = Runner()
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8, executors=2)
    assert await asyncio.gather(*(batcher.submit(x) for x in "abc")) == ["r-a", "r-b", "r-c"]
    assert runner.calls == [["a", "b", "c"]]
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


async def test_inline_batches_run_on_the_loop_and_fail_cleanly() -> None:
    where: list[str] = []

    def run(items: list[str]) -> Any:
        where.append(threading.current_thread().name)
        return None if "none" in items else [f"r-{i}" for i in items]

    reports: list[BatchReport] = []
    batcher: Batcher[str, str] = Batcher(run, max_batch_size=8, inline_below_s=1.0, on_batch=reports.append)
    for _ in range(5):
        batcher.latency.observe(1, 0.0)  # predicted: far below inline_below_s
    assert await batcher.submit("a") == "r-a"
    with pytest.raises(RuntimeError, match="batch of 1 items gave NoneType"):
        await asyncio.wait_for(batcher.submit("none"), WAIT)
    assert await batcher.submit("b") == "r-b"
    assert where == [threading.current_thread().name] * 3
    assert [(r.inline, r.failed) for r in reports] == [(True, False), (True, True), (True, False)]
    await batcher.close()


async def test_requests_arriving_in_one_pass_of_the_loop_batch_together() -> None:
    # HTTP/1.1 connections whose data came in together reach submit in one pass of the loop:
    # the first is computed at once, the others queue behind it and form one batch at the end
    # of the pass (run inline at once, each would be a batch of its own).
    runner = Runner()
    batcher: Batcher[str, str] = Batcher(runner, max_batch_size=8, inline_below_s=1.0)
    for _ in range(5):
        batcher.latency.observe(1, 0.0)
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(x) for x in "abcd")), WAIT)
    assert results == ["r-a", "r-b", "r-c", "r-d"]
    assert runner.calls == [["a"], ["b", "c", "d"]]
    # In a later pass, a lone request is computed at once again.
    assert await batcher.submit("e") == "r-e"
    assert runner.calls[-1] == ["e"]
    await batcher.close()


async def test_the_fixed_window_waits_for_its_window_even_for_a_cheap_lone_request() -> None:
    # Triton's dynamic batcher delays the first request up to max_queue_delay too: the lone-
    # request fast path (computed at once in submit) is for policies that dispatch at once.
    runner = Runner()
    batcher: Batcher[str, str] = Batcher(
        runner, max_batch_size=8, inline_below_s=1.0, policy=FixedWindowPolicy(0.05)
    )
    for _ in range(5):
        batcher.latency.observe(1, 0.0)
    first = asyncio.ensure_future(batcher.submit("a"))
    await asyncio.sleep(0.01)
    assert not first.done() and runner.calls == []  # waiting for the window
    second = asyncio.ensure_future(batcher.submit("b"))
    assert await asyncio.wait_for(asyncio.gather(first, second), WAIT) == ["r-a", "r-b"]
    assert runner.calls == [["a", "b"]]
    await batcher.close()


class _Saturated(LoopLoad):
    def update(self) -> bool:
        return True


async def test_a_saturated_loop_coalesces_cheap_requests_instead_of_computing_each_at_once() -> None:
    runner = Runner()
    batcher: Batcher[str, str] = Batcher(
        runner, max_batch_size=8, inline_below_s=1.0, policy=AdaptivePolicy(0.5, 0.05), loop_load=_Saturated()
    )
    for _ in range(5):
        batcher.latency.observe(1, 0.0)
    first = asyncio.ensure_future(batcher.submit("a", deadline=None))
    await asyncio.sleep(0.01)
    assert not first.done() and runner.calls == []  # waiting for the batch to fill
    second = asyncio.ensure_future(batcher.submit("b"))
    assert await asyncio.wait_for(asyncio.gather(first, second), WAIT) == ["r-a", "r-b"]
    assert runner.calls == [["a", "b"]]
    await batcher.close()


async def test_a_saturated_loop_does_not_delay_batches_that_run_on_executor_threads() -> None:
    # A model whose batches are not cheap (resnet-like) runs them on threads: the loop's load is
    # not their executor's, so a lone request is dispatched at once, not held to coalesce (here
    # the policy would hold it for a second).
    runner = Runner()
    policy = AdaptivePolicy(coalesce_share=0.5, coalesce_max_s=1.0)
    batcher: Batcher[str, str] = Batcher(
        runner, max_batch_size=8, inline_below_s=0.001, policy=policy, loop_load=_Saturated()
    )
    for _ in range(5):
        batcher.latency.observe(1, 0.01)  # 10 ms a batch: past the inline bound
    task = asyncio.ensure_future(batcher.submit("a"))
    assert await asyncio.to_thread(runner.entered.wait, 0.5), "held back to coalesce"
    assert await asyncio.wait_for(task, WAIT) == "r-a"
    assert runner.calls == [["a"]]
    await batcher.close()
