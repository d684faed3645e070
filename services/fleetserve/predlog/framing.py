"""Length-prefixed frames: the on-disk form of records in the file sink and the spill file.

A frame is an 8-byte header, the payload length and its CRC-32 (both little-endian uint32),
then the payload (a serialized record). Files are append-only, so the only damage a crash can
do is a torn last frame; readers stop at the first frame that is incomplete or fails its CRC.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import BinaryIO

HEADER = struct.Struct("<II")
MAX_FRAME = 64 * 1024 * 1024


def frame(payload: bytes) -> bytes:
    """One frame holding `payload`."""
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def frames(payloads: Iterable[bytes]) -> bytes:
    """Frames for each payload, concatenated."""
    return b"".join(frame(p) for p in payloads)


def read_frames(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(offset after the frame, payload) of each whole frame from the stream's position on."""
    offset = stream.tell()
    while True:
        header = stream.read(HEADER.size)
        if len(header) < HEADER.size:
            return
        length, crc = HEADER.unpack(header)
        if length > MAX_FRAME:
            return
        payload = stream.read(length)
        if len(payload) < length or zlib.crc32(payload) != crc:
            return
        offset += HEADER.size + length
        yield offset, payload
