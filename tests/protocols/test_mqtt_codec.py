"""The MQTT 3.1.1 packet codec (protocols/mqtt_codec.py) against exact byte vectors, on both interpreters.

Vectors are written out by hand from the MQTT 3.1.1 specification (sections 2.2, 3.1-3.14).
"""

from protocols import mqtt_codec as mc

# 256k, not 64k: these modules are compiled from source here; boards run them precompiled.
MICROPYTHON_HEAP = "256k"


def _raises(fn, *args):
    try:
        fn(*args)
    except mc.MQTTProtocolError as exc:
        return str(exc)
    raise AssertionError("no MQTTProtocolError from %r" % (args,))


def test_remaining_length_boundaries():
    assert mc.encode_length(0) == b"\x00"
    assert mc.encode_length(127) == b"\x7f"
    assert mc.encode_length(128) == b"\x80\x01"
    assert mc.encode_length(16383) == b"\xff\x7f"
    assert mc.encode_length(16384) == b"\x80\x80\x01"
    assert mc.encode_length(268435455) == b"\xff\xff\xff\x7f"
    _raises(mc.encode_length, 268435456)


def test_connect_minimal_clean_session():
    pkt = mc.encode_connect("c1", 60, True)
    assert pkt == b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1"


def test_connect_will_credentials_persistent_session():
    pkt = mc.encode_connect("d", 30, False, "u", "pw", ("t/s", b"off", True, 1))
    # flags: user 0x80 | password 0x40 | will retain 0x20 | will qos 1 0x08 | will 0x04 = 0xEC
    body = b"\x00\x04MQTT\x04\xec\x00\x1e" + b"\x00\x01d" + b"\x00\x03t/s" + b"\x00\x03off"
    body += b"\x00\x01u" + b"\x00\x02pw"
    assert pkt == b"\x10" + bytes([len(body)]) + body


def test_publish_qos0_and_qos1_with_dup_and_retain():
    assert mc.encode_publish("a/b", b"hi") == b"\x30\x07\x00\x03a/bhi"
    assert mc.encode_publish("a/b", b"hi", 1, False, False, 10) == b"\x32\x09\x00\x03a/b\x00\x0ahi"
    assert mc.encode_publish("a/b", "hi", 1, True, True, 0x1234) == b"\x3b\x09\x00\x03a/b\x12\x34hi"
    # DUP is never set at QoS 0
    assert mc.encode_publish("a", b"", 0, False, True) == b"\x30\x03\x00\x01a"


def test_publish_long_payload_uses_two_length_bytes():
    pkt = mc.encode_publish("t", b"x" * 200)
    assert pkt[:3] == b"\x30\xcb\x01"
    assert len(pkt) == 3 + 203


def test_small_packets():
    assert mc.encode_puback(0x0102) == b"\x40\x02\x01\x02"
    assert mc.encode_subscribe(7, "qala/x/y/cmd", 1) == b"\x82\x11\x00\x07\x00\x0cqala/x/y/cmd\x01"
    assert mc.PINGREQ_PACKET == b"\xc0\x00"
    assert mc.DISCONNECT_PACKET == b"\xe0\x00"


def test_parse_answers():
    assert mc.parse(0x20, b"\x00\x00") == (mc.CONNACK, (False, 0))
    assert mc.parse(0x20, b"\x01\x00") == (mc.CONNACK, (True, 0))
    assert mc.parse(0x20, b"\x00\x05") == (mc.CONNACK, (False, 5))
    assert mc.parse(0x40, b"\x12\x34") == (mc.PUBACK, 0x1234)
    assert mc.parse(0x90, b"\x00\x07\x01") == (mc.SUBACK, (7, [1]))
    assert mc.parse(0xB0, b"\x00\x07") == (mc.UNSUBACK, 7)
    assert mc.parse(0xD0, b"") == (mc.PINGRESP, None)


def test_parse_publish():
    assert mc.parse(0x30, b"\x00\x03a/bhi") == (mc.PUBLISH, ("a/b", b"hi", 0, False, False, 0))
    assert mc.parse(0x3B, b"\x00\x03a/b\x00\x09hi") == (mc.PUBLISH, ("a/b", b"hi", 1, True, True, 9))
    assert mc.parse(0x32, b"\x00\x01t\x00\x01") == (mc.PUBLISH, ("t", b"", 1, False, False, 1))


def test_parse_refuses_garbage():
    assert "malformed" in _raises(mc.parse, 0x20, b"\x00")  # CONNACK too short
    assert "malformed" in _raises(mc.parse, 0x21, b"\x00\x00")  # reserved flags set
    assert "malformed" in _raises(mc.parse, 0x20, b"\x02\x00")  # unknown ack flags
    assert "malformed" in _raises(mc.parse, 0x40, b"\x00\x01\x00")  # PUBACK too long
    assert "malformed" in _raises(mc.parse, 0x30, b"\x00\x09ab")  # topic runs past the end
    assert "malformed" in _raises(mc.parse, 0x30, b"")
    assert "malformed" in _raises(mc.parse, 0x32, b"\x00\x01t\x00")  # packet id cut short
    assert "malformed" in _raises(mc.parse, 0x32, b"\x00\x01t\x00\x00")  # packet id 0
    assert "malformed" in _raises(mc.parse, 0x34, b"\x00\x01t\x00\x01")  # QoS 2
    assert "UTF-8" in _raises(mc.parse, 0x30, b"\x00\x01\xff")
    assert "type 1" in _raises(mc.parse, 0x10, b"")  # a broker never sends CONNECT
    assert "type 15" in _raises(mc.parse, 0xF0, b"")


def test_parse_reads_a_memoryview_in_place():
    stream = memoryview(b"\x32\x09\x00\x03a/b\x00\x0ahi")
    assert mc.parse(stream[0], stream[2:]) == (mc.PUBLISH, ("a/b", b"hi", 1, False, False, 10))


def test_packet_at_finds_whole_packets():
    pub = mc.encode_publish("a/b", b"x" * 200, 1, False, False, 7)  # a 2-byte remaining length
    stream = b"\x90\x03\x00\x01\x01" + pub + b"\xd0\x00"
    assert mc.packet_at(stream, 0) == (0x90, 2, 5)
    assert mc.packet_at(stream, 5) == (0x32, 8, len(pub) + 5)
    first, start, end = mc.packet_at(stream, 5)
    assert mc.parse(first, stream[start:end]) == (mc.PUBLISH, ("a/b", b"x" * 200, 1, False, False, 7))
    assert mc.packet_at(stream, end) == (0xD0, end + 2, end + 2)  # no body
    assert mc.packet_at(stream, len(stream)) is None
    assert mc.packet_at(bytearray(stream), 5) == (0x32, 8, len(pub) + 5)


def test_packet_at_waits_for_the_rest():
    pub = mc.encode_publish("a/b", b"x" * 200, 1, False, False, 7)
    for cut in range(len(pub)):  # the first byte only, half the length, part of the body
        assert mc.packet_at(pub[:cut], 0) is None
    assert mc.packet_at(pub, 0) is not None


def test_packet_at_refuses_a_length_over_4_bytes():
    assert "length" in _raises(mc.packet_at, b"\x30\xff\xff\xff\xff\x01", 0)
    assert mc.packet_at(b"\x30\xff\xff\xff\x7f", 0) is None  # the largest length: wait for the body
