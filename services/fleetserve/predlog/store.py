"""The Parquet store of the writer: a batch of stream entries in, part files out, no record twice.

A batch is named by its lowest stream id. Its records are grouped by partition, and each group
is written to `part-<lowest id>.parquet` in its partition folder. A batch re-read after a crash
(the writer's pending entries) has the same lowest id, so a group whose file exists is already
written; a record id that is in an existing file, or among the `window` record ids most
recently written, is skipped (a record that reached the stream twice, e.g. replayed from a
gateway's spill). Existing files' ids are loaded at start, newest files first, up to `window`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from google.protobuf.message import DecodeError, Message

from fleetserve.wire import fleet_pb2

from . import parquet

log = logging.getLogger(__name__)
R = TypeVar("R", fleet_pb2.PredictionRecord, fleet_pb2.FeedbackRecord)
M = TypeVar("M", bound=Message)


@dataclass(slots=True)
class Outcome:
    """What became of a batch's entries."""

    written: int = 0
    duplicates: int = 0
    dropped: int = 0  # entries without a decodable record
    files: int = 0


class Seen:
    """The most recent `window` keys, oldest forgotten first."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._keys: dict[str, None] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, keys: Iterable[str]) -> None:
        """Remember keys (again: as the most recent)."""
        for k in keys:
            self._keys.pop(k, None)
            self._keys[k] = None
        while len(self._keys) > self.window:
            del self._keys[next(iter(self._keys))]


def _feedback_key(record_id: object, time_ns: object) -> str:
    return f"{record_id}@{time_ns}"


class ParquetStore:
    """Writes batches of stream entries (stream id, serialized record) under `out`."""

    def __init__(self, out: Path, window: int = 1_000_000) -> None:
        self.out = Path(out)
        self.predictions = Seen(window)
        self.feedback = Seen(window)

    def load(self) -> None:
        """Remember the ids in the newest existing part files, up to the window."""
        for kind, seen in (("predictions", self.predictions), ("feedback", self.feedback)):
            paths = sorted((self.out / kind).glob("**/part-*.parquet"), key=lambda p: p.stat().st_mtime)
            loaded: list[str] = []
            for path in reversed(paths):
                loaded.extend(self._keys_in(kind, path))
                if len(loaded) >= seen.window:
                    break
            seen.add(reversed(loaded))  # newest last, as if just written

    def write_predictions(self, entries: Sequence[tuple[str, bytes | None]]) -> Outcome:
        """Write a batch of prediction entries."""
        outcome = Outcome()
        groups: dict[Path, list[fleet_pb2.PredictionRecord]] = {}
        in_batch: set[str] = set()
        for entry_id, payload in entries:
            record = _decode(fleet_pb2.PredictionRecord, entry_id, payload)
            if record is None or not record.record_id:
                outcome.dropped += 1
                continue
            if record.record_id in self.predictions or record.record_id in in_batch:
                outcome.duplicates += 1
                continue
            in_batch.add(record.record_id)
            folder = parquet.prediction_dir(
                self.out, record.model, record.version, parquet.utc_date(record.time_unix_ns)
            )
            groups.setdefault(folder, []).append(record)
        first = _lowest(e[0] for e in entries)
        for folder, records in groups.items():
            self._write_group(
                "predictions", folder, first, records, parquet.predictions_table, _prediction_key, outcome
            )
        return outcome

    def write_feedback(self, entries: Sequence[tuple[str, bytes | None]]) -> Outcome:
        """Write a batch of feedback entries."""
        outcome = Outcome()
        groups: dict[Path, list[fleet_pb2.FeedbackRecord]] = {}
        in_batch: set[str] = set()
        for entry_id, payload in entries:
            record = _decode(fleet_pb2.FeedbackRecord, entry_id, payload)
            if record is None or not record.record_id:
                outcome.dropped += 1
                continue
            key = _feedback_key(record.record_id, record.time_unix_ns)
            if key in self.feedback or key in in_batch:
                outcome.duplicates += 1
                continue
            in_batch.add(key)
            groups.setdefault(
                parquet.feedback_dir(self.out, parquet.utc_date(record.time_unix_ns)), []
            ).append(record)
        first = _lowest(e[0] for e in entries)
        for folder, records in groups.items():
            self._write_group(
                "feedback", folder, first, records, parquet.feedback_table, _feedback_record_key, outcome
            )
        return outcome

    def _write_group(
        self,
        kind: str,
        folder: Path,
        first: str,
        records: list[R],
        table_of: Callable[[list[R]], pa.Table],
        key: Callable[[R], str],
        outcome: Outcome,
    ) -> None:
        seen = self.predictions if kind == "predictions" else self.feedback
        n = 0
        while records:
            path = folder / parquet.part_name(first, n)
            if not path.exists():
                parquet.write_durably(table_of(records), path)
                seen.add(key(r) for r in records)
                outcome.written += len(records)
                outcome.files += 1
                return
            # written before a crash (or by a batch cut differently): keep what that file lacks
            seen.add(self._keys_in(kind, path))
            kept = [r for r in records if key(r) not in seen]
            outcome.duplicates += len(records) - len(kept)
            records, n = kept, n + 1

    @staticmethod
    def _keys_in(kind: str, path: Path) -> list[str]:
        try:
            table = pq.ParquetFile(path).read(columns=["record_id", "time"])
        except (OSError, ValueError, pa.ArrowException) as exc:
            log.warning("cannot read the ids of %s: %s", path, exc)
            return []
        ids = table.column("record_id").to_pylist()
        if kind == "predictions":
            return [str(i) for i in ids]
        times = table.column("time").cast(pa.int64()).to_pylist()
        return [_feedback_key(i, t) for i, t in zip(ids, times, strict=True)]


def _prediction_key(r: fleet_pb2.PredictionRecord) -> str:
    return r.record_id


def _feedback_record_key(r: fleet_pb2.FeedbackRecord) -> str:
    return _feedback_key(r.record_id, r.time_unix_ns)


def _decode(kind: type[M], entry_id: str, payload: bytes | None) -> M | None:
    if payload is None:
        log.warning("stream entry %s has no record (trimmed or malformed): skipped", entry_id)
        return None
    try:
        return kind.FromString(payload)
    except DecodeError:
        log.warning("stream entry %s does not hold a %s: skipped", entry_id, kind.__name__)
        return None


def _lowest(ids: Iterable[str]) -> str:
    """The lowest stream id (`<ms>-<seq>`) among ids."""
    return min(ids, key=lambda i: tuple(int(p) for p in i.split("-")))
