"""RedisPlanStore's stop and put bounds, with redis-py's calls replaced (no Redis needed)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.exceptions import WatchError

from fleetserve.rollout import redis_store
from fleetserve.rollout.plan import RolloutPlan
from fleetserve.rollout.redis_store import RedisPlanStore
from tests.support.ports import free_ports


def store_nowhere() -> RedisPlanStore:
    return RedisPlanStore(f"redis://127.0.0.1:{free_ports(1)[0]}/0", refresh_s=0.05)


async def test_stop_ends_a_refresher_that_lost_its_cancellation(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_nowhere()
    cancels_lost = 0

    async def follow_losing_cancels() -> None:  # what redis-py's pub/sub read was seen doing
        nonlocal cancels_lost
        while not store._stopping:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                cancels_lost += 1

    monkeypatch.setattr(store, "_follow", follow_losing_cancels)
    await store.start()
    await asyncio.sleep(0.05)
    task = store._task
    assert task is not None and not task.done()
    with caplog.at_level(logging.WARNING, logger="fleetserve.rollout.redis_store"):
        await store.stop()
    assert task.done()
    assert cancels_lost == 1  # the cancellation reached the loop and was dropped there
    late = [r for r in caplog.records if "did not stop" in r.getMessage()]
    assert not late  # it ended by the flag, before stop's wait ran out


class LosesTheWatch:
    """A stand-in for `_put_once` that raises WatchError on its first `losses` tries."""

    def __init__(self, losses: int) -> None:
        self.losses, self.tries = losses, 0

    async def __call__(self, key: str, plan: RolloutPlan) -> tuple[RolloutPlan, bytes]:
        self.tries += 1
        if self.tries <= self.losses:
            raise WatchError("Watched variable changed.")
        stored = plan.model_copy(update={"revision": 7})
        return stored, stored.model_dump_json().encode()


async def test_a_put_that_keeps_losing_the_watch_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    store, put_once = store_nowhere(), LosesTheWatch(losses=10**6)
    monkeypatch.setattr(store, "_put_once", put_once)
    with pytest.raises(WatchError):
        await store.put(RolloutPlan(model="digits", production=1))
    assert put_once.tries == redis_store.PUT_ATTEMPTS
    assert store.get("digits") is None
    await store.stop()


async def test_a_put_that_loses_the_watch_once_tries_again(monkeypatch: pytest.MonkeyPatch) -> None:
    store, put_once = store_nowhere(), LosesTheWatch(losses=1)
    monkeypatch.setattr(store, "_put_once", put_once)
    stored = await store.put(RolloutPlan(model="digits", production=1))
    assert (put_once.tries, stored.revision) == (2, 7)
    assert store.get("digits") == stored
    await store.stop()
