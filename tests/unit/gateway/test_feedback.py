"""Parsing feedback bodies and joining labels to logged predictions (a fake log)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from fleetserve.gateway.feedback import Label, accept, class_index, parse
from fleetserve.protocol.errors import FleetError
from fleetserve.wire import fleet_pb2


@dataclass
class Logged:
    model: str
    version: str
    items: int
    labels: dict[int, int] = field(default_factory=dict)


class FakeLog:
    def __init__(self, known: dict[str, Logged]) -> None:
        self.known = known
        self.recorded: list[fleet_pb2.FeedbackRecord] = []

    async def lookup(self, request_ids: list[str]) -> dict[str, Logged]:
        return {r: self.known[r] for r in request_ids if r in self.known}

    async def record_feedback(self, records: list[fleet_pb2.FeedbackRecord]) -> None:
        self.recorded.extend(records)


NAMES = ["zero", "one", "two"]


def test_parse_accepts_the_three_forms() -> None:
    one = {"request_id": "a", "label": 1}
    assert parse(one) == [Label("a", 0, 1)]
    assert parse([one, {"request_id": "b", "label": "two", "index": 3}]) == [
        Label("a", 0, 1),
        Label("b", 3, "two"),
    ]
    assert parse({"feedback": [one]}) == [Label("a", 0, 1)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "a list of objects"),
        ("x", "a list of objects"),
        ([1], r"feedback\[0\] must be an object"),
        ([{"label": 1}], "request_id"),
        ([{"request_id": "a"}], "label"),
        ([{"request_id": "a", "label": True}], "label"),
        ([{"request_id": "a", "label": -1}], "non-negative"),
        ([{"request_id": "a", "label": 1, "index": -2}], "index"),
    ],
)
def test_parse_errors_name_the_entry(body: object, message: str) -> None:
    with pytest.raises(FleetError, match=message):
        parse(body)


def test_class_index() -> None:
    assert class_index(2, NAMES) == 2
    assert class_index("one", NAMES) == 1
    assert class_index("7", None) == 7
    assert class_index("seven", NAMES) is None


async def test_accept_joins_replaces_and_reports() -> None:
    log = FakeLog({"r1": Logged("digits", "1", items=2, labels={1: 0}), "r2": Logged("digits", "2", items=1)})
    labels = [
        Label("r1", 0, "two"),
        Label("r1", 1, 1),  # replaces the earlier label 0
        Label("r2", 0, 0),
        Label("r2", 0, 2),  # replaces the one just given
        Label("r9", 0, 1),  # unknown
        Label("r1", 5, 1),  # no such item
        Label("r2", 0, "seven"),  # no such label
    ]
    result = await accept(labels, log, lambda model: NAMES)
    assert result.accepted == 4
    assert result.unknown == ["r9"]
    assert [(e["request_id"], e["index"]) for e in result.errors] == [("r1", 5), ("r2", 0)]
    assert [(r["request_id"], r["index"], r["previous"], r["label"]) for r in result.replaced] == [
        ("r1", 1, 0, 1),
        ("r2", 0, 0, 2),
    ]
    recorded = [(r.record_id, r.label, r.replaced, r.version) for r in log.recorded]
    assert recorded == [
        ("r1:0", 2, False, "1"),
        ("r1:1", 1, True, "1"),
        ("r2:0", 0, False, "2"),
        ("r2:0", 2, True, "2"),
    ]
