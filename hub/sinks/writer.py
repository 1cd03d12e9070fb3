"""The writer: sends sealed spool segments to InfluxDB, oldest first, one batch at a time.

A segment is read back from disk and sent in batches of at most `batch_size` lines. A batch that fails with
a TransientWriteError (connection, timeout, 5xx, 429) is retried with jittered exponential backoff for as
long as it takes: the spool holds it meanwhile. A PermanentWriteError (other 4xx) is not retried: the batch
is appended to the dead-letter file with the server's message and counted. The segment is deleted only
when every one of its batches was accepted or dead-lettered. One writer per hub, so writes to one database
never run concurrently (influxd 1.6.7's `engine: error syncing wal`).

Dead-letter file format (line protocol with comment headers, so `influx -import` or a curl can replay it
once the cause is fixed):
    # qala dead letter: time=2026-11-24T21:02:38Z status=400 sink=... error=partial write: ...
    air,device=aq-0001,... pm25=12.4 1795553687123

Imports hub.spool, hub.metrics, hub.backoff and hub.sinks.base; asyncio, no MQTT.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

from hub.backoff import Backoff
from hub.sinks.base import PermanentWriteError, Sink, TransientWriteError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from hub.metrics import Metrics
    from hub.spool import Segment, Spool

log = logging.getLogger(__name__)


def batches(data: bytes, size: int) -> list[tuple[bytes, int]]:
    """Split newline-terminated lines into bodies of at most `size` lines, with their line counts."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [(b"\n".join(lines[i : i + size]) + b"\n", len(lines[i : i + size])) for i in range(0, len(lines), size)]


class Writer:
    def __init__(
        self,
        sink: Sink,
        spool: Spool,
        metrics: Metrics,
        dead_letter: Path,
        *,
        batch_size: int,
        retry_min: float,
        retry_max: float,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.metrics = metrics
        self.dead_letter = dead_letter
        self.batch_size = batch_size
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.space = asyncio.Event()
        """Set whenever a segment leaves the spool (the ingest waits on it while the spool is full)."""
        self.idle = asyncio.Event()
        self.idle.set()
        self._queue: asyncio.Queue[Segment] = asyncio.Queue()
        self._failing = False

    @property
    def pending(self) -> int:
        """Segments waiting to be sent (not counting the one being sent)."""
        return self._queue.qsize()

    def submit(self, segments: Iterable[Segment]) -> None:
        for segment in segments:
            self.idle.clear()
            self._queue.put_nowait(segment)

    async def run(self) -> None:
        """Send segments for ever (until cancelled)."""
        while True:
            segment = await self._queue.get()
            await self._send_segment(segment)
            if self._queue.empty():
                self.idle.set()

    async def _send_segment(self, segment: Segment) -> None:
        try:
            data = await asyncio.to_thread(self.spool.read, segment)
        except OSError as exc:  # a failing disk: the segment stays, the next start sends it
            log.error("spool: cannot read a segment, it stays for the next start segment=%s error=%s",  # noqa: TRY400 - a disk condition
                      segment.path, exc.strerror or exc)
            return
        for body, points in batches(data, self.batch_size):
            await self._send(body, points)
        try:
            self.spool.remove(segment)
        except OSError as exc:  # sent, but it stays on disk: sent again (overwriting itself) at the next start
            log.error("spool: cannot remove a sent segment segment=%s error=%s", segment.path,  # noqa: TRY400 - a disk condition
                      exc.strerror or exc)
        self.space.set()

    async def _send(self, body: bytes, points: int) -> None:
        backoff = Backoff(self.retry_min, self.retry_max)
        metrics = self.metrics
        while True:
            started = time.monotonic()
            try:
                await self.sink.write(body)
            except TransientWriteError as exc:
                metrics.write_errors += 1
                metrics.write_retries += 1
                delay = backoff.next()
                if not self._failing:
                    log.warning("influxdb write failed, retrying with backoff sink=%s error=%s spool_bytes=%d",
                                self.sink.description, exc, self.spool.used_bytes)
                    self._failing = True
                else:
                    log.debug("influxdb write failed again error=%s retry_in=%.1f", exc, delay)
                await asyncio.sleep(delay)
                continue
            except PermanentWriteError as exc:
                metrics.write_errors += 1
                metrics.dead_letter_batches += 1
                metrics.dead_letter_points += points
                log.error(  # noqa: TRY400 - the server's message is the point, not our traceback
                    "influxdb refused a batch, written to the dead-letter file sink=%s points=%d file=%s error=%s",
                    self.sink.description, points, self.dead_letter, exc,
                )
                await self._dead_letter_with_retries(body, exc)
                return
            metrics.write_latency(time.monotonic() - started)
            metrics.points_written += points
            metrics.batches_written += 1
            if self._failing:
                log.warning("influxdb writes succeed again sink=%s spool_bytes=%d", self.sink.description,
                            self.spool.used_bytes)
                self._failing = False
            return

    async def _dead_letter_with_retries(self, body: bytes, exc: PermanentWriteError) -> None:
        """Write the dead letter; while the disk refuses, log once and try again (the segment stays meanwhile)."""
        backoff = Backoff(1.0, 30.0)
        logged = False
        while True:
            try:
                await asyncio.to_thread(self._write_dead_letter, body, exc)
            except OSError as error:
                if not logged:
                    log.error("cannot write the dead-letter file, retrying (the segment is kept) file=%s error=%s",  # noqa: TRY400 - a disk condition
                              self.dead_letter, error.strerror or error)
                    logged = True
                await asyncio.sleep(backoff.next())
                continue
            return

    def _write_dead_letter(self, body: bytes, exc: PermanentWriteError) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        error = exc.message.replace("\n", " ").replace("\r", " ")
        header = f"# qala dead letter: time={stamp} status={exc.status} sink={self.sink.description} error={error}\n"
        self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
        with self.dead_letter.open("ab") as out:
            out.write(header.encode("utf-8") + body)
            out.flush()
            os.fsync(out.fileno())
