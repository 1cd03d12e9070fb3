"""Telemetry payloads: encode/decode and every kind of bad input. Runs under both interpreters."""

from expect import refused

from protocols import telemetry as p

MICROPYTHON_HEAP = "64k"

TS = 1795553687123


def _telemetry(extra=""):
    return ('{"v":1,"seq":7,"ts":%d,"boot":3,"s":"env1","r":{"co2":612.5}%s}' % (TS, extra)).encode()


def test_telemetry_round_trip():
    data = p.encode_telemetry(7, TS, 3, "env1", [("temperature", 21.5), ("co2", 410, "warmup"), ("humidity", 40)])
    assert data == (
        b'{"v":1,"seq":7,"ts":1795553687123,"boot":3,"s":"env1",'
        b'"r":{"temperature":21.5,"co2":410,"humidity":40},"q":{"co2":"warmup"}}'
    )
    msg = p.decode_telemetry(data)
    assert (msg.seq, msg.ts, msg.boot, msg.sensor) == (7, TS, 3, "env1")
    assert sorted(msg.readings) == [("co2", 410.0, "warmup"), ("humidity", 40.0, "ok"), ("temperature", 21.5, "ok")]
    for r in msg.readings:
        assert isinstance(r[1], float)


def test_telemetry_out_of_range_kept_and_flagged():
    msg = p.decode_telemetry(_telemetry().replace(b"612.5", b"99999"))
    assert msg.readings == [("co2", 99999.0, "range")]


def test_telemetry_bad_input():
    refused(p.decode_telemetry, _telemetry()[:-3], field="telemetry", contains="not valid JSON")
    refused(p.decode_telemetry, b'\xff\xfe{"v":1}', field="telemetry", contains="UTF-8")
    refused(p.decode_telemetry, b"[1,2]", field="telemetry", contains="must be an object")
    refused(p.decode_telemetry, b'{"seq":1}', field="v", contains="required")
    refused(p.decode_telemetry, b'{"v":"1"}', field="v")
    refused(p.decode_telemetry, b'{"v":9}', field="v", contains="not supported")
    refused(p.decode_telemetry, _telemetry(',"x":1'), field="telemetry", contains="unknown key 'x'")
    refused(p.decode_telemetry, _telemetry().replace(b'"seq":7', b'"seq":"7"'), field="seq")
    refused(p.decode_telemetry, _telemetry().replace(b'"seq":7', b'"seq":-1'), field="seq")
    refused(p.decode_telemetry, _telemetry().replace(b'"seq":7', b'"seq":7.5'), field="seq")
    refused(p.decode_telemetry, _telemetry().replace(b'"seq":7', b'"seq":99999999999999999999999'), field="seq")
    refused(p.decode_telemetry, _telemetry().replace(b'"boot":3,', b""), field="boot", contains="required")
    refused(p.decode_telemetry, _telemetry().replace(b"%d" % TS, b"946684800000"), field="ts", contains="clock")
    refused(p.decode_telemetry, _telemetry().replace(b"612.5", b'"612"'), field="r.co2", contains="number")
    refused(p.decode_telemetry, _telemetry().replace(b"612.5", b"true"), field="r.co2")
    refused(p.decode_telemetry, _telemetry().replace(b"612.5", b"1e400"), field="r.co2", contains="finite")
    refused(p.decode_telemetry, _telemetry().replace(b"612.5", b"-1e400"), field="r.co2")
    refused(p.decode_telemetry, _telemetry().replace(b'"co2"', b'"co3"'), field="r.co3", contains="unknown quantity")
    refused(p.decode_telemetry, _telemetry().replace(b'{"co2":612.5}', b"{}"), field="r", contains="at least one")
    refused(p.decode_telemetry, _telemetry().replace(b'{"co2":612.5}', b"[]"), field="r")
    refused(p.decode_telemetry, _telemetry().replace(b'"env1"', b'"env/1"'), field="s")
    refused(p.decode_telemetry, _telemetry(',"q":{"co2":"meh"}'), field="q.co2", contains="unknown quality")
    refused(p.decode_telemetry, _telemetry(',"q":{"pm25":"ok"}'), field="q.pm25")
    refused(p.decode_telemetry, _telemetry(',"q":[]'), field="q")
    big = _telemetry().replace(b'"env1"', b'"env1","r2":"' + b"x" * 1100 + b'"')
    refused(p.decode_telemetry, big, field="telemetry", contains="limit")
    refused(p.decode_telemetry, 12, field="telemetry", contains="bytes")
    refused(p.decode_telemetry, b"[" * 500 + b"]" * 500, field="telemetry")


def test_nan_and_infinity_tokens_refused():
    for token in (b"NaN", b"Infinity", b"-Infinity"):
        refused(p.decode_telemetry, _telemetry().replace(b"612.5", token), field=None)


def test_encode_refuses_what_decode_would():
    refused(p.encode_telemetry, 1, TS, 0, "env1", [("co2", float("nan"))], field="r.co2")
    refused(p.encode_telemetry, 1, TS, 0, "env1", [("no/pe", 1.0)], field="r")
    # an uncatalogued name passes the board's encoder (the board checked its config against the catalogue)
    # and is refused by the hub's decoder
    data = p.encode_telemetry(1, TS, 0, "env1", [("nope", 1.0)])
    refused(p.decode_telemetry, data, field="r.nope", contains="unknown quantity")
    refused(p.encode_telemetry, 1, 12, 0, "env1", [("co2", 1.0)], field="ts")
    refused(p.encode_telemetry, 1, TS, 0, "env1", [], field="r")
    refused(p.encode_telemetry, 1, TS, 0, "env1", [("co2", 1.0, "bad")], field="q.co2")
