"""The file plan store: `<repository>/<model>/rollout.json`, atomic writes, polling replicas."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fleetserve.rollout.file_store import PLAN_FILE, FilePlanStore
from fleetserve.rollout.plan import RolloutPlan
from fleetserve.rollout.redis_store import RedisPlanStore
from fleetserve.rollout.stores import plan_store


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    for name in ("digits", "mnist"):
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(f'name: "{name}"\n')
    return root


async def wait_for(condition: Callable[[], bool], within: float = 1.0) -> float:
    """Seconds until condition() holds; fails after `within` seconds."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            pytest.fail(f"not within {within} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_put_get_round_trip(repo: Path) -> None:
    store = FilePlanStore(repo)
    plan = RolloutPlan(model="digits", production=1, canary=2, canary_weight=25, shadows=[3])
    stored = await store.put(plan)
    assert store.get("digits") == stored
    assert stored.model_dump(exclude={"revision", "updated_at"}) == plan.model_dump(
        exclude={"revision", "updated_at"}
    )
    assert abs(stored.updated_at - time.time()) < 5
    on_disk = json.loads((repo / "digits" / PLAN_FILE).read_text())
    assert on_disk["revision"] == stored.revision and on_disk["canary_weight"] == 25
    fresh = FilePlanStore(repo)
    await fresh.refresh()
    assert fresh.get("digits") == stored
    assert fresh.models() == ["digits"] and fresh.get("mnist") is None


async def test_atomic_replace_leaves_no_temporary_files(repo: Path) -> None:
    store = FilePlanStore(repo)
    for weight in (5, 25, 50, 100):
        await store.put(RolloutPlan(model="digits", production=1, canary=2, canary_weight=weight))
    assert sorted(p.name for p in (repo / "digits").iterdir()) == ["1", "config.pbtxt", PLAN_FILE]


async def test_revision_bumps(repo: Path) -> None:
    store = FilePlanStore(repo)
    first = await store.put(RolloutPlan(model="digits", production=1))
    assert first.revision == 1
    second = await store.put(RolloutPlan(model="digits", production=2))  # given revision 0: stored wins
    assert second.revision == 2
    third = await store.put(RolloutPlan(model="digits", production=2, revision=10))
    assert third.revision == 11
    other = FilePlanStore(repo)  # a second writer bumps past what is on disk, not its own cache
    assert (await other.put(RolloutPlan(model="digits", production=1))).revision == 12


async def test_concurrent_puts_all_bump(repo: Path) -> None:
    a, b = FilePlanStore(repo), FilePlanStore(repo)
    results = await asyncio.gather(*(s.put(RolloutPlan(model="digits", production=1)) for s in (a, b) * 5))
    assert sorted(r.revision for r in results) == list(range(1, 11))


async def test_second_store_sees_a_change_within_one_second(repo: Path) -> None:
    writer, reader = FilePlanStore(repo), FilePlanStore(repo)  # default refresh_s
    await writer.put(RolloutPlan(model="digits", production=1))
    await reader.start()
    try:
        assert reader.get("digits") is not None and reader.get("digits").production == 1  # type: ignore[union-attr]
        stored = await writer.put(RolloutPlan(model="digits", production=1, canary=2, canary_weight=50))
        await wait_for(lambda: reader.get("digits") == stored, within=1.0)
        await writer.put(RolloutPlan(model="mnist", production=1))
        await wait_for(lambda: reader.models() == ["digits", "mnist"], within=1.0)
        (repo / "mnist" / PLAN_FILE).unlink()
        await wait_for(lambda: reader.models() == ["digits"], within=1.0)
    finally:
        await reader.stop()


async def test_corrupt_file_is_ignored_and_logged_once(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer, reader = FilePlanStore(repo), FilePlanStore(repo, refresh_s=0.05)
    good = await writer.put(RolloutPlan(model="digits", production=1, canary=2, canary_weight=5))
    await reader.start()
    try:
        path = repo / "digits" / PLAN_FILE
        with caplog.at_level(logging.WARNING, logger="fleetserve.rollout.file_store"):
            path.write_text("{not json")
            await asyncio.sleep(0.3)  # several refreshes
            assert reader.get("digits") == good
            path.write_text(json.dumps({"model": "digits", "production": 1, "canary": 1}))  # invalid plan
            await asyncio.sleep(0.3)
            assert reader.get("digits") == good
        warnings = [r for r in caplog.records if "ignoring the rollout plan file of digits" in r.getMessage()]
        assert len(warnings) == 2, [r.getMessage() for r in warnings]
        fixed = await writer.put(RolloutPlan(model="digits", production=2))  # the refresher still runs
        assert (
            fixed.revision == good.revision + 1
        )  # a corrupt file's revision is unknown: the writer's counts
        await wait_for(lambda: reader.get("digits") == fixed, within=1.0)
    finally:
        await reader.stop()


async def test_a_plan_naming_another_model_is_ignored(repo: Path) -> None:
    (repo / "mnist" / PLAN_FILE).write_text(RolloutPlan(model="digits", production=1).model_dump_json())
    store = FilePlanStore(repo)
    await store.refresh()
    assert store.models() == []


async def test_model_names_must_be_plain(repo: Path) -> None:
    store = FilePlanStore(repo)
    for name in ("../escape", "a/b", ".hidden", "", "digits\n"):
        with pytest.raises(ValueError, match="invalid model name"):
            await store.put(RolloutPlan(model=name))
    with pytest.raises(ValueError, match="no model folder"):
        await store.put(RolloutPlan(model="absent"))
    assert not (repo / "absent").exists()


async def test_missing_repository_keeps_the_cache(repo: Path, tmp_path: Path) -> None:
    store = FilePlanStore(repo, refresh_s=0.05)
    stored = await store.put(RolloutPlan(model="digits", production=1))
    moved = tmp_path / "moved"
    await asyncio.to_thread(repo.rename, moved)
    await store.start()  # does not raise
    try:
        await asyncio.sleep(0.2)
        assert store.get("digits") == stored
    finally:
        await store.stop()


async def test_factory_picks_the_store(repo: Path) -> None:
    assert isinstance(plan_store(None, repo), FilePlanStore)
    assert isinstance(plan_store("", repo), FilePlanStore)
    store = plan_store("redis://127.0.0.1:6380/0", repo)
    assert isinstance(store, RedisPlanStore)
    await store.stop()  # never connected: closes nothing, raises nothing
