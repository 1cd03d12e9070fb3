"""Shared helpers for the Modbus tests: profiles from dicts, and an in-memory transport over simulated devices."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hub.modbus import profile as profiles
from hub.modbus.bus import DeviceError, NoResponseError
from protocols import modbus
from simulators.modbus_devices import Fault, SimulatedDevice


def make_profile(registers: dict[str, dict[str, Any]], **head: Any) -> profiles.Profile:
    return profiles.parse({"profile": {"name": "test", **head}, "registers": registers}, "test.toml")


def builtin(name: str) -> profiles.Profile:
    return profiles.load(profiles.resolve(name))


class FakeTransport:
    """A Transport backed by SimulatedDevices: SILENT raises NoResponseError, EXCEPTION a DeviceError."""

    def __init__(self, devices: dict[int, SimulatedDevice], delay: float = 0.0) -> None:
        self.devices = devices
        self.delay = delay
        self.log: list[tuple[str, int, int]] = []  # (op, unit, address)
        self.connects = 0
        self.closed = 0

    async def connect(self) -> None:
        self.connects += 1

    def _device(self, unit: int) -> SimulatedDevice:
        device = self.devices.get(unit)
        if device is None or device.fault is Fault.SILENT:
            raise NoResponseError(f"unit {unit}: timeout")
        if device.fault is Fault.EXCEPTION:
            raise DeviceError(device.exception_code)
        return device

    async def read(self, unit: int, table: str, address: int, count: int) -> list[int]:
        self.log.append(("read", unit, address))
        await asyncio.sleep(self.delay)
        device = self._device(unit)
        try:
            return device.registers(table, address, count)
        except modbus.ModbusError as exc:
            raise DeviceError(exc.code) from None

    async def write(self, unit: int, address: int, values: list[int]) -> None:
        self.log.append(("write", unit, address))
        await asyncio.sleep(self.delay)
        device = self._device(unit)
        fn = modbus.WRITE_SINGLE_REGISTER if len(values) == 1 else modbus.WRITE_MULTIPLE_REGISTERS
        pdu = modbus.write_registers_request(address, values) if fn == 16 else \
            modbus.write_register_request(address, values[0])
        answer = device.handle(pdu)
        if answer[0] & 0x80:
            raise DeviceError(answer[1])

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def fake_transport() -> type[FakeTransport]:
    return FakeTransport
