"""Status, cmd and ack payloads: encode/decode and bad input. Runs under both interpreters."""

import json

from expect import refused

from protocols import catalogue
from protocols import payloads as p

MICROPYTHON_HEAP = "64k"

TS = 1795553687123
CAPS = {
    "sensors": {"env1": {"driver": "bme280", "q": ["temperature", "humidity", "pressure"]}},
    "actuators": {"fan1": {"kind": "pwm", "unit": "%", "min": 0, "max": 100, "failsafe": 20, "rate": 10}},
    "uplink": "mqtt",
    "failsafe_after": 120,
}


def test_status_birth_will_and_safe_mode():
    birth = p.decode_status(p.encode_status("online", TS, 3, "0.1.0", CAPS))
    assert birth.state == "online"
    assert birth.caps["actuators"]["fan1"]["max"] == 100
    will = p.decode_status(p.encode_status("offline"))
    assert will.state == "offline"
    assert will.caps is None
    safe = p.decode_status(p.encode_status("safe", TS, 3, "0.1.0", error="config: wifi.ssid: required"))
    assert safe.error == "config: wifi.ssid: required"


def test_status_bad_input():
    refused(p.decode_status, b'{"v":1,"state":"sleepy"}', field="state")
    refused(p.decode_status, b'{"v":1,"state":"online"}', field="ts", contains="required")
    refused(p.decode_status, ('{"v":1,"state":"safe","ts":%d,"boot":1,"fw":"x"}' % TS).encode(), field="error")
    refused(p.encode_status, "online", TS, 3, "x" * 201, CAPS, field="fw", contains="longer")
    refused(p.encode_status, "online", TS, 3, "0.1", None, field="caps", contains="required")


def _birth(caps):
    return ('{"v":1,"state":"online","ts":%d,"boot":3,"fw":"0.1","caps":%s}' % (TS, json.dumps(caps))).encode()


def test_caps_rules_at_the_hub_and_in_limits():
    # a board's encoder takes caps from its validated config; the hub's decoder and limits.check_caps refuse bad ones
    cases = (
        ({"sensors": {}, "extra": 1}, "caps", "unknown key"),
        ({"actuators": {"v1": {"kind": "valve", "min": 0, "max": 10, "failsafe": 11}}}, "caps.actuators.v1.failsafe",
         "outside"),
        ({"actuators": {"v1": {"kind": "valve", "min": 10, "max": 0, "failsafe": 5}}}, "caps.actuators.v1",
         "above max"),
        ({"actuators": {"v1": {"kind": "laser", "min": 0, "max": 1, "failsafe": 0}}}, "caps.actuators.v1.kind", None),
        ({"sensors": {"s1": {"driver": "x", "q": ["co2", "smell"]}}}, "caps.sensors.s1.q", "smell"),
        ({"uplink": "lora"}, "caps.uplink", None),
        ({"failsafe_after": -1}, "caps.failsafe_after", None),
        ({"actuators": {"r1": {"kind": "relay", "min": 0, "max": 1, "failsafe": 0, "min_on": -5}}},
         "caps.actuators.r1.min_on", None),
    )
    for caps, field, contains in cases:
        refused(p.decode_status, _birth(caps), field=field, contains=contains)
        refused(p.check_caps, caps, catalogue.QUANTITIES, field=field, contains=contains)
    assert p.check_caps(CAPS, catalogue.QUANTITIES) == CAPS
    refused(p.check_actuator, "v1", {"kind": "valve", "min": 0, "max": 10}, field="v1.failsafe", contains="required")


def test_cmd_round_trip_and_bad_input():
    cmd = p.decode_cmd(p.encode_cmd("c-1", "fan1", 80, TS, TS + 30000))
    assert (cmd.id, cmd.actuator, cmd.value, cmd.ts, cmd.expires) == ("c-1", "fan1", 80.0, TS, TS + 30000)
    refused(p.encode_cmd, "c-1", "fan1", 80, TS, TS - 1, field="exp")
    refused(p.encode_cmd, "c 1", "fan1", 80, TS, TS, field="id")
    good = ('{"v":1,"id":"c1","act":"fan1","val":1,"ts":%d,"exp":%d}' % (TS, TS)).encode()
    assert p.decode_cmd(good).value == 1.0
    refused(p.decode_cmd, good.replace(b'"val":1', b'"val":"on"'), field="val")
    refused(p.decode_cmd, good.replace(b'"val":1', b'"val":false'), field="val")
    refused(p.decode_cmd, good.replace(b',"exp":%d' % TS, b""), field="exp", contains="required")
    refused(p.decode_cmd, good.replace(b'"act":"fan1"', b'"act":""'), field="act")
    refused(p.decode_cmd, good + b" " * 300, field="cmd", contains="limit")


def test_ack_round_trip_and_bad_input():
    ack = p.decode_ack(p.encode_ack("c-1", "fan1", "applied", TS, value=80))
    assert (ack.status, ack.value, ack.reason) == ("applied", 80.0, None)
    ack = p.decode_ack(p.encode_ack("c-1", "fan1", "rejected", TS, reason='above "max" 100'))
    assert ack.reason == 'above "max" 100'
    refused(p.encode_ack, "c-1", "fan1", "applied", TS, field="val", contains="applied ack")
    refused(p.encode_ack, "c-1", "fan1", "rejected", TS, field="why")
    refused(p.encode_ack, "c-1", "fan1", "maybe", TS, 1, field="st")


def test_decode_dispatch():
    assert p.decode("ack", p.encode_ack("c-1", "fan1", "applied", TS, value=1)).value == 1.0
    refused(p.decode, "config", b"{}", field="kind")
