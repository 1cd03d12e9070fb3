"""The poller over an in-memory transport: quality flags, offline/online transitions, back-off, writes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from hub.modbus import config
from hub.modbus.bus import DeviceError, NoResponseError
from hub.modbus.poller import ModbusService, WriteNotConfirmedError, WriteRefusedError
from hub.model import DEVICE_STATUS, Reading
from protocols import registers
from simulators.modbus_devices import Fault, SimulatedDevice
from tests.modbus.conftest import FakeTransport, builtin

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

NOW_MS = 1_795_553_687_000


def _service(devices: dict[str, tuple[int, str]], transport: FakeTransport, **dev: Any) -> ModbusService:
    cfg = config.parse({
        "buses": {"bus": {"transport": "tcp", "host": "127.0.0.1", "timeout": 0.05, "retries": 1}},
        "devices": {name: {"bus": "bus", "unit": unit, "profile": prof, **dev}
                    for name, (unit, prof) in devices.items()},
    })
    return ModbusService(cfg, "ast-01", transports={"bus": transport}, wall_ms=lambda: NOW_MS)


@contextlib.asynccontextmanager
async def _buses(svc: ModbusService) -> AsyncIterator[None]:
    """Run the service's arbiters (not its pollers): tests then drive poll_once themselves."""
    tasks = [asyncio.create_task(a.run()) for a in svc.arbiters.values()]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _fields(readings: list[Reading], measurement: str | None = None) -> dict[tuple[str, str], Any]:
    return {(r.sensor, r.field): (r.value, r.quality) for r in readings
            if measurement is None or r.measurement == measurement}


async def test_first_poll_reports_online_and_values() -> None:
    meter = SimulatedDevice(builtin("sdm120"))
    svc = _service({"m1": (1, "sdm120")}, FakeTransport({1: meter}))
    async with _buses(svc):
        poller = svc.pollers["m1"]
        readings = await poller.poll_once()
        status = _fields(readings, DEVICE_STATUS)
        assert status[("status", "state")] == ("online", "ok")
        assert status[("status", "online")] == (1.0, "ok")
        values = _fields(readings, "energy")
        assert len(values) == 9
        volts, quality = values[("meter", "voltage")]
        assert 225 < volts < 235
        assert quality == "ok"
        assert all(r.site == "ast-01" and r.device == "m1" and r.ts == NOW_MS for r in readings)
        # a second poll: values only
        again = await poller.poll_once()
        assert not [r for r in again if r.measurement == DEVICE_STATUS]


async def test_out_of_range_value_is_flagged_range() -> None:
    meter = SimulatedDevice(builtin("sdm120"))
    meter._written["frequency"] = 80.0  # a broken meter
    svc = _service({"m1": (1, "sdm120")}, FakeTransport({1: meter}))
    async with _buses(svc):
        readings = await svc.pollers["m1"].poll_once()
        assert _fields(readings)[("meter", "frequency")] == (80.0, "range")


async def test_dead_device_goes_offline_once_with_lost_values_then_recovers() -> None:
    meter = SimulatedDevice(builtin("sdm120"))
    transport = FakeTransport({1: meter})
    svc = _service({"m1": (1, "sdm120")}, transport)
    async with _buses(svc):
        poller = svc.pollers["m1"]
        good = await poller.poll_once()
        last_volts = _fields(good)[("meter", "voltage")][0]

        meter.fault = Fault.SILENT
        transport.log.clear()
        lost = await poller.poll_once()
        assert len(transport.log) == 2  # one read, retried once
        status = _fields(lost, DEVICE_STATUS)
        assert status[("status", "state")] == ("offline", "ok")
        assert status[("status", "online")] == (0.0, "ok")
        assert "timeout" in str(status[("status", "error")][0])
        assert _fields(lost, "energy")[("meter", "voltage")] == (last_volts, "lost")
        assert poller.online is False

        transport.log.clear()
        assert await poller.poll_once() == []  # still silent: nothing made up, no retries while offline
        assert len(transport.log) == 1

        meter.fault = Fault.NONE
        back = await poller.poll_once()
        assert _fields(back, DEVICE_STATUS)[("status", "state")] == ("online", "ok")
        assert _fields(back, "energy")[("meter", "voltage")][1] == "ok"


async def test_device_that_never_answered_reports_offline_without_values() -> None:
    meter = SimulatedDevice(builtin("sdm120"))
    meter.fault = Fault.SILENT
    svc = _service({"m1": (1, "sdm120")}, FakeTransport({1: meter}))
    async with _buses(svc):
        readings = await svc.pollers["m1"].poll_once()
        assert {r.measurement for r in readings} == {DEVICE_STATUS}


async def test_exception_response_marks_cached_values_stale() -> None:
    meter = SimulatedDevice(builtin("qala_board"))
    svc = _service({"b1": (1, "qala_board")}, FakeTransport({1: meter}))
    async with _buses(svc):
        poller = svc.pollers["b1"]
        await poller.poll_once()
        meter.fault = Fault.EXCEPTION
        readings = await poller.poll_once()
        values = _fields(readings)
        assert values[("air", "co2")][1] == "stale"
        assert all(q == "stale" for (_, f), (_, q) in values.items())
        assert poller.online is True  # it answered: alive, just unhappy


async def test_logs_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    meter = SimulatedDevice(builtin("sdm120"))
    svc = _service({"m1": (1, "sdm120")}, FakeTransport({1: meter}))
    async with _buses(svc):
        poller = svc.pollers["m1"]
        await poller.poll_once()
        meter.fault = Fault.SILENT
        with caplog.at_level("INFO", logger="hub.modbus"):
            for _ in range(5):
                await poller.poll_once()
            meter.fault = Fault.NONE
            await poller.poll_once()
        messages = [r.getMessage() for r in caplog.records]
        assert sum("offline" in m for m in messages) == 1
        assert sum("back online" in m for m in messages) == 1


async def test_run_keeps_the_rate_and_backs_off_a_dead_device() -> None:
    live = SimulatedDevice(builtin("sdm120"))
    dead = SimulatedDevice(builtin("sdm120"))
    dead.fault = Fault.SILENT
    transport = FakeTransport({1: live, 2: dead}, delay=0.002)
    svc = _service({"live": (1, "sdm120"), "dead": (2, "sdm120")}, transport, interval=0.05, offline_interval=0.4)
    got: list[Reading] = []
    task = asyncio.create_task(svc.run(got.extend))
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    live_polls = svc.pollers["live"].stats.polls
    dead_polls = svc.pollers["dead"].stats.polls
    assert 15 <= live_polls <= 22
    assert dead_polls < live_polls / 2  # backed off
    assert svc.pollers["dead"].online is False


async def test_async_emit_is_awaited() -> None:
    meter = SimulatedDevice(builtin("sdm120"))
    svc = _service({"m1": (1, "sdm120")}, FakeTransport({1: meter}), interval=0.05)
    got: list[Reading] = []

    async def emit(readings: list[Reading]) -> None:
        await asyncio.sleep(0)
        got.extend(readings)

    task = asyncio.create_task(svc.run(emit))
    await asyncio.sleep(0.12)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got


async def _with_running(svc: ModbusService) -> asyncio.Task[None]:
    task = asyncio.create_task(svc.run(lambda _r: None))
    await asyncio.sleep(0.01)
    return task


async def test_write_reads_back_and_refuses_out_of_limits() -> None:
    board = SimulatedDevice(builtin("qala_board"))
    transport = FakeTransport({1: board})
    svc = _service({"b1": (1, "qala_board")}, transport, interval=10)
    task = await _with_running(svc)
    assert await svc.write("b1", "actuator1", 42.5) == 42.5
    assert board.value(board.profile.register("actuator1")) == 42.5
    for device, register, value, why in [
        ("b1", "actuator1", 150.0, "above max 100"),
        ("b1", "actuator1", -1.0, "below min 0"),
        ("b1", "actuator1", float("nan"), "finite number"),
        ("b1", "co2", 5.0, "not writable"),
        ("b1", "nope", 5.0, "no register 'nope'"),
        ("zz", "actuator1", 5.0, "no Modbus device 'zz'"),
    ]:
        with pytest.raises(WriteRefusedError, match=why):
            await svc.write(device, register, value)
    assert [op for op, _, _ in transport.log].count("write") == 1  # refusals never reach the bus
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_write_not_confirmed_and_device_errors() -> None:
    board = SimulatedDevice(builtin("qala_board"))
    transport = FakeTransport({1: board})
    svc = _service({"b1": (1, "qala_board")}, transport, interval=10)
    task = await _with_running(svc)
    original = board._write
    board._write = lambda address, values: original(address, registers.encode(1.0, "f32"))  # type: ignore[method-assign]
    with pytest.raises(WriteNotConfirmedError, match="wrote 7, read back 1"):
        await svc.write("b1", "actuator1", 7.0)
    board.fault = Fault.EXCEPTION
    with pytest.raises(DeviceError):
        await svc.write("b1", "actuator1", 7.0)
    board.fault = Fault.SILENT
    with pytest.raises(NoResponseError):
        await svc.write("b1", "actuator1", 7.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_write_needs_a_running_service() -> None:
    svc = _service({"b1": (1, "qala_board")}, FakeTransport({1: SimulatedDevice(builtin("qala_board"))}))
    with pytest.raises(NoResponseError, match="not running"):
        await svc.write("b1", "actuator1", 1.0)


async def test_register_outside_the_device_map_is_refused_but_the_rest_is_read(tmp_path: Path) -> None:
    (tmp_path / "wrong.toml").write_text(
        '[profile]\nname = "wrong"\n'
        '[registers.voltage]\naddress = 0\nquantity = "voltage"\n'
        '[registers.ghost]\naddress = 0x0200\nquantity = "current"\n')  # the SDM120 has nothing there
    cfg = config.parse({
        "buses": {"bus": {"transport": "tcp", "host": "127.0.0.1", "timeout": 0.05}},
        "devices": {"m1": {"bus": "bus", "unit": 1, "profile": "wrong.toml"}},
    }, base=tmp_path)
    transport = FakeTransport({1: SimulatedDevice(builtin("sdm120"))})
    svc = ModbusService(cfg, "ast-01", transports={"bus": transport}, wall_ms=lambda: NOW_MS)
    async with _buses(svc):
        readings = await svc.pollers["m1"].poll_once()
    values = _fields(readings)
    assert values[("meter", "voltage")][1] == "ok"
    assert ("meter", "current") not in values  # never read: nothing made up
    assert svc.pollers["m1"].online is True
