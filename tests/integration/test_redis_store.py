"""The Redis plan store against a real redis-server on a free loopback port.

Where redis-server is missing or does not start, the tests skip with the reason, except under
CI (CI=true), where they fail: CI must run them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from fleetserve.rollout.plan import RolloutPlan
from fleetserve.rollout.redis_store import RedisPlanStore, plan_key
from tests.support.ports import free_ports
from tests.support.redis_server import RedisServer, unavailable
from tests.support.redis_server import redis_server as start_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with start_redis(tmp_path, appendonly=False) as server:
        yield server


def holds(store: RedisPlanStore, plan: RolloutPlan) -> bool:
    """Whether `store` has `plan` cached."""
    return store.get(plan.model) == plan


async def wait_for(condition: Callable[[], bool], within: float = 1.0) -> float:
    """Seconds until condition() holds; fails after `within` seconds."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            pytest.fail(f"not within {within} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def test_a_put_on_one_store_is_seen_by_the_other_within_a_second(redis_server: RedisServer) -> None:
    writer, reader = RedisPlanStore(redis_server.url), RedisPlanStore(redis_server.url)
    await reader.start()
    try:
        assert reader.models() == []
        stored = await writer.put(RolloutPlan(model="digits", production=1, canary=2, canary_weight=5))
        assert writer.get("digits") == stored
        await wait_for(lambda: reader.get("digits") == stored, within=1.0)
        again = await writer.put(RolloutPlan(model="digits", production=1, canary=2, canary_weight=25))
        await wait_for(lambda: reader.get("digits") == again, within=1.0)
    finally:
        await reader.stop()
        await writer.stop()


async def test_a_put_is_pushed_to_replicas_not_just_polled(redis_server: RedisServer) -> None:
    writer, reader = RedisPlanStore(redis_server.url), RedisPlanStore(redis_server.url, refresh_s=60)
    await reader.start()
    try:
        await asyncio.sleep(0.1)  # the reader subscribes in its background task
        for weight in (5, 25, 50):
            stored = await writer.put(
                RolloutPlan(model="digits", production=1, canary=2, canary_weight=weight)
            )
            waited = await wait_for(functools.partial(holds, reader, stored), within=1.0)
            assert waited < 1.0  # pushed: the reader's own refresh is a minute away
            assert reader.get("digits") == stored
    finally:
        await reader.stop()
        await writer.stop()


async def test_revisions_increase_across_writers(redis_server: RedisServer) -> None:
    a, b = RedisPlanStore(redis_server.url), RedisPlanStore(redis_server.url)
    try:
        revisions = []
        for i, store in enumerate([a, b, a, b]):
            revisions.append((await store.put(RolloutPlan(model="digits", production=i + 1))).revision)
        assert revisions == [1, 2, 3, 4]
        assert (await a.put(RolloutPlan(model="digits", production=1, revision=10))).revision == 11
        concurrent = await asyncio.gather(*(s.put(RolloutPlan(model="mnist")) for s in (a, b) * 5))
        assert sorted(p.revision for p in concurrent) == list(range(1, 11))  # WATCH/MULTI: none lost
    finally:
        await a.stop()
        await b.stop()


async def test_other_keys_and_corrupt_values_are_ignored(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    import redis.asyncio as aioredis

    raw = aioredis.Redis.from_url(redis_server.url)
    store = RedisPlanStore(redis_server.url, refresh_s=0.05)
    try:
        good = await store.put(RolloutPlan(model="digits", production=1))
        await raw.rpush(plan_key("digits") + ":history", b"x")  # another key shape, another type
        await raw.set(plan_key("../etc"), b"{}")
        await raw.set(plan_key("mnist"), RolloutPlan(model="other").model_dump_json())  # names another model
        await store.start()
        assert store.models() == ["digits"]
        with caplog.at_level(logging.WARNING, logger="fleetserve.rollout.redis_store"):
            await raw.set(plan_key("digits"), b"{broken")
            await raw.publish("fleetserve:rollout", b"digits")
            await asyncio.sleep(0.3)  # several refreshes
        assert store.get("digits") == good
        warnings = [r for r in caplog.records if "ignoring the rollout plan of digits" in r.getMessage()]
        assert len(warnings) == 1
        await raw.delete(plan_key("digits"))
        await wait_for(lambda: store.get("digits") is None, within=1.0)
    finally:
        await store.stop()
        await raw.aclose()


async def test_survives_a_redis_restart(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    writer, reader = RedisPlanStore(redis_server.url), RedisPlanStore(redis_server.url, refresh_s=0.1)
    await reader.start()
    try:
        before = await writer.put(RolloutPlan(model="digits", production=1, canary=2, canary_weight=50))
        await wait_for(lambda: reader.get("digits") == before, within=1.0)
        with caplog.at_level(logging.INFO, logger="fleetserve.rollout.redis_store"):
            redis_server.stop()
            await asyncio.sleep(1.0)  # many refresh attempts fail
            assert reader.get("digits") == before  # the cache stays in force
            with pytest.raises((RedisError, OSError)):
                await writer.put(RolloutPlan(model="digits", production=2))
            redis_server.start()  # same port, empty (no persistence)
            after = await writer.put(RolloutPlan(model="digits", production=2, revision=before.revision))
            assert after.revision == before.revision + 1
            await wait_for(lambda: reader.get("digits") == after, within=5.0)
        down = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(down) == 1, [r.getMessage() for r in down]  # once per outage
        assert any("reachable again" in r.getMessage() for r in caplog.records)
    finally:
        await reader.stop()
        await writer.stop()


async def test_start_with_redis_down_keeps_serving_and_catches_up(tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server not found (apt-get install -y redis-server)")
        return
    server = RedisServer(binary, free_ports(1)[0], tmp_path, appendonly=False)
    reader = RedisPlanStore(server.url, refresh_s=0.1)
    await reader.start()  # nothing listens yet: no error, no plans
    try:
        assert reader.models() == []
        try:
            server.start()
        except (OSError, RuntimeError) as exc:
            unavailable(f"redis-server did not start: {exc}")
        writer = RedisPlanStore(server.url)
        stored = await writer.put(RolloutPlan(model="digits", production=3))
        await writer.stop()
        await wait_for(lambda: reader.get("digits") == stored, within=5.0)
    finally:
        await reader.stop()
        server.stop()


async def test_a_refresh_that_read_before_its_own_put_does_not_undo_it(redis_server: RedisServer) -> None:
    # The race seen in the continuous-training e2e: the controller staged a shadow (put), and a
    # background refresh that had read Redis just before applied the older plan over it, so the
    # automated rollout saw its version back at "none" and stopped.
    store = RedisPlanStore(redis_server.url)
    try:
        older = await store.put(RolloutPlan(model="digits", production=1))
        real_mget = store._client.mget
        newer: list[RolloutPlan] = []

        async def mget_then_put(*args: object, **kwargs: object) -> object:
            values = await real_mget(*args, **kwargs)  # reads the older plan
            newer.append(await store.put(RolloutPlan(model="digits", production=1, shadows=[2])))
            return values

        store._client.mget = mget_then_put  # type: ignore[method-assign]
        await store.refresh()
        store._client.mget = real_mget  # type: ignore[method-assign]
        assert newer and store.get("digits") == newer[0] and newer[0].revision > older.revision
        await store.refresh()  # a refresh that began after the put reads it as it is
        assert store.get("digits") == newer[0]
    finally:
        await store.stop()
