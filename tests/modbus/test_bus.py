"""The bus arbiter: one transaction at a time, writes ahead of polls, t3.5, failures stay with their job."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from hub.modbus.bus import (
    POLL,
    WRITE,
    BusArbiter,
    DeviceError,
    NoResponseError,
    PymodbusTransport,
    Transport,
)
from hub.modbus.config import RTU, BusConfig
from hub.modbus.config import parse as parse_modbus
from hub.modbus.poller import ModbusService

if TYPE_CHECKING:
    from pathlib import Path


class Recorder:
    """A Transport that records overlapping use and answers after `delay`."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.active = 0
        self.max_active = 0
        self.order: list[str] = []
        self.fail_connect = False
        self.connects = 0

    async def connect(self) -> None:
        self.connects += 1
        if self.fail_connect:
            raise NoResponseError("refused")

    async def read(self, unit: int, table: str, address: int, count: int) -> list[int]:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.order.append(f"read{unit}")
        await asyncio.sleep(self.delay)
        self.active -= 1
        if unit == 99:
            raise NoResponseError("timeout")
        if unit == 98:
            raise DeviceError(2)
        if unit == 97:
            raise RuntimeError("library bug")
        if unit == 96:
            await asyncio.sleep(10)
        return [unit] * count

    async def write(self, unit: int, address: int, values: list[int]) -> None:
        self.order.append(f"write{unit}")
        await asyncio.sleep(self.delay)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("baud", "parity", "stop", "expected"), [
    (9600, "N", 1, 3.5 * 10 / 9600), (9600, "E", 1, 3.5 * 11 / 9600), (2400, "N", 2, 3.5 * 11 / 2400),
    (19200, "N", 1, 3.5 * 10 / 19200), (38400, "N", 1, 0.00175), (115200, "E", 1, 0.00175)])
def test_an_rtu_bus_keeps_t35_of_silence(baud: int, parity: str, stop: int, expected: float) -> None:
    """The arbiter's silence is protocols.modbus_framing.silence_us (tests/protocols/test_modbus.py), in seconds."""
    cfg = parse_modbus({"buses": {"rs": {"transport": "rtu", "port": "/dev/null", "baudrate": baud, "parity": parity,
                                         "stopbits": stop}, "net": {"transport": "tcp", "host": "h"}}})
    service = ModbusService(cfg, "s", transports={"rs": Recorder(), "net": Recorder()})
    assert service.arbiters["rs"].silent == pytest.approx(expected, abs=1e-6)
    assert service.arbiters["net"].silent == 0.0


async def _running(transport: Transport, **kw: float) -> tuple[BusArbiter, asyncio.Task[None]]:
    arbiter = BusArbiter("bus", transport, timeout=kw.pop("timeout", 0.2), **kw)
    task = asyncio.create_task(arbiter.run())
    await asyncio.sleep(0)
    return arbiter, task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_one_transaction_at_a_time() -> None:
    rec = Recorder()
    arbiter, task = await _running(rec)
    results = await asyncio.gather(*(arbiter.read(u, "input", 0, 2) for u in range(1, 9)))
    assert results == [[u, u] for u in range(1, 9)]
    assert rec.max_active == 1
    await _stop(task)


async def test_writes_go_ahead_of_queued_polls() -> None:
    rec = Recorder(delay=0.02)
    arbiter, task = await _running(rec)
    polls = [asyncio.create_task(arbiter.read(u, "input", 0, 1)) for u in range(1, 6)]
    await asyncio.sleep(0.005)  # poll 1 is on the wire, polls 2-5 queued

    async def op(t: Transport) -> str:
        await t.write(7, 0, [1])
        return "done"

    assert await arbiter.submit(op, WRITE) == "done"
    await asyncio.gather(*polls)
    assert rec.order[:2] == ["read1", "write7"]
    assert rec.order[2:] == ["read2", "read3", "read4", "read5"]
    await _stop(task)


async def test_silent_interval_between_transactions() -> None:
    rec = Recorder(delay=0.0)
    arbiter, task = await _running(rec, silent=0.02)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for u in range(1, 6):
        await arbiter.read(u, "input", 0, 1)
    assert loop.time() - start >= 4 * 0.02
    await _stop(task)


async def test_failures_fail_only_their_job() -> None:
    rec = Recorder()
    arbiter, task = await _running(rec, timeout=0.05)
    results = await asyncio.gather(
        arbiter.read(99, "input", 0, 1), arbiter.read(98, "input", 0, 1), arbiter.read(97, "input", 0, 1),
        arbiter.read(96, "input", 0, 1), arbiter.read(1, "input", 0, 1), return_exceptions=True)
    assert isinstance(results[0], NoResponseError)
    assert isinstance(results[1], DeviceError)
    assert results[1].code == 2
    assert isinstance(results[2], NoResponseError)
    assert "library bug" in str(results[2])
    assert isinstance(results[3], NoResponseError)
    assert "guard" in str(results[3])
    assert results[4] == [1]
    assert arbiter.stats.failures == 4
    await _stop(task)


async def test_cancelled_waiter_skips_its_job() -> None:
    rec = Recorder(delay=0.02)
    arbiter, task = await _running(rec)
    first = asyncio.create_task(arbiter.read(1, "input", 0, 1))
    doomed = asyncio.create_task(arbiter.read(2, "input", 0, 1))
    await asyncio.sleep(0.005)
    doomed.cancel()
    assert await first == [1]
    assert await arbiter.read(3, "input", 0, 1) == [3]
    assert rec.order == ["read1", "read3"]
    await _stop(task)


async def test_connect_attempts_are_paced() -> None:
    rec = Recorder()
    rec.fail_connect = True
    arbiter, task = await _running(rec, reconnect_min=10.0)
    for _ in range(5):
        with pytest.raises(NoResponseError, match="refused"):  # the cause, also while the next attempt waits
            await arbiter.read(1, "input", 0, 1, POLL)
    assert rec.connects == 1
    await _stop(task)


async def test_a_missing_serial_port_is_named_with_its_cause(tmp_path: Path) -> None:
    port = tmp_path / "ttyUSB9"
    transport = PymodbusTransport(BusConfig("b", RTU, port=str(port), timeout=0.2, retries=0))
    arbiter, task = await _running(transport, reconnect_min=10.0)
    for _ in range(2):  # the first attempt, then one while the next attempt waits
        with pytest.raises(NoResponseError, match=f"cannot connect to {port}: no such serial port"):
            await arbiter.read(1, "input", 0, 1, POLL)
    await _stop(task)


async def test_stopping_fails_queued_jobs() -> None:
    rec = Recorder(delay=0.05)
    arbiter, task = await _running(rec)
    jobs = [asyncio.create_task(arbiter.read(u, "input", 0, 1)) for u in range(1, 4)]
    await asyncio.sleep(0.01)
    await _stop(task)
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert all(isinstance(r, (NoResponseError, asyncio.CancelledError)) for r in results)
    assert not arbiter.running
