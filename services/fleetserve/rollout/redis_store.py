"""Rollout plans in Redis, shared by every replica: key `fleetserve:rollout:<model>` (JSON).

A `put` bumps the revision in a WATCH/MULTI transaction and publishes the model's name on the
channel `fleetserve:rollout`, so replicas re-read it at once; besides that, every replica
re-reads all plans every `refresh_s`, which covers a missed message. While Redis is
unreachable the cached plans stay in force (logged once per outage) and the store retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError, WatchError

from .names import check_model_name, is_model_name
from .plan import RolloutPlan

log = logging.getLogger(__name__)

KEY_PREFIX = "fleetserve:rollout:"
CHANNEL = "fleetserve:rollout"
PUT_ATTEMPTS = 16  # WATCH / MULTI tries of one put before it gives up (another writer kept winning)
STOP_WAIT_S = 5.0  # how long `stop` waits for the background task to end


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def plan_key(model: str) -> str:
    """The Redis key of a model's plan."""
    return KEY_PREFIX + model


class RedisPlanStore:
    """A `PlanStore` over Redis (see the module docstring)."""

    def __init__(self, url: str, refresh_s: float = 0.5) -> None:
        self.url = url
        self.refresh_s = refresh_s
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=2.0, socket_timeout=5.0
        )
        self._plans: dict[str, RolloutPlan] = {}
        self._raw: dict[str, bytes] = {}  # what each cached plan was parsed from
        self._bad: dict[str, bytes] = {}  # corrupt values already logged
        self._lock = asyncio.Lock()  # a background read never lands over a newer put
        self._puts = 0  # puts so far: a read that began before the latest put is stale
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._down = False

    def get(self, model: str) -> RolloutPlan | None:
        """The cached plan of a model (None: no plan)."""
        return self._plans.get(model)

    def models(self) -> list[str]:
        """Models that have a plan, sorted."""
        return sorted(self._plans)

    async def put(self, plan: RolloutPlan) -> RolloutPlan:
        """Store a plan (revision = max(stored, given) + 1, updated_at now) and tell the replicas.

        Raises redis' ConnectionError (a RedisError) when Redis cannot be reached, and its
        WatchError when the key changed under every one of PUT_ATTEMPTS tries.
        """
        check_model_name(plan.model)
        key = plan_key(plan.model)
        async with self._lock:
            for attempt in range(1, PUT_ATTEMPTS + 1):
                try:
                    stored, raw = await self._put_once(key, plan)
                    break
                except WatchError:  # another writer got in between, or the connection broke
                    if attempt == PUT_ATTEMPTS:
                        raise
            self._puts += 1
            self._remember(plan.model, raw, stored)
        return stored

    async def _put_once(self, key: str, plan: RolloutPlan) -> tuple[RolloutPlan, bytes]:
        async with self._client.pipeline(transaction=True) as pipe:
            await pipe.watch(key)
            current = await pipe.get(key)
            stored_revision = 0
            if current is not None:
                with contextlib.suppress(ValidationError, ValueError):
                    stored_revision = RolloutPlan.model_validate_json(current).revision
            new = RolloutPlan.model_validate(
                {
                    **plan.model_dump(),
                    "revision": max(stored_revision, plan.revision) + 1,
                    "updated_at": time.time(),
                }
            )
            raw = new.model_dump_json().encode()
            pipe.multi()
            pipe.set(key, raw)
            pipe.publish(CHANNEL, plan.model.encode())
            await pipe.execute()
        return new, raw

    async def refresh(self) -> None:
        """Re-read every plan now; forget models whose key is gone. Raises RedisError when down."""
        puts = self._puts
        names: list[str] = []
        async for key in self._client.scan_iter(match=KEY_PREFIX + "*", count=1000):
            name = (key.decode() if isinstance(key, bytes) else str(key))[len(KEY_PREFIX) :]
            if is_model_name(name) and ":" not in name:  # not `...:history` and the like
                names.append(name)
        values: list[Any] = await self._client.mget([plan_key(n) for n in names]) if names else []
        async with self._lock:
            if self._puts != puts:
                return  # read before this store's own newer put: the next refresh reads again
            present = {n for n, v in zip(names, values, strict=True) if v is not None}
            for model in set(self._plans) - present:
                self._forget(model)
            for model, value in zip(names, values, strict=True):
                if value is not None:
                    self._apply(model, value)

    async def _refresh_one(self, model: str) -> None:
        puts = self._puts
        value: Any = await self._client.get(plan_key(model))  # bytes: decode_responses is off
        async with self._lock:
            if self._puts != puts:
                return  # read before this store's own newer put
            if value is None:
                self._forget(model)
            else:
                self._apply(model, value)

    def _apply(self, model: str, value: bytes) -> None:
        if self._raw.get(model) == value:
            return
        try:
            plan = RolloutPlan.model_validate_json(value)
            if plan.model != model:
                raise ValueError(f"the plan names model {plan.model!r}")
        except (ValidationError, ValueError) as exc:
            if self._bad.get(model) != value:
                self._bad[model] = value
                kept = self._plans[model].revision if model in self._plans else "none"
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                log.warning(
                    "ignoring the rollout plan of %s in Redis (%s); kept revision: %s", model, first, kept
                )
            return
        self._remember(model, value, plan)

    def _remember(self, model: str, raw: bytes, plan: RolloutPlan) -> None:
        self._plans[model] = plan
        self._raw[model] = raw
        self._bad.pop(model, None)

    def _forget(self, model: str) -> None:
        self._raw.pop(model, None)
        self._bad.pop(model, None)
        if self._plans.pop(model, None) is not None:
            log.info("rollout plan of %s removed", model)

    async def start(self) -> None:
        """Read the plans (if Redis answers), then keep them fresh in the background until `stop`."""
        try:
            await self.refresh()
        except (RedisError, OSError) as exc:
            self._went_down(exc)
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="fleetserve-rollout-redis")

    async def stop(self) -> None:
        """Stop the background task and close the connections.

        Besides the cancellation, the task's loops end at `_stopping`: on a loaded machine the
        cancellation can be lost inside redis-py's pub/sub read with a timeout (the task was seen
        still reading, marked cancelling, with `stop` waiting on it for ever).
        """
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=STOP_WAIT_S)
            if not done:
                log.warning("the rollout plan refresher did not stop within %g s", STOP_WAIT_S)
            elif not task.cancelled() and task.exception() is not None:
                log.error("the rollout plan refresher failed", exc_info=task.exception())
        await self._client.aclose()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._follow()
            except (RedisError, OSError) as exc:
                self._went_down(exc)
            except Exception:  # a bug must not stop the refresher: the cache would freeze silently
                log.exception("rollout plan refresh failed; retrying")
            await asyncio.sleep(self.refresh_s)

    async def _follow(self) -> None:
        """Listen on the channel and re-read everything every refresh_s, until an error."""
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
            await self.refresh()  # after subscribing, so no change falls between the two
            if self._down:
                log.info("Redis at %s reachable again; rollout plans refreshed", redacted(self.url))
                self._down = False
            loop = asyncio.get_running_loop()
            next_full = loop.time() + self.refresh_s
            while not self._stopping:
                wait = max(0.0, next_full - loop.time())
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    model = data.decode() if isinstance(data, bytes) else str(data)
                    if is_model_name(model):
                        await self._refresh_one(model)
                if loop.time() >= next_full:
                    await self.refresh()
                    next_full = loop.time() + self.refresh_s
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    def _went_down(self, exc: BaseException) -> None:
        if not self._down:
            log.warning(
                "Redis at %s unreachable (%s); keeping %d cached rollout plan(s), retrying",
                redacted(self.url),
                exc,
                len(self._plans),
            )
        self._down = True
