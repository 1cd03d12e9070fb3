"""The board's Modbus server, pure parts: config keys (firmware/config.py), the request handler
(firmware/mbregs.py) against the map in protocols/boardmap.py, and the TCP guards (writers allow-list, peer
addresses, the connection table on a fake clock). A dual module: also runs under micropython."""

import json
import struct

from firmware import config
from firmware.mbregs import WRITES, Registers, Slots, dotted, handle, ip4, peer_ip
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
    assert config.validate(tcp)["modbus"] == {"transport": "tcp", "unit": 1, "host": "127.0.0.1", "port": 502,
                                              "writers": [], "max_connections": 4, "idle_timeout": 60}
    tcp["wifi"] = {"ssid": "x"}
    assert config.validate(tcp, True)["modbus"]["host"] == "0.0.0.0"  # a board serves its LAN
    tcp["modbus"].update(writers=["192.168.1.10", "10.0.0.5"], max_connections=32, idle_timeout=0.5 + 1)
    m = config.validate(tcp, True)["modbus"]
    assert (m["writers"], m["max_connections"], m["idle_timeout"]) == (["192.168.1.10", "10.0.0.5"], 32, 1.5)


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
    assert _error(_raw(writers=["10.0.0.5"])) == "modbus.writers: not used with transport rtu"
    assert _error(_raw(max_connections=4)) == "modbus.max_connections: not used with transport rtu"
    assert _error(_raw(idle_timeout=60)) == "modbus.idle_timeout: not used with transport rtu"


def _tcp_error(**keys):
    return _error({"site": "lab", "device": "b1", "uplink": "modbus", "modbus": dict(transport="tcp", **keys)})


def test_modbus_tcp_guard_config_errors_name_the_key():
    quad = "must be an IPv4 address such as 192.168.1.10 (no names, no leading zeros)"
    listed = "modbus.writers: must be a list of at most 16 IPv4 addresses"
    assert _tcp_error(writers="10.0.0.5") == listed + ", got '10.0.0.5'"
    assert _tcp_error(writers=["10.0.0.%d" % i for i in range(17)]).startswith(listed)
    assert _tcp_error(writers=["hub.local"]) == "modbus.writers[0]: %s, got 'hub.local'" % quad
    assert _tcp_error(writers=["10.0.0.5", "10.0.0.256"]) == "modbus.writers[1]: %s, got '10.0.0.256'" % quad
    assert _tcp_error(writers=["10.0.0.05"]) == "modbus.writers[0]: %s, got '10.0.0.05'" % quad
    assert _tcp_error(writers=["10.0.0"]) == "modbus.writers[0]: %s, got '10.0.0'" % quad
    assert _tcp_error(writers=["10.0.0.-1"]) == "modbus.writers[0]: %s, got '10.0.0.-1'" % quad
    assert _tcp_error(writers=[10]) == "modbus.writers[0]: %s, got 10" % quad
    assert _tcp_error(writers=["0.0.0.0"]) == "modbus.writers[0]: 0.0.0.0 is no host, got '0.0.0.0'"
    assert _tcp_error(writers=["10.0.0.5", "10.0.0.5"]) == "modbus.writers[1]: listed twice, got '10.0.0.5'"
    assert _tcp_error(max_connections=0) == "modbus.max_connections: must be in 1..32, got 0"
    assert _tcp_error(max_connections=33) == "modbus.max_connections: must be in 1..32, got 33"
    assert _tcp_error(max_connections=True) == "modbus.max_connections: must be an integer, got True"
    assert _tcp_error(idle_timeout=0.5) == "modbus.idle_timeout: must be at least 1, got 0.5"
    assert _tcp_error(idle_timeout=86401) == "modbus.idle_timeout: must be at most 86400 seconds, got 86401"
    assert _tcp_error(idle_timeout="1m") == "modbus.idle_timeout: must be a number, got '1m'"


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
    # 128..255 are exception responses, never requests: `83 01` would read as "function 03 refused" (the landed
    # board answered so); no answer, as on RTU
    for function in (0x83, 0x80, 0xAB, 0xFF):
        assert handle(bytes((function, 0, 0, 0, 1)), regs) is None
    assert fake.applied == []


# ------------------------------------------------------------------------------ TCP guards


def test_a_peer_not_in_writers_reads_but_every_write_answers_01_and_changes_nothing():
    regs, fake = _regs()
    regs.set_input("co2", 415.5)
    read = modbus.read_request(4, boardmap.input_address("co2"), 2)
    assert handle(read, regs, False) == handle(read, regs, True)  # reads stay open to any master
    assert _f32(modbus.decode_response(handle(read, regs, False), 4, 2), 0) == 415.5
    assert handle(modbus.read_request(3, 0, 4), regs, False) == handle(modbus.read_request(3, 0, 4), regs)
    assert handle(modbus.read_request(1, 0, 2), regs, False) == handle(modbus.read_request(1, 0, 2), regs)
    before = bytes(regs.holding)
    refused = [
        modbus.write_registers_request(0, [0x425C, 0]),  # fan1 = 55.0, fine for a writer
        modbus.write_coil_request(1, True),  # pump on
        modbus.write_coils_request(1, [1]),
        modbus.write_register_request(0, 1),
        modbus.write_registers_request(100, [0, 0]),  # outside the map: still 01, the function is checked first
        bytes((16, 0, 0)),  # malformed: still 01
        bytes((22, 0, 0, 0xFF, 0xFF, 0, 0)),  # mask write register
        bytes((23, 0, 0, 0, 2, 0, 0, 0, 2, 4, 0x42, 0x5C, 0, 0)),  # read/write multiple registers
    ]
    for pdu in refused:
        assert pdu[0] in WRITES
        assert handle(pdu, regs, False) == bytes((0x80 | pdu[0], 1)), pdu
    assert fake.applied == []
    assert bytes(regs.holding) == before
    # the same writes from a writer (and on RTU, which always passes True) act as before
    assert handle(refused[0], regs, True) == modbus.write_response(modbus.decode_request(refused[0]))
    assert handle(refused[1], regs) == refused[1]
    assert fake.applied == [("fan1", 55.0), ("pump", 1)]
    assert handle(refused[3], regs) == bytes((0x86, 2))  # a writer's FC 06 keeps its own answer


def test_writer_addresses_and_peers_become_four_bytes():
    assert ip4("192.168.1.10") == bytes((192, 168, 1, 10))
    assert ip4("127.0.0.1") == bytes((127, 0, 0, 1))
    for bad in ("192.168.1", "192.168.1.256", "a.b.c.d", "1.2.3.4.5", "", None, 7):
        assert ip4(bad) is None, bad
    assert peer_ip(("192.168.1.10", 50123)) == bytes((192, 168, 1, 10))  # boards (lwIP)
    assert peer_ip(["10.0.0.5", 1]) == bytes((10, 0, 0, 5))
    linux = bytearray(b"\x02\x00\xab\x15\x7f\x00\x00\x02" + bytes(8))  # the unix port: raw sockaddr_in
    assert peer_ip(linux) == bytes((127, 0, 0, 2))
    assert peer_ip(bytes(b"\x10\x02\xab\x15\x7f\x00\x00\x01" + bytes(8))) == bytes((127, 0, 0, 1))  # BSD
    assert peer_ip(bytes(b"\x0a\x00\xab\x15" + bytes(24))) is None  # AF_INET6 (10): never a writer
    assert peer_ip(("fe80::1", 502, 0, 0)) is None
    assert peer_ip(None) is None
    assert peer_ip(b"\x02\x00") is None
    writers = [ip4("127.0.0.1"), ip4("10.0.0.5")]
    assert peer_ip(linux) not in writers
    assert peer_ip(("10.0.0.5", 9)) in writers
    assert dotted(bytes((127, 0, 0, 2))) == "127.0.0.2"
    assert dotted(None) == "?"


def _diff(a, b):
    return a - b


def test_slots_push_out_the_connection_idle_longest():
    slots = Slots(3, _diff)
    for t, key in ((0, "a"), (10, "b"), (20, "c")):
        i = slots.pick()
        assert slots.keys[i] is None
        slots.put(i, key, "ip-" + key, t)
    assert slots.count() == 3
    slots.touch("a", 30)  # a polls: b is now the one idle longest
    i = slots.pick()
    assert (slots.keys[i], slots.tags[i]) == ("b", "ip-b")
    slots.put(i, "d", "ip-d", 40)
    assert slots.count() == 3
    slots.remove("b")  # b's task ends after being pushed out: nothing to do
    assert sorted(k for k in slots.keys if k) == ["a", "c", "d"]
    assert slots.keys[slots.pick()] == "c"
    slots.remove("c")  # c closed on its own: its slot is free
    assert slots.keys[slots.pick()] is None
    assert slots.count() == 2


def test_slots_find_idle_connections_on_any_clock():
    slots = Slots(4, _diff)
    slots.put(0, "a", None, 1000)
    slots.put(2, "b", None, 1500)
    assert slots.idle(1999, 1000) == -1
    assert slots.idle(2000, 1000) == 0
    slots.free(0)
    assert slots.idle(2000, 1000) == -1
    assert slots.idle(2500, 1000) == 2
    slots.touch("b", 2400)
    assert slots.idle(2500, 1000) == -1
    slots.touch("gone", 2600)  # a key that already left: nothing
    assert slots.count() == 1
    wrap = Slots(1, lambda a, b: ((a - b + 512) % 1024) - 512)  # a ticks clock that wraps at 1024
    wrap.put(0, "w", None, 1000)
    assert wrap.idle(10, 30) == 0  # 34 ticks after 1000, across the wrap
    assert wrap.idle(1020, 30) == -1
