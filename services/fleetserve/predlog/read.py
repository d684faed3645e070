"""Reading records back from files: the file sink's daily files and spill files.

For the writer, the drift monitor and the trainer when there is no Redis: every whole record,
in the order written (a torn last frame, as a crash may leave, is where a file ends).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fleetserve.wire import fleet_pb2

from .file_sink import FEEDBACK, PREDICTIONS
from .framing import read_frames


def iter_file(path: Path) -> Iterator[bytes]:
    """The payloads (serialized records) of one framed file."""
    with Path(path).open("rb") as f:
        for _, payload in read_frames(f):
            yield payload


def files(directory: Path, kind: str) -> list[Path]:
    """The file sink's files of one kind ("predictions" or "feedback"), oldest day first."""
    return sorted(Path(directory).glob(f"{kind}-[0-9]*.bin"))


def read_predictions(source: Path) -> Iterator[fleet_pb2.PredictionRecord]:
    """Prediction records of a file, or of every predictions file in a folder."""
    paths = files(source, PREDICTIONS) if Path(source).is_dir() else [Path(source)]
    for path in paths:
        for payload in iter_file(path):
            yield fleet_pb2.PredictionRecord.FromString(payload)


def read_feedback(source: Path) -> Iterator[fleet_pb2.FeedbackRecord]:
    """Feedback records of a file, or of every feedback file in a folder."""
    paths = files(source, FEEDBACK) if Path(source).is_dir() else [Path(source)]
    for path in paths:
        for payload in iter_file(path):
            yield fleet_pb2.FeedbackRecord.FromString(payload)
