"""The feedback API's input: ground-truth labels for logged predictions, arriving later.

Accepted forms: one object, a list of objects, or `{"feedback": [...]}`; each object is
`{"request_id": str, "label": int | str, "index": int (default 0)}` — the label a class index or
a label name of the model's labels.txt, `index` the item of a batch request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from fleetserve.protocol.errors import invalid
from fleetserve.wire import fleet_pb2

MAX_ITEMS = 10_000


@dataclass(frozen=True, slots=True)
class Label:
    """One label as the client gave it."""

    request_id: str
    index: int
    label: int | str


@dataclass(slots=True)
class FeedbackResult:
    """What became of a feedback call: accepted, replaced earlier labels, unknown ids, errors."""

    accepted: int = 0
    replaced: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def parse(body: Any) -> list[Label]:
    """The labels of a feedback body, or a clear error naming the entry at fault."""
    if isinstance(body, dict) and "feedback" in body:
        body = body["feedback"]
    items = [body] if isinstance(body, dict) else body
    if not isinstance(items, list) or not items:
        raise invalid('feedback must be an object, a list of objects, or {"feedback": [...]}')
    if len(items) > MAX_ITEMS:
        raise invalid(f"at most {MAX_ITEMS} labels per call, got {len(items)}")
    labels: list[Label] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise invalid(f"feedback[{i}] must be an object")
        rid = item.get("request_id")
        if not isinstance(rid, str) or not rid:
            raise invalid(f"feedback[{i}] needs a 'request_id' string")
        index = item.get("index", 0)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise invalid(f"feedback[{i}]: 'index' must be a non-negative integer")
        label = item.get("label")
        if isinstance(label, bool) or not isinstance(label, int | str) or label == "":
            raise invalid(f"feedback[{i}] needs a 'label': a class index or a label name")
        if isinstance(label, int) and label < 0:
            raise invalid(f"feedback[{i}]: a class index must be non-negative")
        labels.append(Label(rid, index, label))
    return labels


def class_index(label: int | str, names: list[str] | None) -> int | None:
    """The class index of a label (an index, a label name, or a number written as text)."""
    if isinstance(label, int):
        return label
    if names is not None and label in names:
        return names.index(label)
    if label.isdigit():
        return int(label)
    return None


class Logged(Protocol):
    """What the prediction log knows of a logged request."""

    model: str
    version: str
    items: int
    labels: dict[int, int]


class FeedbackLog(Protocol):
    """The prediction log's side of feedback."""

    async def lookup(self, request_ids: list[str]) -> Mapping[str, Logged]: ...

    async def record_feedback(self, records: list[fleet_pb2.FeedbackRecord]) -> None: ...


async def accept(
    labels: list[Label], log: FeedbackLog, label_names: Callable[[str], list[str] | None]
) -> FeedbackResult:
    """Join labels to logged predictions and record them; unknown ids and bad items are
    reported back, a label given before is replaced and reported as such."""
    logged = await log.lookup(sorted({lab.request_id for lab in labels}))
    result = FeedbackResult()
    records: list[fleet_pb2.FeedbackRecord] = []
    given: dict[tuple[str, int], int] = {}
    now = time.time_ns()
    for lab in labels:
        entry = logged.get(lab.request_id)
        if entry is None:
            if lab.request_id not in result.unknown:
                result.unknown.append(lab.request_id)
            continue
        if lab.index >= entry.items:
            result.errors.append(
                {
                    "request_id": lab.request_id,
                    "index": lab.index,
                    "error": f"the request had {entry.items} item(s)",
                }
            )
            continue
        cls = class_index(lab.label, label_names(entry.model))
        if cls is None:
            result.errors.append(
                {"request_id": lab.request_id, "index": lab.index, "error": f"unknown label {lab.label!r}"}
            )
            continue
        key = (lab.request_id, lab.index)
        previous = given.get(key, entry.labels.get(lab.index))
        if previous is not None:
            result.replaced.append(
                {"request_id": lab.request_id, "index": lab.index, "previous": previous, "label": cls}
            )
        given[key] = cls
        records.append(
            fleet_pb2.FeedbackRecord(
                schema_version=1,
                record_id=f"{lab.request_id}:{lab.index}",
                request_id=lab.request_id,
                item_index=lab.index,
                label=cls,
                time_unix_ns=now,
                replaced=previous is not None,
                model=entry.model,
                version=entry.version,
            )
        )
    if records:
        await log.record_feedback(records)
    result.accepted = len(records)
    return result
