"""Generated and given request ids (CONTRACT.md: 32 hex characters when generated)."""

from __future__ import annotations

import os
import re

import pytest

from fleetserve.gateway import request_ids
from fleetserve.gateway.request_ids import request_id

HEX32 = re.compile(r"^[0-9a-f]{32}$")


def test_a_sane_given_id_is_kept() -> None:
    assert request_id("order-17:img.3") == "order-17:img.3"


@pytest.mark.parametrize("given", [None, "", "has space", "x" * 129, "semi;colon", "új"])
def test_a_missing_or_odd_id_is_replaced_by_32_hex_characters(given: str | None) -> None:
    assert HEX32.match(request_id(given))


def test_generated_ids_do_not_repeat() -> None:
    ids = {request_id(None) for _ in range(100_000)}
    assert len(ids) == 100_000


def test_two_processes_never_share_a_key() -> None:
    other = request_ids._Generator()
    assert {other.new() for _ in range(1000)}.isdisjoint({request_id(None) for _ in range(1000)})


def test_a_forked_child_generates_other_ids_than_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, then exit at once
        try:
            os.write(write, "".join(request_id(None) for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    child = {text[i : i + 32] for i in range(0, len(text), 32)}
    assert len(child) == 50
    assert child.isdisjoint({request_id(None) for _ in range(50)})
