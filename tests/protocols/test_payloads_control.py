"""Status, cmd and ack payloads: encode/decode and bad input. Runs under both interpreters."""

from expect import refused

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
    refused(p.encode_status, "online", TS, 3, "0.1", {"sensors": {}, "extra": 1}, field="caps", contains="unknown key")
    bad = {"actuators": {"v1": {"kind": "valve", "min": 0, "max": 10, "failsafe": 11}}}
    refused(p.encode_status, "online", TS, 3, "0.1", bad, field="caps.actuators.v1.failsafe", contains="outside")
    bad = {"actuators": {"v1": {"kind": "valve", "min": 10, "max": 0, "failsafe": 5}}}
    refused(p.encode_status, "online", TS, 3, "0.1", bad, field="caps.actuators.v1", contains="above max")
    bad = {"actuators": {"v1": {"kind": "laser", "min": 0, "max": 1, "failsafe": 0}}}
    refused(p.encode_status, "online", TS, 3, "0.1", bad, field="caps.actuators.v1.kind")
    bad = {"sensors": {"s1": {"driver": "x", "q": ["co2", "smell"]}}}
    birth = p.encode_status("online", TS, 3, "0.1", bad)  # the board's encoder checks form, not the catalogue
    refused(p.decode_status, birth, field="caps.sensors.s1.q", contains="smell")
    bad = {"sensors": {"s1": {"driver": "x", "q": ["co2", "sm ell"]}}}
    refused(p.encode_status, "online", TS, 3, "0.1", bad, field="caps.sensors.s1.q")
    refused(p.encode_status, "online", TS, 3, "0.1", {"uplink": "lora"}, field="caps.uplink")
    refused(p.encode_status, "online", TS, 3, "x" * 201, CAPS, field="fw", contains="longer")


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
