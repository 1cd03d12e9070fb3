"""Status, cmd and ack payloads: encode/decode, signatures and bad input. Runs under both interpreters."""

import json

from expect import refused

from protocols import catalogue
from protocols import payloads as p

MICROPYTHON_HEAP = "96k"  # protocols.payloads: every kind at once, as the hub loads it (a board loads its own)

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


KEY = bytes(range(32))
OTHER = bytes(32)
N = 1795553687000


def _cmd(value=80, n=N, key=KEY, device="t1"):
    return p.encode_cmd(key, "lab", device, "c-1", "fan1", value, TS, TS + 30000, n)


def test_cmd_round_trip_and_bad_input():
    data = _cmd()
    assert data.startswith(b'{"v":2,"id":"c-1","act":"fan1","val":80,"ts":%d,"exp":%d,"n":%d,"sig":"' % (
        TS, TS + 30000, N))
    cmd = p.decode_cmd(data, KEY, "lab", "t1")
    assert (cmd.id, cmd.actuator, cmd.value, cmd.ts, cmd.expires, cmd.n) == ("c-1", "fan1", 80.0, TS, TS + 30000, N)
    assert cmd.signed
    refused(p.encode_cmd, KEY, "lab", "t1", "c-1", "fan1", 80, TS, TS - 1, N, field="exp")
    refused(p.encode_cmd, KEY, "lab", "t1", "c 1", "fan1", 80, TS, TS, N, field="id")
    refused(p.encode_cmd, KEY, "lab", "t1", "c-1", "fan1", 80, TS, TS, 0, field="n")
    refused(p.encode_cmd, KEY, "lab", "t1", "c-1", "fan1", 80, TS, TS, p.N_MAX + 1, field="n")
    refused(p.encode_cmd, KEY, "lab", "t/1", "c-1", "fan1", 80, TS, TS, N, field="device")
    refused(p.encode_cmd, KEY, "lab", "t1", "c-1", "fan1", 10 ** 300, TS, TS, N, field="cmd", contains="limit")
    good = ('{"v":2,"id":"c1","act":"fan1","val":1,"ts":%d,"exp":%d,"n":5}' % (TS, TS)).encode()
    assert p.read_cmd(good).value == 1.0
    assert not p.read_cmd(good).signed
    refused(p.read_cmd, good.replace(b'"val":1', b'"val":"on"'), field="val")
    refused(p.read_cmd, good.replace(b'"val":1', b'"val":false'), field="val")
    refused(p.read_cmd, good.replace(b',"exp":%d' % TS, b""), field="exp", contains="required")
    refused(p.read_cmd, good.replace(b'"act":"fan1"', b'"act":""'), field="act")
    refused(p.read_cmd, good.replace(b',"n":5', b""), field="n", contains="required")
    refused(p.read_cmd, good.replace(b'"n":5', b'"n":0'), field="n")
    refused(p.read_cmd, good.replace(b'"n":5', b'"n":5.5'), field="n")
    refused(p.read_cmd, good.replace(b'"n":5', b'"n":5,"sig":7'), field="sig")
    refused(p.read_cmd, good.replace(b'"v":2', b'"v":1'), field="cmd", contains="version 1")
    refused(p.read_cmd, good.replace(b'"v":2', b'"v":3'), field="v", contains="knows up to 2")
    refused(p.read_cmd, good + b" " * 400, field="cmd", contains="limit")


def test_cmd_signature_refusals():
    data = _cmd()
    # unsigned (version 1, or version 2 without sig): refused, the id still readable for the answer
    v1 = ('{"v":1,"id":"c1","act":"fan1","val":1,"ts":%d,"exp":%d}' % (TS, TS)).encode()
    exc = refused(p.decode_cmd, v1, KEY, "lab", "t1", field="sig", contains="unsigned command")
    assert exc.unverified.id == "c1"
    assert exc.unverified.n == 0
    v2 = ('{"v":2,"id":"c2","act":"fan1","val":1,"ts":%d,"exp":%d,"n":5}' % (TS, TS)).encode()
    assert refused(p.decode_cmd, v2, KEY, "lab", "t1", field="sig", contains="unsigned").unverified.id == "c2"
    # the wrong key, another board, an ack's domain: bad signature
    exc = refused(p.decode_cmd, data, OTHER, "lab", "t1", field="sig", contains="bad signature")
    assert exc.unverified.id == "c-1"
    refused(p.decode_cmd, data, KEY, "lab", "t2", field="sig", contains="bad signature")
    refused(p.decode_cmd, data, KEY, "lab2", "t1", field="sig", contains="bad signature")
    refused(p.decode_ack, data, KEY, "lab", "t1")  # a cmd is no ack
    # any change of the signed body, or of the signature
    refused(p.decode_cmd, data.replace(b'"val":80', b'"val":90'), KEY, "lab", "t1", field="sig")
    refused(p.decode_cmd, data.replace(b'"n":%d' % N, b'"n":%d' % (N + 1)), KEY, "lab", "t1", field="sig")
    flipped = data[:-3] + (b"0" if data[-3:-2] != b"0" else b"1") + data[-2:]
    refused(p.decode_cmd, flipped, KEY, "lab", "t1", field="sig", contains="bad signature")
    # sig not last: refused even when its value is right
    cut = data.index(b',"sig"')
    moved = data[:cut].replace(b'"v":2,', b'"v":2,' + data[cut + 1:-1] + b",") + b"}"
    refused(p.decode_cmd, moved, KEY, "lab", "t1", field="sig", contains="last member")


def test_ack_round_trip_and_bad_input():
    data = p.encode_ack(KEY, "lab", "t1", "c-1", "fan1", "applied", TS, N, value=80)
    ack = p.decode_ack(data, KEY, "lab", "t1")
    assert (ack.status, ack.value, ack.reason, ack.n) == ("applied", 80.0, None, N)
    data = p.encode_ack(KEY, "lab", "t1", "c-1", "fan1", "rejected", TS, 0, reason='above "max" 100')
    assert p.decode_ack(data, KEY, "lab", "t1").reason == 'above "max" 100'
    assert p.read_ack(data).n == 0
    refused(p.encode_ack, KEY, "lab", "t1", "c-1", "fan1", "applied", TS, N, field="val", contains="applied ack")
    refused(p.encode_ack, KEY, "lab", "t1", "c-1", "fan1", "rejected", TS, N, field="why")
    refused(p.encode_ack, KEY, "lab", "t1", "c-1", "fan1", "maybe", TS, N, 1, field="st")
    refused(p.encode_ack, KEY, "lab", "t1", "c-1", "fan1", "applied", TS, -1, 1, field="n")
    refused(p.encode_ack, KEY, "lab", "t1", "c-1", "fan1", "rejected", TS, N, None, '"' * 200, field="ack",
            contains="limit")
    # reasons are cut to 200 characters
    long = p.encode_ack(KEY, "lab", "t1", "c-1", "fan1", "rejected", TS, N, None, "x" * 300)
    assert p.decode_ack(long, KEY, "lab", "t1").reason == "x" * 200


def test_ack_signature_refusals():
    data = p.encode_ack(KEY, "lab", "t1", "c-1", "fan1", "applied", TS, N, value=80)
    exc = refused(p.decode_ack, data, OTHER, "lab", "t1", field="sig", contains="bad signature")
    assert (exc.unverified.id, exc.unverified.status) == ("c-1", "applied")
    refused(p.decode_ack, data, KEY, "lab", "t2", field="sig", contains="bad signature")
    refused(p.decode_cmd, data, KEY, "lab", "t1")  # an ack is no cmd
    v1 = ('{"v":1,"id":"c-1","act":"fan1","st":"applied","val":80,"ts":%d}' % TS).encode()
    assert refused(p.decode_ack, v1, KEY, "lab", "t1", field="sig", contains="unsigned ack").unverified.id == "c-1"
    refused(p.decode_ack, data.replace(b'"val":80', b'"val":81'), KEY, "lab", "t1", field="sig")


def test_decode_dispatch():
    # decode() reads cmd and ack without checking their signature
    assert p.decode("ack", p.encode_ack(KEY, "lab", "t1", "c-1", "fan1", "applied", TS, N, value=1)).value == 1.0
    assert p.decode("cmd", _cmd()).n == N
    refused(p.decode, "config", b"{}", field="kind")


def test_refusal_the_boards_rule_for_a_verified_command():
    from protocols import control  # noqa: PLC0415 - beside payloads, as a board imports it

    cmd = p.decode_cmd(_cmd(), KEY, "lab", "t1")  # n = N, expires TS + 30 s
    assert control.refusal(cmd, TS, 0, 600000) is None
    assert control.refusal(cmd, TS, N - 1, 600000) is None
    assert control.refusal(cmd, TS, N, 600000) == "replayed: counter n=%d is not above the last accepted %d" % (N, N)
    assert control.refusal(cmd, TS, N + 5, 600000).startswith("replayed")
    assert control.refusal(cmd, None, 0, 600000) == "board clock not set"
    assert control.refusal(cmd, TS + 30001, 0, 600000) == "expired 1 ms ago"
    assert control.refusal(cmd, TS, 0, 10000) == "expires 30 s ahead, more than this board's commands.max_ttl 10 s"
    far = p.decode_cmd(p.encode_cmd(KEY, "lab", "t1", "c-2", "fan1", 1, TS, 4070908800000, N + 1), KEY, "lab", "t1")
    assert control.refusal(far, TS, N, 600000).startswith("expires ")  # an expiry in 2099
