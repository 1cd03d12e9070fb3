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

A disk that refuses writes (full, read-only, failing: ENOSPC, EROFS, EIO) raises SpoolWriteError from
`append` or `seal`, naming the path and the cause, and leaves the spool consistent: a frame that was not
written whole and fsynced is cut off again (or, when even that fails, the segment is closed and a new one is
begun next time, the old one's good frames kept for `recover`), so the caller can simply try again later.
`recover` leaves in place what it cannot seal and says so.

Synchronous file I/O only (the service calls append/seal in a worker thread); thread-safe accounting.
Imports the standard library and hub.atomic (fsync_folder).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from hub.atomic import fsync_folder

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


class SpoolWriteError(OSError):
    """The spool's disk refused a write; `path` and `cause` (the OS error's text) say where and why."""

    def __init__(self, path: Path, exc: OSError) -> None:
        self.cause = exc.strerror or type(exc).__name__
        super().__init__(exc.errno, f"{path}: {self.cause}")
        self.path = path


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._bytes = 0
        self._segments = 0
        self._next_id = 1
        self._file: BinaryIO | None = None
        self._orphans: list[Segment] = []
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
            try:
                self._seal_left_open(path)
            except OSError as exc:  # a read-only or failing disk: the segment stays, sealed at a later start
                log.error("spool: cannot seal a segment left open, it stays for a later start segment=%s error=%s",  # noqa: TRY400 - a disk condition: one line, no traceback
                          path, exc.strerror or exc)
                self._next_id = max(self._next_id, int(path.stem) + 1)
        try:
            fsync_folder(self.dir)
        except OSError as exc:
            log.error("spool: cannot fsync the spool folder path=%s error=%s", self.dir, exc.strerror or exc)  # noqa: TRY400 - a disk condition: one line, no traceback
        found: list[Segment] = []
        for path in sorted(self.dir.glob("*" + SEALED)):
            frames, _ = _frames(path.read_bytes())
            points = sum(frame.count(b"\n") for frame in frames)
            found.append(Segment(int(path.stem), path, path.stat().st_size, points))
        with self._lock:
            self._bytes = sum(s.size for s in found)
            self._segments = len(found)
        self._next_id = max(self._next_id, max((s.id for s in found), default=0) + 1)
        return found

    @staticmethod
    def _seal_left_open(path: Path) -> None:
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

    def _open_path(self) -> Path:
        return self.dir / f"{self._open_id:016d}{OPEN}"

    def append(self, payload: bytes, points: int) -> None:
        """Write one frame of whole lines to the open segment and fsync it (opens a segment if needed).

        SpoolWriteError when the disk refuses: nothing of this frame counts as written."""
        if self._file is None:
            self._open_id = self._next_id
            self._next_id += 1
            try:
                file = self._open_path().open("xb", buffering=0)  # unbuffered: a refused write leaves no bytes behind
            except OSError as exc:
                raise SpoolWriteError(self._open_path(), exc) from None
            self._file = file
            self._opened_at = time.monotonic()
            self._open_size = 0
            self._open_points = 0
            with self._lock:
                self._segments += 1
            try:
                fsync_folder(self.dir)
            except OSError as exc:
                self._abandon()
                raise SpoolWriteError(self.dir, exc) from None
        frame = memoryview(_HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
        try:
            written = 0
            while written < len(frame):
                written += self._file.write(frame[written:]) or 0
            os.fsync(self._file.fileno())
        except OSError as exc:
            self._cut_back()
            raise SpoolWriteError(self._open_path(), exc) from None
        self._open_size += len(frame)
        self._open_points += points
        with self._lock:
            self._bytes += len(frame)

    def _cut_back(self) -> None:
        """After a failed append: cut the open segment back to its last whole frame, or give it up."""
        assert self._file is not None, "an open segment"
        try:
            self._file.truncate(self._open_size)
            self._file.seek(self._open_size)
            os.fsync(self._file.fileno())
        except OSError:
            self._abandon()

    def _abandon(self) -> None:
        """Close the open segment: its whole frames become a sealed segment if the disk lets it be renamed
        (`take_orphans` hands it to the writer), else they stay for `recover` at the next start; the next
        append begins a new segment. An empty one is removed when possible."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        self._file = None
        path = self._open_path()
        if self._open_size == 0:
            with contextlib.suppress(OSError):
                path.unlink()
            with self._lock:
                self._segments -= 1
        else:
            try:
                path.replace(path.with_suffix(SEALED))
            except OSError:
                log.error("spool: a segment could not be cut back after a failed write; its whole frames are "  # noqa: TRY400 - a disk condition
                          "kept for the next start segment=%s frames_bytes=%d", path, self._open_size)
            else:
                self._orphans.append(Segment(self._open_id, path.with_suffix(SEALED), self._open_size,
                                             self._open_points))
        self._open_size = 0
        self._open_points = 0

    def take_orphans(self) -> list[Segment]:
        """Segments sealed after a refused write (see _abandon), for the writer; each is handed out once."""
        orphans, self._orphans = self._orphans, []
        return orphans

    def seal(self) -> Segment | None:
        """Close the open segment and make it a sealed one; None if nothing is open. SpoolWriteError when
        the disk refuses (the segment then stays open: seal again later)."""
        if self._file is None:
            return None
        path = self._open_path()
        sealed = path.with_suffix(SEALED)
        try:
            os.fsync(self._file.fileno())
            path.replace(sealed)
        except OSError as exc:
            raise SpoolWriteError(path, exc) from None
        with contextlib.suppress(OSError):
            self._file.close()
        self._file = None
        try:
            fsync_folder(self.dir)
        except OSError as exc:
            log.error("spool: cannot fsync the spool folder after sealing path=%s error=%s", self.dir,  # noqa: TRY400 - one line
                      exc.strerror or exc)
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
