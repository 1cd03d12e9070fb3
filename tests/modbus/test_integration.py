"""The hub's poller against simulated meters over real transports: RTU on a pty pair, Modbus TCP on loopback.

The hub side is the production path (pymodbus clients behind PymodbusTransport); the devices are
simulators/modbus_devices.py. Timeouts are short (0.1 s) so the whole module runs in a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from hub import cli
from hub.modbus import config
from hub.modbus.cli import run_probe
from hub.modbus.poller import ModbusService
from hub.modbus.probe import candidates_from_profile
from hub.model import DEVICE_STATUS, Reading
from protocols import registers
from simulators.modbus_devices import Fault, RtuBusSimulator, SimulatedDevice, TcpDeviceServer
from tests.modbus.conftest import builtin

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.integration

INTERVAL = 0.2


def _config(rtu_port: str, tcp_port: int, devices: dict[str, dict[str, Any]]) -> config.ModbusConfig:
    return config.parse({
        "buses": {
            "rs485": {"transport": "rtu", "port": rtu_port, "baudrate": 38400, "timeout": 0.1, "retries": 1},
            "plant": {"transport": "tcp", "host": "127.0.0.1", "port": tcp_port, "timeout": 0.1, "retries": 1},
        },
        "devices": devices,
    })


@contextlib.asynccontextmanager
async def _running(svc: ModbusService, seconds: float) -> AsyncIterator[list[Reading]]:
    got: list[Reading] = []
    task = asyncio.create_task(svc.run(got.extend))
    try:
        yield got
        await asyncio.sleep(seconds)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _spacing(starts: list[float]) -> float:
    return statistics.median(b - a for a, b in itertools.pairwise(starts))


async def test_rtu_bus_and_tcp_meter_keep_their_rate_with_a_dead_device() -> None:
    sdm630 = SimulatedDevice(builtin("sdm630"), seed=1)
    sdm120 = SimulatedDevice(builtin("sdm120"), seed=2)
    dead = SimulatedDevice(builtin("sdm120"), seed=3)
    dead.fault = Fault.SILENT
    heat = SimulatedDevice(builtin("onicon_system10"), seed=4)
    async with RtuBusSimulator({1: sdm630, 2: sdm120, 3: dead}) as bus, TcpDeviceServer(heat) as tcp:
        cfg = _config(bus.port, tcp.port, {
            "m630": {"bus": "rs485", "unit": 1, "profile": "sdm630", "interval": INTERVAL},
            "m120": {"bus": "rs485", "unit": 2, "profile": "sdm120", "interval": INTERVAL},
            "dead": {"bus": "rs485", "unit": 3, "profile": "sdm120", "interval": INTERVAL, "offline_interval": 0.4},
            "heat": {"bus": "plant", "unit": 1, "profile": "onicon_system10", "interval": INTERVAL},
        })
        svc = ModbusService(cfg, "ast-01")
        window = 2.4
        async with _running(svc, window) as got:
            pass
    dead_poller = svc.pollers["dead"]
    assert dead_poller.online is False
    assert dead_poller.stats.timeouts >= 3  # its timeouts happened on the same bus, during the window
    assert bus.frames_in > 0
    for name in ("m630", "m120", "heat"):
        poller = svc.pollers[name]
        starts = list(poller.stats.poll_starts)
        assert poller.online is True, name
        assert poller.stats.answered >= 0.75 * window / INTERVAL, (name, poller.stats)
        assert INTERVAL * 0.8 <= _spacing(starts) <= INTERVAL * 1.5, (name, starts)
        values = [r for r in got if r.device == name and r.measurement != DEVICE_STATUS]
        assert values
        assert {r.quality for r in values} == {"ok"}, name
    by_field = {(r.device, r.sensor, r.field): r.value for r in got}
    assert 220 < float(by_field[("m630", "l2", "voltage")]) < 240
    assert 49 < float(by_field[("m120", "meter", "frequency")]) < 51
    assert 60 < float(by_field[("heat", "meter", "heat_supply_temp")]) < 90
    assert by_field[("dead", "status", "state")] == "offline"


@pytest.mark.parametrize("fault", [Fault.BAD_CRC, Fault.TRUNCATED, Fault.GARBAGE, Fault.EXCEPTION, Fault.SLOW])
async def test_rtu_faults_do_not_hurt_the_poller(fault: Fault) -> None:
    meter = SimulatedDevice(builtin("sdm120"))
    neighbour = SimulatedDevice(builtin("sdm630"))
    async with RtuBusSimulator({1: meter, 2: neighbour}) as bus:
        cfg = _config(bus.port, 1, {
            "m1": {"bus": "rs485", "unit": 1, "profile": "sdm120", "interval": 0.1, "offline_interval": 0.2},
            "m2": {"bus": "rs485", "unit": 2, "profile": "sdm630", "interval": 0.1},
        })
        svc = ModbusService(cfg, "ast-01")
        task = asyncio.create_task(svc.run(lambda _r: None))
        try:
            await asyncio.sleep(0.3)
            meter.fault = fault
            meter.delay = 0.3  # for SLOW: longer than the 0.1 s timeout, so its answer arrives late
            await asyncio.sleep(0.8)
            expected_online = fault is Fault.EXCEPTION  # an exception response is an answer
            assert svc.pollers["m1"].online is expected_online
            polls_before = svc.pollers["m2"].stats.answered
            meter.fault = Fault.NONE
            await asyncio.sleep(0.8)
            assert svc.pollers["m1"].online is True
            assert svc.pollers["m2"].online is True
            assert svc.pollers["m2"].stats.answered > polls_before
            assert not task.done()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.mark.parametrize("fault", [Fault.DISCONNECT, Fault.GARBAGE, Fault.SILENT, Fault.TRUNCATED])
async def test_tcp_faults_and_reconnects(fault: Fault) -> None:
    heat = SimulatedDevice(builtin("onicon_system10"))
    async with TcpDeviceServer(heat) as tcp:
        cfg = _config("/dev/null", tcp.port, {
            "heat": {"bus": "plant", "unit": 1, "profile": "onicon_system10", "interval": 0.1,
                     "offline_interval": 0.2},
        })
        svc = ModbusService(cfg, "ast-01")
        svc.arbiters["plant"]._reconnect_min = 0.05
        svc.arbiters["plant"]._reconnect_delay = 0.05
        task = asyncio.create_task(svc.run(lambda _r: None))
        try:
            await asyncio.sleep(0.3)
            assert svc.pollers["heat"].online is True
            heat.fault = fault
            await asyncio.sleep(0.7)
            assert svc.pollers["heat"].online is False
            heat.fault = Fault.NONE
            await asyncio.sleep(1.0)
            assert svc.pollers["heat"].online is True
            assert not task.done()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_tcp_server_going_away_and_coming_back() -> None:
    heat = SimulatedDevice(builtin("onicon_system10"))
    server = TcpDeviceServer(heat)
    port = await server.start()
    cfg = _config("/dev/null", port, {
        "heat": {"bus": "plant", "unit": 1, "profile": "onicon_system10", "interval": 0.1, "offline_interval": 0.2},
    })
    svc = ModbusService(cfg, "ast-01")
    svc.arbiters["plant"]._reconnect_min = svc.arbiters["plant"]._reconnect_delay = 0.05
    task = asyncio.create_task(svc.run(lambda _r: None))
    try:
        await asyncio.sleep(0.3)
        assert svc.pollers["heat"].online is True
        await server.stop()
        await asyncio.sleep(0.6)
        assert svc.pollers["heat"].online is False
        await server.start(port=port)
        await asyncio.sleep(1.0)
        assert svc.pollers["heat"].online is True
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop()


async def test_write_over_rtu_reads_back() -> None:
    board = SimulatedDevice(builtin("qala_board"))
    async with RtuBusSimulator({7: board}) as bus:
        cfg = _config(bus.port, 1, {"b1": {"bus": "rs485", "unit": 7, "profile": "qala_board", "interval": 0.1}})
        svc = ModbusService(cfg, "ast-01")
        async with _running(svc, 0.2) as got:
            await asyncio.sleep(0.15)
            assert await svc.write("b1", "actuator1", 37.5) == 37.5
            await asyncio.sleep(0.25)
    assert board.value(board.profile.register("actuator1")) == 37.5
    setpoints = [r for r in got if r.field == "setpoint"]
    assert setpoints[-1].value == 37.5


@pytest.mark.parametrize("order", registers.ORDERS)
async def test_probe_finds_each_float_order_over_tcp(order: str) -> None:
    meter = SimulatedDevice(builtin("sdm630"), order=order)
    async with TcpDeviceServer(meter) as tcp:
        bus = config.BusConfig("probe", config.TCP, host="127.0.0.1", port=tcp.port, timeout=0.5, retries=0)
        ranked = await run_probe(bus, 1, candidates_from_profile(builtin("sdm630")))
    assert (ranked[0].order, ranked[0].offset) == (order, 0)


async def test_probe_over_rtu_finds_order_and_offset() -> None:
    meter = SimulatedDevice(builtin("sdm120"), order="DCBA")
    async with RtuBusSimulator({5: meter}) as sim:
        bus = config.BusConfig("probe", config.RTU, port=sim.port, baudrate=38400, timeout=0.3, retries=0)
        cands = candidates_from_profile(builtin("sdm120"))
        shifted = [type(c)(c.name, c.address - 1 if c.address else c.address, c.quantity) for c in cands]
        ranked = await run_probe(bus, 5, shifted[1:])  # voltage at 0 cannot be shifted below 0
    assert (ranked[0].order, ranked[0].offset) == ("DCBA", 1)


def test_qala_modbus_probe_command(capsys: pytest.CaptureFixture[str]) -> None:
    sim = subprocess.Popen(
        [sys.executable, "-m", "simulators.modbus_devices", "--profile", "sdm120", "--tcp", "0", "--order", "BADC"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert sim.stdout is not None
        port = sim.stdout.readline().strip().rsplit(":", 1)[1]
        code = cli.main(["modbus", "probe", "--tcp", f"127.0.0.1:{port}", "--profile", "sdm120", "--timeout", "0.5"])
    finally:
        sim.terminate()
        sim.wait(5)
    out = capsys.readouterr().out
    assert code == 0
    assert 'order = "BADC"' in out
    assert "[registers.voltage]" in out
