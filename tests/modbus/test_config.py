"""The [modbus] section of hub.toml: a full example validates, each bad key is refused with its path."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pytest

from hub.config import ConfigError
from hub.modbus import config

if TYPE_CHECKING:
    from pathlib import Path

GOOD: dict[str, Any] = {
    "buses": {
        "rs485-1": {"transport": "rtu", "port": "/dev/ttyUSB0", "baudrate": 9600, "parity": "E", "timeout": 0.3},
        "plant": {"transport": "tcp", "host": "10.0.0.5", "port": 5020},
    },
    "devices": {
        "meter-1": {"bus": "rs485-1", "unit": 1, "profile": "sdm630", "interval": 5.0},
        "meter-2": {"bus": "rs485-1", "unit": 2, "profile": "sdm120"},
        "heat-1": {"bus": "plant", "unit": 1, "profile": "onicon_system10", "offline_interval": 120, "retries": 0},
    },
}


def test_good_config() -> None:
    cfg = config.parse(GOOD)
    rtu = cfg.bus("rs485-1")
    assert (rtu.transport, rtu.port, rtu.baudrate, rtu.parity, rtu.stopbits, rtu.timeout, rtu.retries) == (
        "rtu", "/dev/ttyUSB0", 9600, "E", 1, 0.3, 1)
    tcp = cfg.bus("plant")
    assert (tcp.transport, tcp.host, tcp.port) == ("tcp", "10.0.0.5", 5020)
    m1, m2, heat = cfg.devices
    assert (m1.name, m1.bus, m1.unit, m1.profile.name, m1.interval, m1.max_gap) == (
        "meter-1", "rs485-1", 1, "sdm630", 5.0, 40)
    assert (m2.interval, m2.offline_interval, m2.retries) == (10.0, 60.0, None)
    assert (heat.offline_interval, heat.retries) == (120.0, 0)


def test_empty_section_is_fine() -> None:
    assert config.parse({}) == config.ModbusConfig(buses=(), devices=())


def test_profile_path_relative_to_base(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(
        '[profile]\nname = "mine"\n[registers.v]\naddress = 0\nquantity = "voltage"\n')
    doc = {"buses": GOOD["buses"], "devices": {"m": {"bus": "plant", "unit": 3, "profile": "mine.toml"}}}
    assert config.parse(doc, base=tmp_path).devices[0].profile.name == "mine"


_DELETE = object()

BAD = [
    (("wires",), 1, "modbus.wires: unknown key"),
    (("buses",), [], "modbus.buses: must be a table"),
    (("buses", "rs485-1", "transport"), _DELETE, "modbus.buses.rs485-1.transport: required"),
    (("buses", "rs485-1", "transport"), "udp", "modbus.buses.rs485-1.transport: must be one of tcp, rtu"),
    (("buses", "rs485-1", "port"), _DELETE, "modbus.buses.rs485-1.port: required"),
    (("buses", "rs485-1", "baudrate"), 100, "modbus.buses.rs485-1.baudrate: must be 300..1000000"),
    (("buses", "rs485-1", "parity"), "X", "modbus.buses.rs485-1.parity: must be one of N, E, O"),
    (("buses", "rs485-1", "stopbits"), 3, "modbus.buses.rs485-1.stopbits: must be 1..2"),
    (("buses", "rs485-1", "host"), "x", 'modbus.buses.rs485-1.host: not used when transport = "rtu" (remove it)'),
    (("buses", "rs485-1", "timeout"), 0, "modbus.buses.rs485-1.timeout: must be 0.01..60"),
    (("buses", "rs485-1", "retries"), 9, "modbus.buses.rs485-1.retries: must be 0..5"),
    (("buses", "plant", "host"), _DELETE, "modbus.buses.plant.host: required"),
    (("buses", "plant", "port"), 70000, "modbus.buses.plant.port: must be 1..65535"),
    (("buses", "plant", "baudrate"), 9600, 'modbus.buses.plant.baudrate: not used when transport = "tcp" (remove it)'),
    (("buses", "bad bus"), {"transport": "tcp", "host": "h"}, "modbus.buses.bad bus: character ' '"),
    (("devices", "meter-1", "bus"), "nowhere", "modbus.devices.meter-1.bus: no bus 'nowhere'"),
    (("devices", "meter-1", "unit"), 0, "modbus.devices.meter-1.unit: must be 1..247"),
    (("devices", "meter-1", "unit"), 248, "modbus.devices.meter-1.unit: must be 1..247"),
    (("devices", "heat-1", "unit"), 256, "modbus.devices.heat-1.unit: must be 0..255"),
    (("devices", "meter-2", "unit"), 1, "modbus.devices.meter-2.unit: unit 1 on bus 'rs485-1' is already used"),
    (("devices", "meter-1", "profile"), "sdm999", "modbus.devices.meter-1.profile: no profile 'sdm999'"),
    (("devices", "meter-1", "profile"), _DELETE, "modbus.devices.meter-1.profile: required"),
    (("devices", "meter-1", "interval"), 0, "modbus.devices.meter-1.interval: must be 0.05..86400"),
    (("devices", "meter-1", "interval"), "5s", "modbus.devices.meter-1.interval: must be a number"),
    (("devices", "meter-1", "offline_interval"), 1, "modbus.devices.meter-1.offline_interval: must not be below"),
    (("devices", "meter-1", "max_gap"), 200, "modbus.devices.meter-1.max_gap: must be 0..120"),
    (("devices", "meter-1", "slave"), 1, "modbus.devices.meter-1.slave: unknown key"),
    (("devices", "meter/1"), {"bus": "plant", "unit": 9, "profile": "sdm120"}, "modbus.devices.meter/1: character"),
    (("devices", "meter-1", "actuators"), ["fan1"], "modbus.devices.meter-1.actuators: only for the qala_board"),
    (("devices", "board"), {"bus": "plant", "unit": 7, "profile": "qala_board", "actuators": []},
     "modbus.devices.board.actuators: must be a list of 1..32 actuator names"),
    (("devices", "board"), {"bus": "plant", "unit": 7, "profile": "qala_board", "actuators": ["a b"]},
     "modbus.devices.board.actuators[0]: character"),
    (("devices", "board"), {"bus": "plant", "unit": 7, "profile": "qala_board", "actuators": ["f", "f"]},
     "modbus.devices.board.actuators: names must be different"),
    (("devices", "board"), {"bus": "plant", "unit": 7, "profile": "qala_board", "actuators": ["uptime"]},
     "modbus.devices.board.actuators: uptime: already a register"),
]


def test_a_qala_boards_actuators_take_the_names_of_its_config() -> None:
    doc = copy.deepcopy(GOOD)
    doc["devices"]["board"] = {"bus": "plant", "unit": 7, "profile": "qala_board", "actuators": ["valve1", "fan1"]}
    board = next(d for d in config.parse(doc).devices if d.name == "board")
    setpoints = [(r.name, r.sensor, r.address, r.writable) for r in board.profile.registers if r.table == "holding"]
    assert setpoints == [("fan1", "fan1", 0, True), ("valve1", "valve1", 2, True)]  # by name, as the board orders
    assert not any(r.name.startswith("actuator") for r in board.profile.registers)


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[".".join(b[0]) for b in BAD])
def test_bad_config_names_the_key(path: tuple[str, ...], value: Any, message: str) -> None:
    doc = copy.deepcopy(GOOD)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    with pytest.raises(ConfigError) as info:
        config.parse(doc)
    assert message in str(info.value)
    assert str(info.value).startswith("modbus")


def test_broken_profile_file_is_reported_under_the_device(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[profile]\nname = "bad"\n[registers.v]\naddress = 0\nquantity = "volts"\n')
    doc = {"buses": GOOD["buses"], "devices": {"m": {"bus": "plant", "unit": 3, "profile": "bad.toml"}}}
    with pytest.raises(ConfigError, match=r"modbus.devices.m.profile: bad.toml: registers.v.quantity: unknown"):
        config.parse(doc, base=tmp_path)
