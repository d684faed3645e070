"""A `RecordSource` over the gateway's local file sink, for running the monitor without Redis.

The file sink (`predlog.file_sink`) appends framed records to `predictions-YYYYMMDD.bin` and
`feedback-YYYYMMDD.bin` in the gateway's data folder; this source tails them: it keeps the
offset after the last whole frame of each file (`predlog.read.files` lists them, oldest day
first; `predlog.framing.read_frames` reads them) and on each read returns what was appended
since, predictions before feedback. A frame still being written is read once it is whole.
It starts at the current end of the files (`"$"`) or at their beginning (`"0"`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from google.protobuf.message import DecodeError

from fleetserve.predlog.file_sink import FEEDBACK, PREDICTIONS
from fleetserve.predlog.framing import read_frames
from fleetserve.predlog.read import files
from fleetserve.wire import fleet_pb2

from .streams import RecordBatch, SourceUnavailable


class FileRecords:
    """Tails the file sink's files in `directory` (module docstring)."""

    def __init__(
        self, directory: Path, start: str = "$", poll_s: float = 0.5, max_records: int = 10_000
    ) -> None:
        if start not in ("$", "0"):
            raise ValueError(f"a file source starts at $ (the end) or 0 (the beginning), not {start!r}")
        self.directory = Path(directory)
        self.start = start
        self.poll_s = poll_s
        self.max_records = max_records
        self._offsets: dict[Path, int] | None = None

    @property
    def offsets(self) -> dict[Path, int]:
        """The offset read up to in each file seen."""
        return dict(self._offsets or {})

    async def read(self) -> RecordBatch:
        """What was appended since the last read; waits `poll_s` when nothing was."""
        batch = await asyncio.to_thread(self._read)
        if len(batch) == 0:
            await asyncio.sleep(self.poll_s)
        return batch

    def _read(self) -> RecordBatch:
        if not self.directory.is_dir():
            raise SourceUnavailable(f"cannot read the prediction log files: {self.directory} is not a folder")
        if self._offsets is None:
            self._offsets = {} if self.start == "0" else self._ends()
        batch = RecordBatch()
        try:
            for kind in (PREDICTIONS, FEEDBACK):
                for path in files(self.directory, kind):
                    if len(batch) >= self.max_records:
                        return batch
                    self._read_file(path, kind, batch)
        except OSError as exc:
            raise SourceUnavailable(
                f"cannot read the prediction log files in {self.directory}: {exc}"
            ) from None
        return batch

    def _ends(self) -> dict[Path, int]:
        """The offset after the last whole frame of every file there now."""
        ends: dict[Path, int] = {}
        for kind in (PREDICTIONS, FEEDBACK):
            for path in files(self.directory, kind):
                end = 0
                with path.open("rb") as f:
                    for end, _ in read_frames(f):  # noqa: B007 - the last one is wanted
                        pass
                ends[path] = end
        return ends

    def _read_file(self, path: Path, kind: str, batch: RecordBatch) -> None:
        assert self._offsets is not None
        offset = self._offsets.get(path, 0)
        if path.stat().st_size <= offset:
            return
        with path.open("rb") as f:
            f.seek(offset)
            for end, payload in read_frames(f):
                self._offsets[path] = end
                try:
                    if kind == PREDICTIONS:
                        batch.predictions.append(fleet_pb2.PredictionRecord.FromString(payload))
                    else:
                        batch.feedback.append(fleet_pb2.FeedbackRecord.FromString(payload))
                except DecodeError:
                    batch.undecodable[kind] = batch.undecodable.get(kind, 0) + 1
                if len(batch) >= self.max_records:
                    return

    async def close(self) -> None:
        """Nothing to release."""
