"""Property tests (CPython only, hypothesis): decoders raise only ProtocolError; encode->decode round-trips."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import catalogue, modbus, modbus_framing, registers, topics
from protocols import payloads as p
from protocols.errors import ProtocolError

ID = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,31}\Z")
TS = st.integers(min_value=p.TS_MIN, max_value=p.TS_MAX)
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
QUANTITY = st.sampled_from(sorted(catalogue.QUANTITIES))
QUALITY = st.sampled_from(catalogue.QUALITIES)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)
KIND = st.sampled_from(["telemetry", "status", "cmd", "ack"])


def _decode_only_protocol_errors(kind: str, data: bytes) -> None:
    try:
        p.decode(kind, data)
    except ProtocolError:
        pass


@given(KIND, st.binary(max_size=300))
def test_random_bytes_raise_only_protocol_error(kind: str, data: bytes) -> None:
    _decode_only_protocol_errors(kind, data)


@given(KIND, JSONISH)
def test_random_json_raises_only_protocol_error(kind: str, value: object) -> None:
    _decode_only_protocol_errors(kind, json.dumps(value).encode())


@given(KIND, st.dictionaries(st.sampled_from(["v", "seq", "ts", "boot", "s", "r", "q", "state", "caps", "id", "act",
                                                "val", "exp", "st", "why", "fw", "error"]), JSONISH, max_size=8))
def test_random_objects_with_real_keys_raise_only_protocol_error(kind: str, obj: dict[str, object]) -> None:
    obj.setdefault("v", 1)
    _decode_only_protocol_errors(kind, json.dumps(obj).encode())


@given(st.integers(0, p.SEQ_MAX), TS, st.integers(0, p.BOOT_MAX), ID,
       st.lists(st.tuples(QUANTITY, FINITE, QUALITY), min_size=1, max_size=8, unique_by=lambda r: r[0]))
def test_telemetry_round_trip(seq: int, ts: int, boot: int, sensor: str,
                              readings: list[tuple[str, float, str]]) -> None:
    try:
        data = p.encode_telemetry(seq, ts, boot, sensor, readings)
    except ProtocolError as exc:  # only size may legitimately refuse
        assert "limit" in str(exc)
        return
    msg = p.decode_telemetry(data)
    assert (msg.seq, msg.ts, msg.boot, msg.sensor) == (seq, ts, boot, sensor)
    expected = sorted((q, v, catalogue.check(q, v, quality)) for q, v, quality in readings)
    assert sorted(msg.readings) == expected


@given(st.binary(min_size=1, max_size=120))
@settings(max_examples=200)
def test_mutated_telemetry_raises_only_protocol_error(noise: bytes) -> None:
    good = p.encode_telemetry(1, p.TS_MIN, 0, "s1", [("co2", 500.0), ("pm25", 3.5)])
    for pos in (0, len(good) // 3, len(good) // 2, len(good) - 1):
        _decode_only_protocol_errors("telemetry", good[:pos] + noise + good[pos:])
        _decode_only_protocol_errors("telemetry", good[:pos] + noise + good[pos + len(noise):])


KEY = bytes(range(32))


@given(ID, ID, FINITE, TS, st.integers(0, 10**9), st.integers(1, p.N_MAX), ID)
def test_cmd_round_trip(cmd_id: str, act: str, value: float, ts: int, ttl: int, n: int, device: str) -> None:
    exp = min(ts + ttl, p.TS_MAX)
    cmd = p.decode_cmd(p.encode_cmd(KEY, "s", device, cmd_id, act, value, ts, exp, n), KEY, "s", device)
    assert (cmd.id, cmd.actuator, cmd.value, cmd.ts, cmd.expires, cmd.n) == (cmd_id, act, value, ts, exp, n)


@given(st.binary(min_size=1, max_size=40), st.integers(0, 300))
def test_a_changed_byte_never_passes_the_signature(noise: bytes, where: int) -> None:
    good = p.encode_cmd(KEY, "s", "d1", "c-1", "fan1", 80, p.TS_MIN, p.TS_MIN + 1000, 5)
    at = where % len(good)
    bad = good[:at] + noise + good[at + len(noise):]
    if bad == good:
        return
    try:
        p.decode_cmd(bad, KEY, "s", "d1")
    except ProtocolError:
        return
    raise AssertionError("a changed cmd passed: %r" % bad)


@given(ID, ID, TS, st.one_of(FINITE.map(lambda v: ("applied", v, None)),
                             st.text(max_size=p.MAX_TEXT).map(lambda t: ("rejected", None, t))))
def test_ack_round_trip(cmd_id: str, act: str, ts: int, outcome: tuple[str, float | None, str | None]) -> None:
    status, value, reason = outcome
    try:
        data = p.encode_ack(KEY, "s", "d1", cmd_id, act, status, ts, 9, value=value, reason=reason)
    except ProtocolError as exc:  # long escaped reasons may exceed the size limit; surrogates are refused
        assert "limit" in str(exc) or "Unicode" in str(exc)
        return
    ack = p.decode_ack(data, KEY, "s", "d1")
    assert (ack.id, ack.status, ack.value, ack.reason) == (cmd_id, status, value, reason)


@given(st.text(max_size=80))
def test_topic_parse_raises_only_protocol_error(topic: str) -> None:
    try:
        site, device, kind = topics.parse(topic)
    except ProtocolError:
        return
    assert topics.build(site, device, kind) == topic


@given(st.sampled_from(sorted(registers.TYPES)), st.sampled_from(registers.ORDERS),
       st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=2))
def test_register_decode_encode_round_trip(dtype: str, order: str, regs: list[int]) -> None:
    try:
        value = registers.decode(regs, dtype, order)
    except ProtocolError:
        return
    assert registers.decode(registers.encode(value, dtype, order), dtype, order) == value


@given(st.lists(st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=2)), max_size=3),
       st.text(max_size=5), st.text(max_size=5))
def test_register_bad_input_raises_only_protocol_error(regs: list[object], dtype: str, order: str) -> None:
    try:
        registers.decode(regs, dtype, order)
    except ProtocolError:
        pass


@given(st.binary(max_size=300), st.booleans())
def test_modbus_rtu_framer_and_pdu_decoders_raise_only_protocol_error(data: bytes, requests: bool) -> None:
    framer = modbus_framing.RtuFramer(requests=requests)
    framer.feed(data)
    while (frame := framer.next_frame()) is not None:
        try:
            if requests:
                modbus.decode_request(frame[1])
            else:
                modbus.decode_response(frame[1], frame[1][0] & 0x7F, 1)
        except ProtocolError:
            pass
    try:
        modbus.decode_request(data)
    except ProtocolError:
        pass


@given(st.binary(max_size=300))
def test_modbus_tcp_framer_raises_only_protocol_error(data: bytes) -> None:
    framer = modbus_framing.TcpFramer()
    framer.feed(data)
    try:
        while framer.next_frame() is not None:
            pass
    except ProtocolError:
        pass


@given(st.integers(1, 247), st.integers(0, 0xFFFF - 125), st.integers(1, 125), st.binary(max_size=20),
       st.integers(0, 10))
def test_modbus_rtu_frame_found_after_mutations(unit: int, address: int, count: int, noise: bytes, cut: int) -> None:
    frame = modbus_framing.rtu_frame(unit, modbus.read_request(3, address, count))
    framer = modbus_framing.RtuFramer(requests=True)
    framer.feed(noise)
    framer.gap()  # silence before a new request, as on a real bus
    framer.feed(frame[:cut])
    framer.feed(frame[cut:])
    assert framer.next_frame() == (unit, frame[1:-2])
