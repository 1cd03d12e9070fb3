"""The RTU simulator's wire timing: character times, t3.5 silences, busy-time accounting, and the hub on a timed bus.

Real pty pairs; the hub side is the production pymodbus transport. Only lower bounds on time are asserted
(a loaded machine makes everything slower, never faster than the wire).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty
from typing import TYPE_CHECKING

import pytest

from hub.modbus import config
from hub.modbus.bus import PymodbusTransport
from hub.modbus.poller import ModbusService
from hub.model import DEVICE_STATUS, Reading
from protocols import modbus
from protocols.modbus_framing import rtu_frame, silence_us
from simulators.modbus_devices import LineTiming, RtuBusSimulator, SimulatedDevice, char_time
from tests.modbus.conftest import builtin

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

READ_2 = rtu_frame(1, modbus.read_request(modbus.READ_INPUT_REGISTERS, 0, 2))  # 8 characters
ANSWER_2 = 1 + 1 + 1 + 4 + 2  # unit, function, byte count, 2 registers, CRC


def test_char_time_counts_start_parity_and_stop_bits() -> None:
    assert char_time(9600) == 10 / 9600
    assert char_time(9600, parity="E") == 11 / 9600
    assert char_time(19200, 7, "O", 2) == 11 / 19200


def test_min_cycle_is_both_frames_two_silences_and_turnaround() -> None:
    line = LineTiming(9600, turnaround=0.001)
    tc = 10 / 9600
    assert line.silent == silence_us(9600) / 1e6 == pytest.approx(3.5 * tc, abs=1e-6)
    assert line.min_cycle(8, 157) == pytest.approx(172 * tc + 0.001, abs=2e-6)  # each t3.5 rounded up to the us
    assert LineTiming(9600).max_utilisation(8, 9) == pytest.approx(17 / 24, abs=1e-4)
    assert LineTiming(38400).silent == 0.00175  # fixed above 19200 baud


@contextlib.contextmanager
def _raw_port(path: str) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    try:
        yield fd
    finally:
        os.close(fd)


async def _read_frame(fd: int, size: int, within: float) -> bytes:
    """`size` bytes from `fd` (read as the event loop sees them, no polling delay); what came if not `within` s."""
    loop = asyncio.get_running_loop()
    got = bytearray()
    done = loop.create_future()

    def readable() -> None:
        with contextlib.suppress(BlockingIOError):
            got.extend(os.read(fd, 1024))
        if len(got) >= size and not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done, within)
    finally:
        loop.remove_reader(fd)
    return bytes(got)


async def test_a_read_takes_at_least_its_wire_time() -> None:
    line = LineTiming(9600)
    async with RtuBusSimulator({1: SimulatedDevice(builtin("sdm630"))}, line) as sim:
        bus = config.BusConfig("rs485", config.RTU, port=sim.port, baudrate=9600, timeout=1.0, retries=0)
        transport = PymodbusTransport(bus)
        await transport.connect()
        try:
            for _ in range(3):
                started = time.monotonic()
                values = await transport.read(1, "input", 0, 2)
                took = time.monotonic() - started
                assert len(values) == 2
                # request, the device's t3.5 before answering, the answer
                assert took >= (8 + ANSWER_2) * line.char + line.silent
                await asyncio.sleep(line.silent)
        finally:
            transport.close()
    assert sim.stats.answered == 3
    assert sim.stats.gap_violations == 0


async def test_a_master_that_breaks_the_silence_is_ignored_and_counted() -> None:
    line = LineTiming(1200)  # t3.5 is 29 ms: room for the test's own latency
    async with RtuBusSimulator({1: SimulatedDevice(builtin("sdm630"))}, line) as sim:
        with _raw_port(sim.port) as fd:
            os.write(fd, READ_2)
            os.write(fd, READ_2)  # while the first is on the line: ignored
            assert len(await _read_frame(fd, ANSWER_2, 2.0)) == ANSWER_2
            os.write(fd, READ_2)  # right after the answer, no t3.5: ignored
            assert await _read_frame(fd, 1, line.min_cycle(8, ANSWER_2)) == b""
            assert sim.stats.gap_violations == 2
            assert sim.stats.answered == 1
            os.write(fd, READ_2)  # the line has been silent long enough by now
            assert len(await _read_frame(fd, ANSWER_2, 2.0)) == ANSWER_2
    assert sim.stats.answered == 2
    assert sim.stats.gap_violations == 2


async def test_busy_time_is_the_characters_carried() -> None:
    line = LineTiming(19200, parity="E")
    absent = rtu_frame(9, modbus.read_request(modbus.READ_INPUT_REGISTERS, 0, 2))
    async with RtuBusSimulator({1: SimulatedDevice(builtin("sdm630"))}, line) as sim:
        with _raw_port(sim.port) as fd:
            os.write(fd, READ_2)
            assert len(await _read_frame(fd, ANSWER_2, 2.0)) == ANSWER_2
            await asyncio.sleep(2 * line.silent)
            os.write(fd, absent)  # a request nobody answers still occupies the line
            await asyncio.sleep(0.05)
    assert sim.stats.requests == 2
    assert sim.stats.answered == 1
    assert sim.stats.busy_seconds == pytest.approx((8 + ANSWER_2 + 8) * 11 / 19200, rel=1e-9)


async def test_hub_polls_a_timed_bus_without_gap_violations() -> None:
    line = LineTiming(19200)
    devices = {1: SimulatedDevice(builtin("sdm630"), seed=1), 2: SimulatedDevice(builtin("sdm120"), seed=2)}
    async with RtuBusSimulator(devices, line) as sim:
        cfg = config.parse({
            "buses": {"rs485": {"transport": "rtu", "port": sim.port, "baudrate": 19200, "timeout": 0.3}},
            "devices": {
                "m630": {"bus": "rs485", "unit": 1, "profile": "sdm630", "interval": 0.05},
                "m120": {"bus": "rs485", "unit": 2, "profile": "sdm120", "interval": 0.05},
            },
        })
        svc = ModbusService(cfg, "ast-01")
        got: list[Reading] = []
        task = asyncio.create_task(svc.run(got.extend))
        try:
            await asyncio.sleep(1.5)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert sim.stats.gap_violations == 0
    assert sim.stats.answered >= 5
    assert all(p.online for p in svc.pollers.values())
    values = {(r.device, r.sensor, r.field): r.value for r in got if r.measurement != DEVICE_STATUS}
    assert {r.quality for r in got if r.measurement != DEVICE_STATUS} == {"ok"}
    assert 220 < float(values[("m630", "l1", "voltage")]) < 240
    assert 49 < float(values[("m120", "meter", "frequency")]) < 51
