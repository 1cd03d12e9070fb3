"""Modbus setpoints through the control service: write, read back, confirm; a device's exception 03 is a
rejection with that reason; a value outside the profile's limits never reaches the bus.

The simulated actuator is simulators.modbus_devices.SimulatedDevice (the qala_board profile) behind its
Modbus TCP server. It answers a write outside its register's min/max with exception 03 (illegal data
value); to show that path, the simulated device's profile allows only 0..50 while the hub's allows 0..100.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

from hub.config import ControlConfig
from hub.control.service import ControlService, NotFoundError
from hub.modbus import config as modbus_config
from hub.modbus.poller import ModbusService
from hub.modbus.profile import Profile, load, resolve
from hub.registry import Registry
from simulators.modbus_devices import SimulatedDevice, TcpDeviceServer

if TYPE_CHECKING:
    from pathlib import Path

    from hub.model import Reading

pytestmark = pytest.mark.integration


def narrowed(profile: Profile, register: str, maximum: float) -> Profile:
    regs = tuple(dataclasses.replace(r, maximum=maximum) if r.name == register else r for r in profile.registers)
    return dataclasses.replace(profile, registers=regs)


async def test_modbus_setpoint_is_written_read_back_and_refusals_are_clear(tmp_path: Path) -> None:
    profile = load(resolve("qala_board"))
    device = SimulatedDevice(narrowed(profile, "actuator1", 50.0))
    async with TcpDeviceServer(device) as server:
        cfg = modbus_config.parse({
            "buses": {"plant": {"transport": "tcp", "host": "127.0.0.1", "port": server.port, "timeout": 0.5,
                                "retries": 1}},
            "devices": {"b1": {"bus": "plant", "unit": 1, "profile": "qala_board", "interval": 0.5}},
        })
        modbus = ModbusService(cfg, "lab")
        stored: list[Reading] = []
        control = ControlService("lab", ControlConfig(ttl=5, retries=1, ack_timeout=1), Registry(tmp_path / "r.json"),
                                 publish=lambda _t, _p: None, emit=stored.extend, modbus=modbus)
        task = asyncio.create_task(modbus.run(lambda _readings: None))
        await asyncio.sleep(0.2)  # the bus arbiter starts
        try:
            listed = control.devices()
            assert listed[0]["device"] == "b1"
            assert listed[0]["transport"] == "modbus"

            ok = control.submit("b1", "actuator1", 37.5)
            await control.wait(ok.id, 10)
            assert (ok.state, ok.applied) == ("applied", 37.5)
            assert device.value(device.profile.register("actuator1")) == 37.5

            refused_by_device = control.submit("b1", "actuator1", 80)
            await control.wait(refused_by_device.id, 10)
            assert refused_by_device.state == "rejected"
            assert refused_by_device.reason is not None
            assert "exception 03" in refused_by_device.reason
            assert device.value(device.profile.register("actuator1")) == 37.5

            requests = device.requests
            refused_by_hub = control.submit("b1", "actuator1", 150)
            assert refused_by_hub.state == "rejected"
            assert refused_by_hub.reason == "hub: 150 above max 100"
            assert device.requests == requests  # nothing went on the bus
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    outcomes = sorted((r.quality, r.value) for r in stored if r.field == "value")
    assert outcomes == [("applied", 37.5), ("rejected", 80), ("rejected", 150)]


def test_a_polled_meter_is_not_an_unknown_device(tmp_path: Path) -> None:
    """A meter the hub polls has nothing to set: the refusal says so (the landed hub said "unknown device")."""
    meter = SimpleNamespace(device=SimpleNamespace(profile=load(resolve("sdm630"))))
    modbus = SimpleNamespace(pollers={"m1": meter})
    control = ControlService("lab", ControlConfig(ttl=5, retries=1, ack_timeout=1), Registry(tmp_path / "r.json"),
                             publish=lambda _t, _p: None, emit=lambda _r: None, modbus=modbus)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="device m1 is a Modbus device this hub polls, and its profile has no "
                                            "writable registers: there is nothing to set on it"):
        control.submit("m1", "relay1", 1)
    with pytest.raises(NotFoundError, match="unknown device 'nobody'"):
        control.submit("nobody", "relay1", 1)
    assert control.devices() == []  # nothing to list for a meter
