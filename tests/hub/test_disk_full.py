"""A spool disk that refuses writes (full, read-only) stops the hub's intake, not the hub, and loses nothing.

The disk is a real tmpfs of 4 MiB mounted for the test (root only, as the suite runs in CI and here); where it
cannot be mounted, the same failures come from fault injection at the spool's `os.fsync` (ENOSPC, EROFS),
which exercises the same code in the hub (`QALA_TEST_NO_TMPFS=1` forces that mode; the read-only phase falls
back to it, and prints so, when the kernel keeps refusing the remount because a file is open for writing).
The spool's own consistency after a refused write is checked directly as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hub import spool as spool_module
from hub.spool import Spool, SpoolWriteError
from tests.hub.conftest import (
    HubProcess,
    async_wait_until,
    expected_pm25,
    influx_count,
    influx_pm25,
    publish_fleet,
    running_hub,
    v1_table,
    wait_until,
    write_config,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from simulators.services import Influxd, Mosquitto
    from tests.hub.conftest import Publisher


class Disk:
    """Makes the spool's disk refuse writes and take them again: a real tmpfs, or fault injection."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = folder
        self.monkeypatch = monkeypatch
        folder.mkdir()
        mounted = not os.environ.get("QALA_TEST_NO_TMPFS") and os.geteuid() == 0 and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True, check=False,
        ).returncode == 0
        self.real = mounted
        self.refusing: int | None = None  # errno injected (fault injection mode, or a read-only fallback)
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            if self.refusing is not None:
                raise OSError(self.refusing, os.strerror(self.refusing))
            real_fsync(fd)

        monkeypatch.setattr(spool_module.os, "fsync", fsync)

    def fill(self) -> None:
        """No space left (ENOSPC)."""
        if self.real:
            with (self.folder / "filler").open("wb", buffering=0) as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)
        else:
            self.refusing = errno.ENOSPC

    def read_only(self) -> None:
        if self.real:
            # the kernel refuses (busy) while a file on it is open for writing, as the hub's open segment is
            # until its batch is sealed (flush_interval): try again for a while, then inject EROFS and say so
            deadline = time.monotonic() + 10
            while subprocess.run(["mount", "-o", "remount,ro", str(self.folder)], capture_output=True,
                                 check=False).returncode != 0:
                if time.monotonic() > deadline:
                    fds = [str(fd.readlink()) for fd in Path("/proc/self/fd").iterdir()]
                    print("tmpfs busy (open here:", [f for f in fds if str(self.folder) in f],
                          "): EROFS injected instead")
                    self.refusing = errno.EROFS
                    return
                time.sleep(0.05)
        else:
            self.refusing = errno.EROFS

    def heal(self) -> None:
        if self.real:
            subprocess.run(["mount", "-o", "remount,rw", str(self.folder)], check=True)
            (self.folder / "filler").unlink(missing_ok=True)
        self.refusing = None

    def close(self) -> None:
        if self.real:
            subprocess.run(["umount", "-l", str(self.folder)], check=False)


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    d = Disk(tmp_path / "disk", monkeypatch)
    try:
        yield d
    finally:
        d.close()


def test_a_refused_append_leaves_the_spool_as_it_was(disk: Disk) -> None:
    spool = Spool(disk.folder / "segments", 1 << 20)
    spool.recover()
    spool.append(b"a 1\n", 1)
    disk.fill()
    with pytest.raises(SpoolWriteError) as info:  # noqa: PT012 - a real tmpfs may take a few frames in its last page
        for _ in range(100):
            spool.append(b"b 2\n" * 2000, 2000)
    assert info.value.cause in (os.strerror(errno.ENOSPC), os.strerror(errno.EIO))
    assert str(disk.folder) in str(info.value)
    disk.heal()
    spool.append(b"c 3\n", 1)
    last = spool.seal()
    assert last is not None
    segments = [*spool.take_orphans(), last]  # a segment that could not be cut back is sealed as it was
    data = b"".join(spool.read(segment) for segment in segments)
    taken = data.count(b"b 2\n") // 2000  # frames the disk took before it was full: whole ones only
    assert data == b"a 1\n" + b"b 2\n" * 2000 * taken + b"c 3\n"
    again = Spool(disk.folder / "segments", 1 << 20)
    assert sum(s.points for s in again.recover()) == sum(s.points for s in segments)


async def test_a_full_then_read_only_disk_costs_nothing(
    tmp_path: Path, disk: Disk, mosquitto: Mosquitto, influxd: Influxd, influxd_database: str,
    publisher: Publisher,
) -> None:
    path = write_config(tmp_path, mosquitto, v1_table(influxd, influxd_database),
                        spool={"path": str(disk.folder / "state")}, site={"require_birth": False})
    devices, readings = 20, 50
    async with running_hub(path) as hub:
        await asyncio.to_thread(publish_fleet, publisher, devices, 10)
        await async_wait_until(lambda: influx_count(influxd, influxd_database) == devices * 10, 30,
                               what="the first readings stored")
        disk.fill()
        await asyncio.to_thread(publish_fleet, publisher, devices, 20, 10, births=False)
        await async_wait_until(lambda: hub.metrics.spool_write_errors > 0, 30, what="a refused spool write")
        assert hub._disk_error is not None
        await asyncio.sleep(2)
        assert not hub._stop.is_set()  # the hub stays up (the intake waits)
        disk.heal()
        await async_wait_until(lambda: influx_count(influxd, influxd_database) == devices * 30, 60,
                               what="the readings taken after the disk healed")
        assert hub._disk_error is None
        disk.read_only()
        await asyncio.to_thread(publish_fleet, publisher, devices, readings - 30, 30, births=False)
        errors = hub.metrics.spool_write_errors
        await async_wait_until(lambda: hub.metrics.spool_write_errors > errors, 30, what="a refused write (ro)")
        disk.heal()
        await async_wait_until(lambda: influx_count(influxd, influxd_database) == devices * readings, 60,
                               what="every reading")
    assert influx_pm25(influxd, influxd_database) == expected_pm25(devices, readings)
    rows = influxd.points(influxd_database, 'SELECT max("spool_write_failing"), last("spool_write_errors") '
                                            'FROM "qala_hub"')
    assert rows[0]["max"] == 1  # the self-metric said so while it lasted
    assert rows[0]["last"] >= 2



def test_a_hub_started_on_a_full_disk_stays_up(
    tmp_path: Path, disk: Disk, mosquitto: Mosquitto, influxd: Influxd, influxd_database: str,
    publisher: Publisher, hub_processes: list[HubProcess],
) -> None:
    """The landed hub crash-looped here (exit 1, a traceback, every restart). A real process on a real full disk
    (in fault-injection mode the same start runs in this process instead)."""
    path = write_config(tmp_path, mosquitto, v1_table(influxd, influxd_database),
                        spool={"path": str(disk.folder / "state")}, site={"require_birth": False})
    (disk.folder / "state").mkdir()
    disk.fill()
    if not disk.real:
        asyncio.run(_in_process(path, disk, publisher, influxd, influxd_database))
        return
    hub = HubProcess(path)
    hub_processes.append(hub)
    hub.start()
    wait_until(lambda: "mqtt: subscribed" in hub.log(), 30, what="the hub's subscription")
    publish_fleet(publisher, 5, 10)
    wait_until(lambda: "SPOOL CANNOT BE WRITTEN" in hub.log(), 30, what="the spool error")
    time.sleep(3)
    assert hub.alive()
    disk.heal()
    wait_until(lambda: influx_count(influxd, influxd_database) == 50, 60, what="the readings, once there is space")
    assert hub.terminate() == 0
    log = hub.log()
    assert "Traceback" not in log
    assert log.count("SPOOL CANNOT BE WRITTEN") == 1  # once per outage
    assert "spool: writes succeed again" in log


async def _in_process(path: Path, disk: Disk, publisher: Publisher, influxd: Influxd, database: str) -> None:
    async with running_hub(path) as hub:
        await asyncio.to_thread(publish_fleet, publisher, 5, 10)
        await async_wait_until(lambda: hub.metrics.spool_write_errors > 0, 30, what="a refused spool write")
        disk.heal()
        await async_wait_until(lambda: influx_count(influxd, database) == 50, 60, what="the readings")
