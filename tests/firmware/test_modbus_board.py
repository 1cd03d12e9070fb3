"""The board's Modbus server, pure parts: config keys (firmware/config.py) and the request handler
(firmware/mbregs.py) against the map in protocols/boardmap.py. A dual module: also runs under micropython."""

import json
import struct

from firmware import config
from firmware.mbregs import Registers, handle
from protocols import boardmap, modbus

MICROPYTHON_HEAP = "256k"  # firmware/config.py is compiled from source here, as in test_config.py

GOOD = {
    "site": "lab",
    "device": "b1",
    "uplink": "modbus",
    "modbus": {"transport": "rtu", "device": "/dev/ttyUSB0", "unit": 7, "baudrate": 19200, "pins": {"de": 4}},
    "sensors": {"air1": {"driver": "sim", "interval": 0.2, "quantities": ["pm25", "co2"]}},
}
ACTS = {
    "fan1": {"kind": "pwm", "min": 0, "max": 100, "failsafe": 20},
    "pump": {"kind": "relay", "min": 0, "max": 1, "failsafe": 0},
}


def _error(raw, need_wifi=False):
    try:
        config.validate(raw, need_wifi)
    except config.ConfigError as exc:
        return str(exc)
    raise AssertionError("config accepted")


def _raw(**modbus_keys):
    raw = json.loads(json.dumps(GOOD))
    for key in modbus_keys:
        if modbus_keys[key] is None:
            raw["modbus"].pop(key)
        else:
            raw["modbus"][key] = modbus_keys[key]
    return raw


def test_modbus_config_defaults():
    m = config.validate(_raw())["modbus"]
    assert m == {"transport": "rtu", "unit": 7, "device": "/dev/ttyUSB0", "uart": None, "baudrate": 19200,
                 "parity": "N", "stopbits": 1, "pins": {"de": 4}}
    assert config.validate(_raw())["mqtt"] is None  # no broker needed with a Modbus uplink
    tcp = {"site": "lab", "device": "b1", "uplink": "modbus", "modbus": {"transport": "tcp"}}
    assert config.validate(tcp)["modbus"] == {"transport": "tcp", "unit": 1, "host": "127.0.0.1", "port": 502}
    tcp["wifi"] = {"ssid": "x"}
    assert config.validate(tcp, True)["modbus"]["host"] == "0.0.0.0"  # a board serves its LAN


def test_modbus_config_errors_name_the_key():
    raw = _raw()
    del raw["modbus"]
    assert _error(raw) == "modbus: required key missing"
    assert _error(_raw(transport="udp")) == "modbus.transport: must be tcp|rtu, got 'udp'"
    assert _error(_raw(unit=0)) == "modbus.unit: must be in 1..247, got 0"
    assert _error(_raw(speed=1)) == "modbus: unknown key 'speed'"
    assert _error(_raw(port=502)) == "modbus.port: not used with transport rtu"
    assert _error(_raw(device=None)).startswith("modbus.device: give exactly one of device")
    assert _error(_raw(uart=1)).startswith("modbus.device: give exactly one of device")
    assert _error(_raw(parity="X")) == "modbus.parity: must be N|E|O, got 'X'"
    assert _error(_raw(baudrate=10)) == "modbus.baudrate: must be in 300..1000000, got 10"
    assert _error(_raw(pins={"en": 3})) == "modbus.pins: unknown key 'en'"
    assert _error(_raw(transport="tcp")) == "modbus.device: not used with transport tcp"


class _Fake:
    def __init__(self):
        self.applied = []

    def check(self, name, value):
        spec = ACTS[name]
        if value < spec["min"] or value > spec["max"]:
            return "outside"
        return None

    def apply(self, name, value):
        self.applied.append((name, value))


def _regs():
    fake = _Fake()
    return Registers(ACTS, fake.check, fake.apply), fake


def _f32(words, i):
    return struct.unpack(">f", struct.pack(">HH", words[i], words[i + 1]))[0]


def test_input_registers_hold_each_quantity_at_its_slot():
    regs, _ = _regs()
    regs.set_input("co2", 415.5)
    regs.set_input("uptime", 12)
    regs.set_input("not_a_quantity", 1)
    resp = handle(modbus.read_request(4, 0, boardmap.INPUT_REGISTERS), regs)
    words = modbus.decode_response(resp, 4, boardmap.INPUT_REGISTERS)
    assert _f32(words, boardmap.input_address("co2")) == 415.5
    assert _f32(words, boardmap.input_address("uptime")) == 12.0
    assert words[0:2] == [0x7FC0, 0]  # pm1: not measured, quiet NaN
    regs.set_input("co2", None)  # a failing sensor
    words = modbus.decode_response(handle(modbus.read_request(4, 6, 2), regs), 4, 2)
    assert words == [0x7FC0, 0]


def test_setpoints_and_coils():
    regs, fake = _regs()
    write = modbus.write_registers_request(0, [0x425C, 0])  # fan1 = 55.0
    assert handle(write, regs) == modbus.write_response(modbus.decode_request(write))
    assert fake.applied == [("fan1", 55.0)]
    words = modbus.decode_response(handle(modbus.read_request(3, 0, 4), regs), 3, 4)
    assert _f32(words, 0) == 55.0
    assert handle(modbus.write_coil_request(1, True), regs) == modbus.write_coil_request(1, True)
    assert fake.applied[-1] == ("pump", 1)
    assert modbus.decode_response(handle(modbus.read_request(1, 0, 2), regs), 1, 2) == [1, 1]


def test_refusals_change_nothing():
    regs, fake = _regs()
    both = modbus.write_registers_request(0, [0x425C, 0, 0x4120, 0])  # fan1 55 ok, pump 10 outside 0..1
    assert handle(both, regs) == bytes((0x90, 3))
    nan = modbus.write_registers_request(0, [0x7FC0, 0])
    assert handle(nan, regs) == bytes((0x90, 3))
    assert fake.applied == []
    assert handle(modbus.write_registers_request(1, [0, 0]), regs) == bytes((0x90, 2))  # splits a float
    assert handle(modbus.write_registers_request(4, [0, 0]), regs) == bytes((0x90, 2))  # no third actuator
    assert handle(modbus.write_register_request(0, 1), regs) == bytes((0x86, 2))
    assert handle(modbus.write_coil_request(0, True), regs) == bytes((0x85, 2))  # fan1 is not a relay
    assert handle(modbus.read_request(4, boardmap.INPUT_REGISTERS - 1, 2), regs) == bytes((0x84, 2))
    assert handle(modbus.read_request(3, 0, 5), regs) == bytes((0x83, 2))
    assert handle(modbus.read_request(1, 0, 3), regs) == bytes((0x81, 2))
    assert handle(modbus.read_request(2, 0, 1), regs) == bytes((0x82, 2))
    assert handle(bytes((0x2B, 0x0E, 1, 0)), regs) == bytes((0xAB, 1))  # unknown function
    assert handle(bytes((4, 0, 0, 0)), regs) == bytes((0x84, 3))  # truncated
    assert handle(bytes((4, 0, 0, 0, 0)), regs) == bytes((0x84, 3))  # quantity 0
    assert handle(b"", regs) is None
    assert fake.applied == []
