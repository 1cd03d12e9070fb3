"""The `[modbus]` section of hub.toml: buses and the devices on them, validated before any port opens.

    [modbus.buses.rs485-1]            # a physical RS-485 line behind a serial adapter
    transport = "rtu"
    port = "/dev/ttyUSB0"
    baudrate = 9600
    [modbus.buses.plant]              # a Modbus TCP server or gateway
    transport = "tcp"
    host = "10.0.0.5"
    [modbus.devices.meter-1]
    bus = "rs485-1"
    unit = 1
    profile = "sdm630"                # a built-in profile (hub/profiles) or a path to a .toml file
    interval = 10.0

`parse` takes the section as a parsed dict and returns frozen dataclasses; every problem raises
hub.config.ConfigError whose message starts with the key path (`modbus.devices.meter-1.unit: ...`).
docs/modbus.md documents each key. Imports hub.errors (ConfigError), hub.modbus.profile and
protocols.topics; no I/O besides reading profile files.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from hub.errors import ConfigError
from hub.modbus import profile as profiles
from hub.modbus import schema
from protocols.errors import ProtocolError
from protocols.topics import check_id

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

TCP = "tcp"
RTU = "rtu"
PARITIES = ("N", "E", "O")

_BUS_COMMON = ("timeout", "retries")
_TCP_KEYS = ("host", "port", *_BUS_COMMON)
_RTU_KEYS = ("port", "baudrate", "parity", "stopbits", "bytesize", *_BUS_COMMON)
_DEVICE_KEYS = ("bus", "unit", "profile", "interval", "offline_interval", "max_gap", "retries", "actuators")


@dataclass(frozen=True)
class BusConfig:
    name: str
    transport: str
    """"tcp" or "rtu"."""
    host: str = ""
    port: int | str = 502
    """TCP port number, or the serial device path for RTU."""
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    timeout: float = 0.5
    """Seconds to wait for one answer before the transaction counts as failed."""
    retries: int = 1
    """Further attempts of a failed read while the device is online (each queued behind other devices)."""


@dataclass(frozen=True)
class DeviceConfig:
    name: str
    bus: str
    unit: int
    profile: profiles.Profile
    interval: float = 10.0
    offline_interval: float = 60.0
    """Longest wait between polls of a device that stopped answering (back-off from `interval` up to this)."""
    max_gap: int = 0
    retries: int | None = None
    """Overrides the bus's `retries` for this device."""


@dataclass(frozen=True)
class ModbusConfig:
    buses: tuple[BusConfig, ...]
    devices: tuple[DeviceConfig, ...]

    def bus(self, name: str) -> BusConfig:
        for bus in self.buses:
            if bus.name == name:
                return bus
        raise KeyError(name)


def parse(section: Mapping[str, Any], base: Path | None = None, prefix: str = "modbus") -> ModbusConfig:
    """Validate the `[modbus]` table; relative profile paths are taken from `base` (the hub.toml folder)."""
    try:
        return _parse(section, base, prefix)
    except schema.SchemaError as exc:
        raise ConfigError(str(exc)) from None


def _parse(section: Mapping[str, Any], base: Path | None, prefix: str) -> ModbusConfig:
    root = schema.table(prefix, section)
    schema.known_keys(prefix, root, (), ("buses", "devices"))
    buses_table = schema.table(f"{prefix}.buses", root.get("buses", {}))
    buses = tuple(_bus(f"{prefix}.buses.{name}", name, value) for name, value in buses_table.items())
    devices_table = schema.table(f"{prefix}.devices", root.get("devices", {}))
    by_name = {b.name: b for b in buses}
    devices = tuple(
        _device(f"{prefix}.devices.{name}", name, value, by_name, base) for name, value in devices_table.items()
    )
    seen: dict[tuple[str, int], str] = {}
    for dev in devices:
        key = (dev.bus, dev.unit)
        if key in seen:
            raise schema.SchemaError(
                f"{prefix}.devices.{dev.name}.unit",
                f"unit {dev.unit} on bus {dev.bus!r} is already used by {prefix}.devices.{seen[key]}",
            )
        seen[key] = dev.name
    return ModbusConfig(buses=buses, devices=devices)


def _bus(path: str, name: str, value: object) -> BusConfig:
    _id(path, name)
    body = schema.table(path, value)
    transport = schema.string(f"{path}.transport", body.get("transport"), choices=(TCP, RTU)) \
        if "transport" in body else None
    if transport is None:
        raise schema.SchemaError(f"{path}.transport", 'required ("tcp" or "rtu")')
    rest = {k: v for k, v in body.items() if k != "transport"}
    timeout = schema.number(f"{path}.timeout", rest.get("timeout", 0.5), 0.01, 60.0)
    retries = schema.integer(f"{path}.retries", rest.get("retries", 1), 0, 5)
    if transport == TCP:
        schema.known_keys(path, rest, ("host",), _TCP_KEYS[1:])
        return BusConfig(
            name=name,
            transport=TCP,
            host=schema.string(f"{path}.host", rest["host"]),
            port=schema.integer(f"{path}.port", rest.get("port", 502), 1, 65535),
            timeout=timeout,
            retries=retries,
        )
    schema.known_keys(path, rest, ("port",), _RTU_KEYS[1:])
    return BusConfig(
        name=name,
        transport=RTU,
        port=schema.string(f"{path}.port", rest["port"]),
        baudrate=schema.integer(f"{path}.baudrate", rest.get("baudrate", 9600), 300, 1_000_000),
        parity=schema.string(f"{path}.parity", rest.get("parity", "N"), choices=PARITIES),
        stopbits=schema.integer(f"{path}.stopbits", rest.get("stopbits", 1), 1, 2),
        bytesize=schema.integer(f"{path}.bytesize", rest.get("bytesize", 8), 7, 8),
        timeout=timeout,
        retries=retries,
    )


def _device(path: str, name: str, value: object, buses: Mapping[str, BusConfig], base: Path | None) -> DeviceConfig:
    _id(path, name)
    body = schema.table(path, value)
    schema.known_keys(path, body, ("bus", "unit", "profile"), _DEVICE_KEYS[3:])
    bus_name = schema.string(f"{path}.bus", body["bus"])
    if bus_name not in buses:
        known = ", ".join(buses) or "none defined"
        raise schema.SchemaError(f"{path}.bus", f"no bus {bus_name!r} in modbus.buses (known: {known})")
    bus = buses[bus_name]
    # RTU: 0 is broadcast (no answer) and 248..255 are reserved; TCP gateways use 0..255 (255 = "the server").
    unit = schema.integer(f"{path}.unit", body["unit"], 1, 247) if bus.transport == RTU else \
        schema.integer(f"{path}.unit", body["unit"], 0, 255)
    ref = schema.string(f"{path}.profile", body["profile"])
    file = profiles.resolve(ref, base)
    if not file.is_file():
        raise schema.SchemaError(
            f"{path}.profile",
            f"no profile {ref!r} ({file} not found; built-in: {', '.join(profiles.builtin_names())})",
        )
    try:
        prof = profiles.load(file)
    except profiles.ProfileError as exc:
        raise schema.SchemaError(f"{path}.profile", str(exc)) from None
    if "actuators" in body:
        prof = _named_actuators(f"{path}.actuators", prof, body["actuators"])
    interval = schema.number(f"{path}.interval", body.get("interval", 10.0), 0.05, 86400.0)
    offline = schema.number(f"{path}.offline_interval", body.get("offline_interval", max(60.0, interval)),
                            0.05, 86400.0)
    if offline < interval:
        raise schema.SchemaError(f"{path}.offline_interval", f"must not be below interval ({offline:g} < {interval:g})")
    retries = schema.integer(f"{path}.retries", body["retries"], 0, 5) if "retries" in body else None
    return DeviceConfig(
        name=name,
        bus=bus_name,
        unit=unit,
        profile=prof,
        interval=interval,
        offline_interval=offline,
        max_gap=schema.integer(f"{path}.max_gap", body.get("max_gap", prof.max_gap), 0, 120),
        retries=retries,
    )


def _named_actuators(path: str, prof: profiles.Profile, value: object) -> profiles.Profile:
    """A Qala board's setpoint registers under the names its config gives its actuators: `actuators = ["fan1",
    "valve1"]` (any order) makes one holding register per name, two registers each from address 0 in the
    order of the names, as the board lays them out (docs/modbus.md), in place of the profile's `actuator1`."""
    template = next((r for r in prof.registers if r.name == "actuator1" and r.table == profiles.HOLDING), None)
    if template is None:
        raise schema.SchemaError(path, f"only for the qala_board profile (a Qala board's setpoints); profile "
                                       f"{prof.name!r} has no actuator1 register")
    if not isinstance(value, list) or not 1 <= len(value) <= 32:
        raise schema.SchemaError(path, "must be a list of 1..32 actuator names, as in the board's config")
    names = sorted({_id(f"{path}[{i}]", v) for i, v in enumerate(value)})
    if len(names) != len(value):
        raise schema.SchemaError(path, "names must be different")
    kept = tuple(r for r in prof.registers if not (r.table == profiles.HOLDING and r.name.startswith("actuator")))
    named = tuple(replace(template, name=n, sensor=n, address=2 * i, description=f"setpoint of actuator {n}")
                  for i, n in enumerate(names))
    clash = {r.name for r in kept} & set(names)
    if clash:
        raise schema.SchemaError(path, f"{', '.join(sorted(clash))}: already a register of profile {prof.name!r}")
    return replace(prof, registers=kept + named)


def _id(path: str, value: object) -> str:
    try:
        return check_id(path, value)
    except ProtocolError as exc:
        raise schema.SchemaError(path, exc.problem) from None
