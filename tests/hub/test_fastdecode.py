"""hub.ingest.fastdecode against protocols.telemetry.decode_telemetry: same result whenever the fast path decides."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hub.ingest import fastdecode
from protocols import payloads
from protocols.errors import ProtocolError

TS = 1_795_553_687_123
ODD = st.sampled_from([None, True, False, 0, -1, 1, 2, 2**31, 10**400, 1.5, -0.0, float("nan"), float("inf"), "",
                       "x", "ok", "range", "bad id", "_x", "a" * 33, [], {}, {"pm25": 1}, TS, 1577836799999])
QUANTITY = st.sampled_from(["pm25", "co2", "voltage", "rssi", "temperature", "nope", "", "v"])


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    values = draw(st.dictionaries(QUANTITY, st.floats() | st.integers(-10**6, 10**6) | ODD, max_size=5))
    obj: dict[str, Any] = {"v": 1, "seq": draw(st.integers(0, 5)), "ts": TS, "boot": 1, "s": "air1", "r": values}
    if draw(st.booleans()):
        obj["q"] = draw(st.dictionaries(QUANTITY, st.sampled_from(["ok", "warmup", "fault", "bad"]) | ODD,
                                        max_size=3) | ODD)
    for key in draw(st.lists(st.sampled_from(["v", "seq", "ts", "boot", "s", "r", "x"]), max_size=2)):
        obj[key] = draw(ODD)
    if draw(st.booleans()) and obj:
        del obj[draw(st.sampled_from(sorted(obj)))]
    return json.dumps(obj).encode()  # NaN and Infinity too, as Python's json reads them


def _same(payload: bytes) -> None:
    fast = fastdecode._fast(payload)
    try:
        slow = payloads.decode_telemetry(payload)
    except ProtocolError:
        assert fast is None
        return
    if fast is not None:
        assert (fast.seq, fast.ts, fast.boot, fast.sensor, fast.readings) == (
            slow.seq, slow.ts, slow.boot, slow.sensor, slow.readings)
        assert [type(v) for _, v, _ in fast.readings] == [type(v) for _, v, _ in slow.readings]
    assert fastdecode.decode(payload).readings == slow.readings


@given(messages())
def test_fast_decode_agrees_with_decode_telemetry(payload: bytes) -> None:
    _same(payload)


@given(st.binary(max_size=64))
def test_fast_decode_of_random_bytes(payload: bytes) -> None:
    _same(payload)


def test_common_payloads_take_the_fast_path() -> None:
    payload = payloads.encode_telemetry(3, TS, 2, "air1", [("pm25", 12.4), ("co2", 50_000), ("rssi", -60, "stale")])
    fast = fastdecode._fast(payload)
    assert fast is not None
    assert fast.readings == [("pm25", 12.4, "ok"), ("co2", 50000.0, "range"), ("rssi", -60.0, "stale")]
    _same(payload)
    _same(b'{"v":1,"seq":0,"ts":%d,"boot":0,"s":"a","r":{"pm25":1e999}}' % TS)  # json gives inf: refused
