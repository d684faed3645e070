"""Consistent assignment of requests to production or canary."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys

import pytest

from fleetserve.rollout.hashing import assign, bucket
from fleetserve.rollout.plan import RolloutPlan

KEYS = [f"user-{i}" for i in range(10_000)]
Z = 4.5  # bounds of 4.5 standard deviations: a false failure about once in 150,000 runs


def plan(weight: float, canary: int | None = 2, production: int | None = 1) -> RolloutPlan:
    return RolloutPlan(model="digits", production=production, canary=canary, canary_weight=weight)


def canary_keys(p: RolloutPlan, rng: random.Random | None = None) -> set[str]:
    rng = rng or random.Random(0)
    return {k for k in KEYS if assign(p, k, rng)[1] == "canary"}


def test_bucket_is_in_unit_interval_and_deterministic() -> None:
    values = [bucket("digits", k) for k in KEYS]
    assert all(0.0 <= v < 1.0 for v in values)
    assert values == [bucket("digits", k) for k in KEYS]


def test_bucket_does_not_depend_on_the_process() -> None:
    """Every replica must agree: the hash is not Python's salted hash()."""
    code = "from fleetserve.rollout.hashing import bucket; print(repr(bucket('digits', 'user-42')))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert float(out.stdout) == bucket("digits", "user-42")


def test_bucket_depends_on_the_model() -> None:
    same = sum(bucket("digits", k) == bucket("mnist", k) for k in KEYS[:1000])
    assert same == 0


def test_bucket_is_uniform() -> None:
    bins = 10
    counts = [0] * bins
    for k in KEYS:
        counts[int(bucket("digits", k) * bins)] += 1
    expected = len(KEYS) / bins
    chi2 = sum((c - expected) ** 2 / expected for c in counts)
    assert chi2 < 27.88, counts  # chi-square, 9 degrees of freedom, p = 0.001


def test_sticky_keys_ignore_the_random_generator() -> None:
    p = plan(30)
    first = {k: assign(p, k, random.Random(1)) for k in KEYS[:2000]}
    again = {k: assign(p, k, random.Random(99)) for k in KEYS[:2000]}
    assert first == again
    assert {route for _, route in first.values()} == {"canary", "production"}
    assert all(v == (2 if r == "canary" else 1) for v, r in first.values())


def test_raising_the_weight_moves_only_the_keys_in_the_band() -> None:
    at25, at50 = canary_keys(plan(25)), canary_keys(plan(50))
    assert at25 <= at50, "no key goes back from canary to production"
    moved = at50 - at25
    assert moved == {k for k in KEYS if 0.25 <= bucket("digits", k) < 0.5}
    n, p = len(KEYS), 0.25
    assert abs(len(moved) - n * p) < Z * math.sqrt(n * p * (1 - p)), len(moved)


def test_keyed_split_matches_the_weight() -> None:
    n, p = len(KEYS), 0.05
    count = len(canary_keys(plan(5)))
    assert abs(count - n * p) < Z * math.sqrt(n * p * (1 - p)), count


@pytest.mark.parametrize("weight", [5.0, 30.0, 50.0])
def test_unkeyed_split_within_binomial_bounds(weight: float) -> None:
    rng = random.Random(20240601)
    n, p = 20_000, weight / 100
    count = sum(assign(plan(weight), None, rng)[1] == "canary" for _ in range(n))
    assert abs(count - n * p) < Z * math.sqrt(n * p * (1 - p)), count


def test_an_empty_key_counts_as_no_key() -> None:
    rng = random.Random(7)
    routes = {assign(plan(50), "", rng)[1] for _ in range(200)}
    assert routes == {"canary", "production"}


@pytest.mark.parametrize("key", [None, "user-1"])
def test_weight_zero_and_hundred(key: str | None) -> None:
    rng = random.Random(3)
    keys = KEYS[:2000] if key else [None] * 2000
    assert {assign(plan(0), k, rng) for k in keys} == {(1, "production")}
    assert {assign(plan(100), k, rng) for k in keys} == {(2, "canary")}


def test_no_canary_is_production() -> None:
    rng = random.Random(0)
    assert assign(plan(0, canary=None), "user-1", rng) == (1, "production")
    assert assign(plan(0, canary=None), None, rng) == (1, "production")


def test_production_none_means_the_highest_version() -> None:
    rng = random.Random(0)
    assert assign(plan(0, production=None), "user-1", rng) == (None, "production")
    assert assign(plan(100, production=None), "user-1", rng) == (2, "canary")
