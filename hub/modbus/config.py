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
    district = "esil"                 # optional: where it is (coverage per district), with lat/lon
    lat = 51.128
    lon = 71.430

SECTION declares the keys through hub.sections, as every other section of hub.toml is declared; hub.config
puts it in the file's layout and calls `build` with what `sections.check` returned; `parse` does both for
a [modbus] table alone. Every problem raises hub.errors.ConfigError whose message starts with the key path
(`modbus.devices.meter-1.unit: ...`). docs/modbus.md documents each key. Imports hub.sections and
hub.modbus.profile; no I/O besides reading profile files; knows nothing of the rest of hub.toml.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from hub import sections
from hub.modbus import profile as profiles
from hub.sections import Key, Table, Tables

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

TCP = "tcp"
RTU = "rtu"
PARITIES = ("N", "E", "O")

BUS = Table(
    {
        "transport": Key(str, choices=(TCP, RTU)),
        "timeout": Key(float, 0.5, 0.01, 60.0, unit="seconds"),
        "retries": Key(int, 1, 0, 5),
    },
    by="transport",
    variants={
        TCP: {"host": Key(str), "port": Key(int, 502, 1, 65535)},
        RTU: {
            "port": Key(str, note="the serial device, e.g. /dev/ttyUSB0"),
            "baudrate": Key(int, 9600, 300, 1_000_000),
            "parity": Key(str, "N", choices=PARITIES),
            "stopbits": Key(int, 1, 1, 2),
            "bytesize": Key(int, 8, 7, 8),
        },
    },
)
DEVICE = Table({
    "bus": Key(str),
    "unit": Key(int),  # the range depends on the bus's transport: _device
    "profile": Key(str, note="a built-in profile (hub/profiles) or a path to a .toml file"),
    "interval": Key(float, 10.0, 0.05, 86400.0, unit="seconds"),
    "offline_interval": Key(float, None, 0.05, 86400.0, unit="seconds"),
    "max_gap": Key(int, None, 0, 120),
    "retries": Key(int, None, 0, 5),
    "actuators": Key(list, None),
    "district": Key(str, None, id=True, note="the city district the device serves (coverage per district)"),
    "lat": Key(float, None, -90, 90, unit="degrees"),
    "lon": Key(float, None, -180, 180, unit="degrees"),
})
SECTION = Table({"buses": Tables(BUS), "devices": Tables(DEVICE)}, missing="none")
"""[modbus], declared through hub.sections; hub.config puts it in hub.toml's layout."""


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
    district: str | None = None
    lat: float | None = None
    lon: float | None = None


@dataclass(frozen=True)
class ModbusConfig:
    buses: tuple[BusConfig, ...]
    devices: tuple[DeviceConfig, ...]

    def bus(self, name: str) -> BusConfig:
        for bus in self.buses:
            if bus.name == name:
                return bus
        raise KeyError(name)


def parse(section: object, base: Path | None = None, prefix: str = "modbus",
          env: Mapping[str, str] | None = None) -> ModbusConfig:
    """Validate the `[modbus]` table; relative profile paths are taken from `base` (the hub.toml folder)."""
    return build(sections.check(SECTION, section, prefix, env), base, prefix)


def build(values: Mapping[str, Any], base: Path | None = None, prefix: str = "modbus") -> ModbusConfig:
    """The ModbusConfig of a [modbus] section that `sections.check(SECTION, ...)` returned."""
    buses = {name: _bus(name, body) for name, body in values["buses"].items()}
    devices = tuple(_device(f"{prefix}.devices.{name}", name, body, buses, base)
                    for name, body in values["devices"].items())
    seen: dict[tuple[str, int], str] = {}
    for dev in devices:
        key = (dev.bus, dev.unit)
        if key in seen:
            raise sections.fail(
                f"{prefix}.devices.{dev.name}.unit",
                f"unit {dev.unit} on bus {dev.bus!r} is already used by {prefix}.devices.{seen[key]}",
            )
        seen[key] = dev.name
    return ModbusConfig(buses=tuple(buses.values()), devices=devices)


def _bus(name: str, body: Mapping[str, Any]) -> BusConfig:
    return BusConfig(name=name, **body)


def _device(path: str, name: str, body: Mapping[str, Any], buses: Mapping[str, BusConfig],
            base: Path | None) -> DeviceConfig:
    bus_name = body["bus"]
    if bus_name not in buses:
        known = ", ".join(buses) or "none defined"
        raise sections.fail(f"{path}.bus", f"no bus {bus_name!r} in modbus.buses (known: {known})")
    # RTU: 0 is broadcast (no answer) and 248..255 are reserved; TCP gateways use 0..255 (255 = "the server").
    lo, hi = (1, 247) if buses[bus_name].transport == RTU else (0, 255)
    unit = body["unit"]
    if not lo <= unit <= hi:
        raise sections.fail(f"{path}.unit", f"must be {lo}..{hi} on a {buses[bus_name].transport} bus, got {unit}")
    ref = body["profile"]
    file = profiles.resolve(ref, base)
    if not file.is_file():
        raise sections.fail(
            f"{path}.profile",
            f"no profile {ref!r} ({file} not found; built-in: {', '.join(profiles.builtin_names())})",
        )
    try:
        prof = profiles.load(file)
    except profiles.ProfileError as exc:
        raise sections.fail(f"{path}.profile", str(exc)) from None
    if body["actuators"] is not None:
        prof = _named_actuators(f"{path}.actuators", prof, body["actuators"])
    interval = body["interval"]
    offline = max(60.0, interval) if body["offline_interval"] is None else body["offline_interval"]
    if (body["lat"] is None) != (body["lon"] is None):
        raise sections.fail(f"{path}.{'lon' if body['lon'] is None else 'lat'}", "required with "
                            f"{path}.{'lat' if body['lon'] is None else 'lon'} (coordinates are a pair)")
    if offline < interval:
        raise sections.fail(f"{path}.offline_interval", f"must not be below interval ({offline:g} < {interval:g})")
    return DeviceConfig(
        name=name,
        bus=bus_name,
        unit=unit,
        profile=prof,
        interval=interval,
        offline_interval=offline,
        max_gap=prof.max_gap if body["max_gap"] is None else body["max_gap"],
        retries=body["retries"],
        district=body["district"],
        lat=body["lat"],
        lon=body["lon"],
    )


def _named_actuators(path: str, prof: profiles.Profile, value: object) -> profiles.Profile:
    """A Qala board's setpoint registers under the names its config gives its actuators: `actuators = ["fan1",
    "valve1"]` (any order) makes one holding register per name, two registers each from address 0 in the
    order of the names, as the board lays them out (docs/modbus.md), in place of the profile's `actuator1`."""
    template = next((r for r in prof.registers if r.name == "actuator1" and r.table == profiles.HOLDING), None)
    if template is None:
        raise sections.fail(path, f"only for the qala_board profile (a Qala board's setpoints); profile "
                                       f"{prof.name!r} has no actuator1 register")
    if not isinstance(value, list) or not 1 <= len(value) <= 32:
        raise sections.fail(path, "must be a list of 1..32 actuator names, as in the board's config")
    names = sorted({sections.valid_id(f"{path}[{i}]", v) for i, v in enumerate(value)})
    if len(names) != len(value):
        raise sections.fail(path, "names must be different")
    kept = tuple(r for r in prof.registers if not (r.table == profiles.HOLDING and r.name.startswith("actuator")))
    named = tuple(replace(template, name=n, sensor=n, address=2 * i, description=f"setpoint of actuator {n}")
                  for i, n in enumerate(names))
    clash = {r.name for r in kept} & set(names)
    if clash:
        raise sections.fail(path, f"{', '.join(sorted(clash))}: already a register of profile {prof.name!r}")
    return replace(prof, registers=kept + named)
