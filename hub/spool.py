"""The durable spool: line protocol on local disk between the MQTT acknowledgement and InfluxDB's answer.

Layout: `<dir>/<id:016d>.open` is the segment being appended to, `<id>.seg` a sealed one waiting for
InfluxDB. A segment is a sequence of frames `[length u32 BE][crc32 u32 BE][payload]`, each payload a run of
complete line-protocol lines. `append` writes one frame and fsyncs it before returning: the service
acknowledges MQTT messages only after that. `seal` closes the open segment (fsync, rename, directory
fsync) so the writer can send it; `remove` deletes a segment after InfluxDB accepted all of it.

`recover` (at start) seals a `.open` left by a crash, cutting a torn last frame (a short or corrupt frame
can only be the tail: frames are written whole and fsynced in order), and returns every sealed segment,
oldest first, so the hub sends the backlog before new data. `used_bytes` counts every segment on disk against
`max_bytes`; the service stops taking messages while the spool is full.

Synchronous file I/O only (the service calls append/seal in a worker thread); thread-safe accounting.
Imports only the standard library.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">II")
OPEN = ".open"
SEALED = ".seg"


@dataclass(frozen=True)
class Segment:
    id: int
    path: Path
    size: int
    points: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _frames(data: bytes) -> tuple[list[bytes], int]:
    """The whole, valid frames at the start of data and the offset where they end."""
    out: list[bytes] = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if end > len(data):
            break
        payload = data[pos + _HEADER.size : end]
        if zlib.crc32(payload) != crc:
            break
        out.append(payload)
        pos = end
    return out, pos


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._bytes = 0
        self._segments = 0
        self._next_id = 1
        self._file: BinaryIO | None = None
        self._open_id = 0
        self._open_size = 0
        self._open_points = 0
        self._opened_at = 0.0

    # ---------------------------------------------------------------------------------------- status

    @property
    def used_bytes(self) -> int:
        """Bytes of every segment on disk, sealed and open."""
        with self._lock:
            return self._bytes

    @property
    def segments(self) -> int:
        """Segments on disk (sealed ones plus the open one, if any)."""
        with self._lock:
            return self._segments

    @property
    def full(self) -> bool:
        return self.used_bytes >= self.max_bytes

    @property
    def fill(self) -> float:
        """bytes / max_bytes."""
        return self.used_bytes / self.max_bytes

    @property
    def open_points(self) -> int:
        return self._open_points

    def open_age(self, now: float | None = None) -> float:
        """Seconds since the open segment got its first frame (0 if there is none)."""
        if self._file is None:
            return 0.0
        return (time.monotonic() if now is None else now) - self._opened_at

    # ------------------------------------------------------------------------------------- lifecycle

    def recover(self) -> list[Segment]:
        """Seal what a previous run left open and return every sealed segment, oldest first."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.dir.glob("*" + OPEN)):
            data = path.read_bytes()
            frames, end = _frames(data)
            if end < len(data):
                log.warning("spool: cut a torn tail segment=%s kept=%d cut=%d", path.name, end, len(data) - end)
                with path.open("r+b") as f:
                    f.truncate(end)
                    os.fsync(f.fileno())
            if frames:
                path.replace(path.with_suffix(SEALED))
            else:
                path.unlink()
        _fsync_dir(self.dir)
        found: list[Segment] = []
        for path in sorted(self.dir.glob("*" + SEALED)):
            frames, _ = _frames(path.read_bytes())
            points = sum(frame.count(b"\n") for frame in frames)
            found.append(Segment(int(path.stem), path, path.stat().st_size, points))
        with self._lock:
            self._bytes = sum(s.size for s in found)
            self._segments = len(found)
        self._next_id = max((s.id for s in found), default=0) + 1
        return found

    def append(self, payload: bytes, points: int) -> None:
        """Write one frame of whole lines to the open segment and fsync it (opens a segment if needed)."""
        if self._file is None:
            self._open_id = self._next_id
            self._next_id += 1
            path = self.dir / f"{self._open_id:016d}{OPEN}"
            self._file = path.open("xb")
            _fsync_dir(self.dir)
            self._opened_at = time.monotonic()
            self._open_size = 0
            self._open_points = 0
            with self._lock:
                self._segments += 1
        frame = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        self._file.write(frame)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._open_size += len(frame)
        self._open_points += points
        with self._lock:
            self._bytes += len(frame)

    def seal(self) -> Segment | None:
        """Close the open segment and make it a sealed one; None if nothing is open."""
        if self._file is None:
            return None
        self._file.close()
        self._file = None
        path = self.dir / f"{self._open_id:016d}{OPEN}"
        sealed = path.with_suffix(SEALED)
        path.replace(sealed)
        _fsync_dir(self.dir)
        return Segment(self._open_id, sealed, self._open_size, self._open_points)

    def close(self) -> Segment | None:
        """Seal the open segment (at shutdown): everything appended stays on disk for the next start."""
        return self.seal()

    # --------------------------------------------------------------------------------------- writer

    def read(self, segment: Segment) -> bytes:
        """The line protocol of a sealed segment.

        A frame failing its checksum means the disk lost data the hub had acknowledged: the frames before
        it are returned and the loss is logged as an error (the rest cannot be trusted).
        """
        data = segment.path.read_bytes()
        frames, end = _frames(data)
        if end != len(data):
            log.error("spool: corrupt segment, sending the readable part segment=%s good=%d size=%d",
                      segment.path.name, end, len(data))
        return b"".join(frames)

    def remove(self, segment: Segment) -> None:
        """Delete a segment InfluxDB accepted (or that went to the dead-letter file)."""
        segment.path.unlink(missing_ok=True)
        with self._lock:
            self._bytes -= segment.size
            self._segments -= 1
