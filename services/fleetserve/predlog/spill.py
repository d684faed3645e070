"""The spill file: records kept on local disk while Redis is unreachable, replayed in order.

Framed records (framing.py) appended to `<name>.bin`; `<name>.offset` holds how far the replay
has got, so a process that stops half-way resumes there. When the replay reaches the end both
files are removed. The file is capped at `max_bytes`: past it, `append` refuses.
Every method does blocking file I/O: call them from a thread.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from .framing import frames, read_frames

T = TypeVar("T")
_OFFSET = struct.Struct("<Q")


class SpillFile:
    """One append-only spill file and its replay offset."""

    def __init__(self, path: Path, max_bytes: int = 512 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.offset_path = self.path.with_suffix(".offset")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self.offset = 0
        self.size = 0
        self.count = 0  # records between offset and size

    def open(self) -> None:
        """Pick up what an earlier process left: the file, its offset, the records waiting."""
        with self._lock:
            self.size = self.path.stat().st_size if self.path.exists() else 0
            self.offset = 0
            if self.offset_path.exists():
                raw = self.offset_path.read_bytes()
                if len(raw) == _OFFSET.size:
                    self.offset = min(_OFFSET.unpack(raw)[0], self.size)
            self.count = 0
            if self.size > self.offset:
                with self.path.open("rb") as f:
                    f.seek(self.offset)
                    end = self.offset
                    for end, _ in read_frames(f):  # noqa: B007 - the last end is wanted
                        self.count += 1
                if end < self.size:  # a torn last frame: cut it off so appends follow whole frames
                    with self.path.open("r+b") as f:
                        f.truncate(end)
                    self.size = end
            if self.count == 0:
                self._remove()

    def empty(self) -> bool:
        """Whether no record waits for replay."""
        return self.count == 0

    def append(self, payloads: list[bytes]) -> bool:
        """Append records; False (nothing written) when the cap would be passed."""
        data = frames(payloads)
        with self._lock:
            if self.size + len(data) > self.max_bytes:
                return False
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("ab")
            self._file.write(data)
            self._file.flush()
            self.size += len(data)
            self.count += len(payloads)
            return True

    def read_batch(
        self, max_records: int, parse: Callable[[bytes], T], key: Callable[[T], str]
    ) -> tuple[list[T], int]:
        """Up to about `max_records` records from the offset, never splitting a run of records
        with the same key (a request's items); and the offset after them."""
        with self._lock:
            if self.count == 0:
                return [], self.offset
            out: list[T] = []
            end, last = self.offset, None
            with self.path.open("rb") as f:
                f.seek(self.offset)
                for after, payload in read_frames(f):
                    item = parse(payload)
                    k = key(item)
                    if len(out) >= max_records and k != last:
                        break
                    out.append(item)
                    end, last = after, k
            return out, end

    def commit(self, end: int, records: int) -> None:
        """The records up to `end` are replayed: advance, and remove the files when done."""
        with self._lock:
            self.offset = end
            self.count = max(0, self.count - records)
            if self.count == 0 or self.offset >= self.size:
                self.count = 0
                self._remove()
                return
            tmp = self.offset_path.with_suffix(".offset.tmp")
            tmp.write_bytes(_OFFSET.pack(end))
            os.replace(tmp, self.offset_path)

    def close(self) -> None:
        """Close the append handle (the files stay for the next process)."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _remove(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        for p in (self.path, self.offset_path):
            p.unlink(missing_ok=True)
        self.offset = self.size = self.count = 0
