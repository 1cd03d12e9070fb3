"""MQTT 3.1.1 packets as pure functions: bytes out of `encode_*`, tuples out of `parse`.

The one MQTT codec of the project: the board's client (firmware/mqtt.py) and the hub's asyncio adapter
(hub/ingest/mqtt.py) both speak MQTT through it. Sans-I/O: no socket, no asyncio, no clock, so every packet
is tested with exact byte vectors under CPython and MicroPython alike (tests/protocols/test_mqtt_codec.py).
Only what a publishing board and a subscribing hub need: CONNECT (with will, credentials, clean-session
flag), PUBLISH QoS 0/1, PUBACK, SUBSCRIBE, PINGREQ, DISCONNECT out; CONNACK, PUBLISH, PUBACK, SUBACK,
UNSUBACK, PINGRESP in. `packet_at` finds whole packets in bytes read in bulk (the hub); a board reads its
packets from a stream byte by byte and calls `parse` alone. Anything else a broker sends, or a packet that
breaks the rules, raises MQTTProtocolError with the reason. Messages are short on purpose: each distinct
string costs RAM on a board, and so does each new name (the board's qstr pools are nearly full).

Imports protocols._compat only; knows nothing of sockets, streams, sessions, retries or payloads.
"""

from protocols._compat import const

CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
SUBSCRIBE = const(8)
SUBACK = const(9)
UNSUBACK = const(11)
PINGREQ = const(12)
PINGRESP = const(13)
DISCONNECT = const(14)

MAX_LENGTH = const(268435455)  # the largest remaining length the 4-byte encoding can carry

# CONNACK return codes 1..5 (MQTT 3.1.1 section 3.2.2.3): bad protocol version, identifier rejected, server
# unavailable, bad user name or password, not authorised


class MQTTProtocolError(ValueError):
    """The peer broke MQTT 3.1.1 (or asked for what this client does not do): the message says how."""


def encode_length(n: int) -> bytes:
    """The variable-length "remaining length" field."""
    if n < 0 or n > MAX_LENGTH:
        raise MQTTProtocolError("length %d" % n)
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    if isinstance(s, str):
        s = s.encode("utf-8")
    if len(s) > 0xFFFF:
        raise MQTTProtocolError("string too long")
    return len(s).to_bytes(2, "big") + s


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_length(len(body)) + body


def encode_connect(client_id: str, keepalive: int = 60, clean: bool = True, user: str | None = None,
                   password: str | None = None, will: tuple[str, str | bytes, bool, int] | None = None) -> bytes:
    """CONNECT; `will` is None or (topic, message, retain, qos)."""
    flags = 0x02 if clean else 0
    payload = _str(client_id)
    if will is not None:
        topic, msg, retain, qos = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _str(topic) + _str(msg)
    if user is not None:
        flags |= 0x80
        payload += _str(user)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    head = b"\x00\x04MQTT\x04" + bytes((flags,)) + keepalive.to_bytes(2, "big")
    return _packet(0x10, head + payload)


def encode_publish(topic: str, payload: str | bytes, qos: int = 0, retain: bool = False, dup: bool = False,
                   pid: int = 0) -> bytes:
    """PUBLISH at QoS 0 or 1; a QoS 1 packet carries `pid` (1..65535); `dup` marks a retransmission."""
    first = 0x30 | (qos << 1) | (0x01 if retain else 0) | (0x08 if dup and qos else 0)
    name = _str(topic)
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    # one join: the payload (the only large part) is copied once, into the packet
    head = bytes((first,)) + encode_length(len(name) + (2 if qos else 0) + len(payload))
    if qos:
        return b"".join((head, name, pid.to_bytes(2, "big"), payload))
    return b"".join((head, name, payload))


def encode_puback(pid: int) -> bytes:
    return bytes((0x40, 2, pid >> 8, pid & 0xFF))


def encode_subscribe(pid: int, topic: str, qos: int = 0) -> bytes:
    return _packet(0x82, pid.to_bytes(2, "big") + _str(topic) + bytes((qos,)))


PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


def packet_at(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int, int] | None:
    """The packet that starts at buf[pos]: (first byte, start, end) of its body, or None until all of it is in
    `buf`. The next packet starts at `end`. A remaining length over 4 bytes raises MQTTProtocolError."""
    n = len(buf)
    i = pos + 1
    length = 0
    shift = 0
    while i < n:
        byte = buf[i]
        i += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if i + length > n:
                return None
            return buf[pos], i, i + length
        shift += 7
        if shift > 21:
            raise MQTTProtocolError("length over 4 bytes")
    return None


def parse(first: int, body: bytes | bytearray | memoryview) -> tuple[int, object]:
    """Decode one incoming packet from its first byte and its body (the bytes after the length).

    Returns (type, value): CONNACK -> (session_present, return_code); PUBLISH -> (topic, payload, qos, retain,
    dup, pid); PUBACK, UNSUBACK -> pid; SUBACK -> (pid, granted qos list); PINGRESP -> None. A memoryview body
    is read in place: the topic and payload are the only copies.
    """
    kind = first >> 4
    flags = first & 0x0F
    n = len(body)
    if kind == PUBLISH:
        qos = (flags >> 1) & 3
        end = 2 + ((body[0] << 8) | body[1]) if n > 1 else n + 1
        pid = 0
        if qos == 1 and end + 2 <= n:
            pid = (body[end] << 8) | body[end + 1]
            end += 2
        if qos > 1 or end > n or (qos and not pid):
            raise MQTTProtocolError("malformed PUBLISH")
        try:  # str() decodes the slice in place: no bytes copy of the topic first
            topic = str(body[2 : end - 2 * qos], "utf-8")
        except UnicodeError:
            raise MQTTProtocolError("PUBLISH topic not UTF-8") from None
        return kind, (topic, bytes(body[end:]), qos, (flags & 1) == 1, (flags & 8) == 8, pid)
    # the fixed-size answers: body length, or -1 for "3 or more"; flags must be 0 for all of them. A chain of
    # comparisons, not a dict: this runs for every PUBACK, once per message sent
    if kind in (PUBACK, CONNACK, UNSUBACK):  # a constant tuple: mpy-cross folds it, nothing is allocated
        size = 2
    elif kind == SUBACK:
        size = -1
    elif kind == PINGRESP:
        size = 0
    else:
        raise MQTTProtocolError("unexpected packet type %d" % kind)
    if flags or (n != size if size >= 0 else n < 3):
        raise MQTTProtocolError("malformed packet type %d" % kind)
    if kind == CONNACK:
        if body[0] > 1:
            raise MQTTProtocolError("malformed packet type 2")
        return kind, (body[0] == 1, body[1])
    if kind == PINGRESP:
        return kind, None
    pid = (body[0] << 8) | body[1]
    if kind == SUBACK:
        return kind, (pid, list(body[2:]))
    return kind, pid
