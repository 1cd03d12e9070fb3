"""The hub's telemetry decode (orjson, then protocols' rules) against protocols' own decode (json.loads).

Every payload must come out the same: the same Telemetry, or a ProtocolError with the same field and
reason, so a bad payload is still counted, dead-lettered and logged as protocols words it, and a good one
gives the same stored lines.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub import metrics as m
from hub.ingest.process import Processor, decode_telemetry
from hub.ingest.sequence import SequenceTracker
from hub.metrics import Metrics
from hub.registry import Registry
from hub.sinks.lineproto import encode_telemetry
from protocols import catalogue, payloads
from protocols.errors import ProtocolError

if TYPE_CHECKING:
    from pathlib import Path

TS = 1_795_553_687_123


def _outcome(decode: object, payload: bytes) -> tuple[object, ...]:
    try:
        t = decode(payload)  # type: ignore[operator]
    except ProtocolError as exc:
        return ("refused", str(exc))
    return ("ok", t.seq, t.ts, t.boot, t.sensor, [(q, repr(v), quality) for q, v, quality in t.readings])


def _same(payload: bytes) -> tuple[object, ...]:
    expected = _outcome(payloads.decode_telemetry, payload)
    assert _outcome(decode_telemetry, payload) == expected
    return expected


BAD = [
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":NaN}}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":Infinity}}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":-Infinity}}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":1e400}}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":%s}}' % (TS, b"9" * 400),
    b'{"v":1,"seq":18446744073709551616,"ts":%d,"boot":1,"s":"a","r":{"co2":1}}' % TS,
    b'{"v":1,"seq":-9223372036854775809,"ts":%d,"boot":1,"s":"a","r":{"co2":1}}' % TS,
    b'{"v":18446744073709551617,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":1}}' % TS,
    b'{"v":1,"seq":1,"ts":100000000000000000000000,"boot":1,"s":"a","r":{"co2":1}}',
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"\\ud800","r":{"co2":1}}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"\\udc00":1}}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a\xed\xa0\x80","r":{"co2":1}}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a\xff","r":{"co2":1}}' % TS,
    b'\xef\xbb\xbf{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":1}}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":1}} x' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":1}}\x00' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":1},}' % TS,
    b'{"v":1,"seq":1.0,"ts":%d,"boot":1,"s":"a","r":{"co2":1}}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":true}}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"nope":1}}' % TS,
    b'{"v":2,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":1}}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":1},"x":0}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":1},"q":{"co2":"bad"}}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":1},"q":{"pm25":"ok"}}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{}}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":[]}' % TS,
    b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":1}' % TS,
    b"[" * 5000 + b"]" * 5000,
    b'{"v":1,"s":"' + b"a" * 1100 + b'"}',
    b"",
    b"null",
    b"[]",
    b'"text"',
]


@pytest.mark.parametrize("payload", BAD)
def test_bad_payloads_are_refused_with_the_same_reason(payload: bytes) -> None:
    outcome = _same(payload)
    assert outcome[0] == "refused"


def test_what_orjson_refuses_or_reads_differently_json_reads_the_same_way_through_protocols() -> None:
    # integers beyond 64 bits: json.loads keeps an int, orjson a float; a reading's value is a float either way
    big = 18446744073709551616
    payload = b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"power_active":%d}}' % (TS, big)
    assert isinstance(orjson.loads(payload)["r"]["power_active"], float)
    assert _same(payload) == ("ok", 1, TS, 1, "a", [("power_active", repr(float(big)), "range")])
    # duplicate keys: the last one wins in both
    payload = b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":500,"co2":600.5}}' % TS
    assert _same(payload) == ("ok", 1, TS, 1, "a", [("co2", "600.5", "ok")])


def test_bad_payloads_are_counted_and_store_nothing(tmp_path: Path) -> None:
    metrics = Metrics()
    p = Processor("s", Registry(tmp_path / "r.json"), SequenceTracker(), metrics, require_birth=False)
    p.watches = lambda _d, _s, _v: False
    lines: list[str] = []
    for payload in BAD:
        assert p.process("qala/s/d1/telemetry", payload, 0, lines) == []
    assert lines == []
    assert metrics.rejects[m.BAD_PAYLOAD] == len(BAD)
    assert metrics.readings_in == 0


finite = st.floats(allow_nan=False, allow_infinity=False)
readings_st = st.lists(
    st.tuples(
        st.sampled_from(sorted(catalogue.QUANTITIES)),
        finite | st.integers(-(2**80), 2**80) | st.sampled_from([0.1, 1e16, -0.0, 1e-320, 2.0**63, 2.0**64]),
        st.sampled_from(catalogue.QUALITIES),
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda r: r[0],
)


@given(st.integers(0, payloads.SEQ_MAX), st.integers(payloads.TS_MIN, payloads.TS_MAX), readings_st)
def test_valid_payloads_give_the_same_telemetry_and_lines(seq: int, ts: int, readings: list[tuple]) -> None:  # type: ignore[type-arg]
    try:
        payload = payloads.encode_telemetry(seq, ts, 3, "env1", readings)
    except ProtocolError:
        return  # over the size limit
    outcome = _same(payload)
    assert outcome[0] == "ok"
    ours, theirs = decode_telemetry(payload), payloads.decode_telemetry(payload)
    assert encode_telemetry("s", "d", ours.sensor, ours.ts, ours.readings, catalogue.QUANTITIES) == \
        encode_telemetry("s", "d", theirs.sensor, theirs.ts, theirs.readings, catalogue.QUANTITIES)


numbers_text = st.one_of(
    finite.map(repr),
    st.integers(-(2**90), 2**90).map(str),
    st.from_regex(r"\A-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,3})?\Z"),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-0", "-0.0", "01", "1.", ".5", "+1", "0x10"]),
)


@given(numbers_text)
def test_any_number_text_as_a_reading(text: str) -> None:
    _same(b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":%s}}' % (TS, text.encode()))


json_values = st.recursive(
    st.none() | st.booleans() | finite | st.integers(-(2**70), 2**70) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
fields_st = st.fixed_dictionaries(
    {},
    optional={
        "v": st.sampled_from([1, 1.0, 2, True]) | json_values,
        "seq": st.integers(-1, 2**65) | json_values,
        "ts": st.sampled_from([TS]) | json_values,
        "boot": st.integers(0, 2**64) | json_values,
        "s": st.sampled_from(["env1", "", "_x", "a b"]) | json_values,
        "r": st.dictionaries(st.sampled_from(["co2", "pm25", "nope"]), st.floats() | json_values, max_size=3)
        | json_values,
        "q": st.dictionaries(st.sampled_from(["co2", "pm25"]), st.sampled_from(["ok", "warmup", "bad"]), max_size=2)
        | json_values,
        "x": json_values,
    },
)


@given(fields_st)
def test_any_object_gives_the_same_outcome(obj: dict[str, object]) -> None:
    _same(json.dumps(obj).encode())  # NaN and Infinity come out as those literals: json.loads reads them


@given(st.binary(max_size=64), st.integers(0, 100))
def test_any_bytes_in_a_payload_give_the_same_outcome(noise: bytes, at: int) -> None:
    good = b'{"v":1,"seq":1,"ts":%d,"boot":1,"s":"a","r":{"co2":412.5}}' % TS
    at = min(at, len(good))
    _same(good[:at] + noise + good[at:])
