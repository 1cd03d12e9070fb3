"""Modbus PDUs and RTU/TCP framing against the specification's examples. Runs under both interpreters."""

from expect import refused

from protocols import modbus as m
from protocols import modbus_framing as f
from protocols.errors import ProtocolError

MICROPYTHON_HEAP = "64k"

H = bytes.fromhex


def test_crc16_check_value_and_spec_frames():
    assert f.crc16(b"123456789") == 0x4B37  # the CRC-16/MODBUS catalogue check value
    # Modbus over Serial Line V1.02 and common references: read holding registers
    assert f.rtu_frame(1, m.read_request(3, 0, 10)) == H("01030000000ac5cd")
    assert f.rtu_frame(0x11, m.read_request(3, 0x6B, 3)) == H("1103006b00037687")


def test_requests_encode_as_in_the_application_protocol_spec():
    # MODBUS Application Protocol V1.1b3 section 6 examples
    assert m.read_request(1, 19, 19) == H("0100130013")
    assert m.read_request(2, 196, 22) == H("0200c40016")
    assert m.read_request(3, 107, 3) == H("03006b0003")
    assert m.read_request(4, 8, 1) == H("0400080001")
    assert m.write_coil_request(172, True) == H("0500acff00")
    assert m.write_register_request(1, 3) == H("0600010003")
    bits = [1, 0, 1, 1, 0, 0, 1, 1, 1, 0]
    assert m.write_coils_request(19, bits) == H("0f0013000a02cd01")
    assert m.write_registers_request(1, [0x000A, 0x0102]) == H("100001000204000a0102")


def test_server_decodes_requests():
    req = m.decode_request(H("03006b0003"))
    assert (req.function, req.address, req.count) == (3, 107, 3)
    req = m.decode_request(H("0f0013000a02cd01"))
    assert req.values == [1, 0, 1, 1, 0, 0, 1, 1, 1, 0]
    req = m.decode_request(H("100001000204000a0102"))
    assert req.values == [10, 258]
    assert m.decode_request(H("0500acff00")).values == [1]
    assert m.decode_request(H("0500ac0000")).values == [0]


def test_server_refuses_bad_requests_with_the_right_exception_code():
    assert refused(m.decode_request, H("2b0e0100")).code == m.ILLEGAL_FUNCTION
    assert refused(m.decode_request, H("03006b0000")).code == m.ILLEGAL_DATA_VALUE
    assert refused(m.decode_request, H("03006b007e")).code == m.ILLEGAL_DATA_VALUE  # 126 > 125
    assert refused(m.decode_request, H("03ffff0002")).code == m.ILLEGAL_DATA_ADDRESS
    assert refused(m.decode_request, H("0500ac1234")).code == m.ILLEGAL_DATA_VALUE
    assert refused(m.decode_request, H("03006b")).code == m.ILLEGAL_DATA_VALUE
    assert refused(m.decode_request, H("100001000204000a01")).code == m.ILLEGAL_DATA_VALUE
    assert refused(m.decode_request, H("100001000203000a0102")).code == m.ILLEGAL_DATA_VALUE
    refused(m.decode_request, b"", field="pdu")


def test_responses_round_trip_and_exceptions():
    assert m.decode_response(m.registers_response(3, [555, 0, 100]), 3, 3) == [555, 0, 100]
    assert m.decode_response(H("0103cd6b05"), 1, 19) == [1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1]
    req = m.decode_request(H("0600010003"))
    assert m.write_response(req) == H("0600010003")
    assert m.decode_response(m.write_response(req), 6, 1) == []
    exc = refused(m.decode_response, m.exception_response(3, 2), 3, 1)
    assert isinstance(exc, m.ModbusDeviceError)
    assert exc.code == 2
    assert "illegal data address" in str(exc)
    refused(m.decode_response, H("0302000a"), 3, 2, field="pdu")
    refused(m.decode_response, H("0402000a"), 3, 1, field="pdu")
    refused(m.decode_response, H("03"), 3, 1, field="pdu")


def test_request_builders_refuse_bad_arguments():
    refused(m.read_request, 3, 0, 126, field="count")
    refused(m.read_request, 3, 65535, 2, field="count")
    refused(m.read_request, 7, 0, 1, field="function")
    refused(m.write_register_request, 0, 65536, field="value")
    refused(m.write_registers_request, 0, [], field="values")
    refused(f.rtu_frame, 249, b"\x03", field="unit")
    general = f.rtu_frame(0xF8, H("040000000a"))  # the PZEM-004T's general address
    assert general[:6] == H("f8040000000a")
    assert f.crc16(general) == 0  # a frame with its CRC appended checks to 0


def test_rtu_incremental_partial_double_and_garbage():
    a = f.rtu_frame(1, m.read_request(3, 0, 10))
    b = f.rtu_frame(2, m.read_request(4, 8, 1))
    framer = f.RtuFramer(requests=True)
    framer.feed(a[:3])
    assert framer.next_frame() is None
    framer.feed(a[3:] + b)  # the rest of one frame and a whole second one in one read
    assert framer.next_frame() == (1, H("030000000a"))
    assert framer.next_frame() == (2, H("0400080001"))
    assert framer.next_frame() is None
    framer.feed(b"\x00\xff\x13\x37" + a)  # garbage before a frame
    assert framer.next_frame() == (1, H("030000000a"))
    assert framer.discarded == 4


def test_rtu_bad_crc_is_skipped_and_gap_clears():
    good = f.rtu_frame(1, m.read_request(3, 0, 10))
    bad = good[:-1] + bytes((good[-1] ^ 0xFF,))
    framer = f.RtuFramer(requests=True)
    framer.feed(bad + good)
    assert framer.next_frame() == (1, H("030000000a"))
    framer.feed(good[:5])
    framer.gap()
    framer.feed(good)
    assert framer.next_frame() == (1, H("030000000a"))


def test_rtu_silence_delimits_a_frame_of_a_function_without_a_length_rule():
    """Function codes the framer has no length for (07, 08, 0x11, 43/14): the silence after them ends the frame,
    and gap() hands a well-formed one to the server (which answers exception 01); noise it does not."""
    framer = f.RtuFramer(requests=True)
    for pdu in (H("07"), H("0800000000"), H("11"), H("2b0e0100")):
        frame = f.rtu_frame(5, pdu)
        framer.feed(frame[:2])
        assert framer.next_frame() is None
        framer.feed(frame[2:])
        assert framer.next_frame() is None  # no length rule: only the silence ends it
        assert framer.gap() == (5, pdu)
    assert framer.discarded == 0
    framer.feed(H("0511aabb"))  # a bad CRC: noise, dropped at the silence
    assert framer.next_frame() is None
    assert framer.gap() is None
    known = f.rtu_frame(1, m.read_request(3, 0, 10))
    framer.feed(known)
    assert framer.next_frame() == (1, H("030000000a"))
    assert framer.gap() is None  # that frame was framed already
    framer.feed(f.rtu_frame(5, H("07")))
    assert framer.gap() == (5, H("07"))  # the copy starts again after every silence
    for response in (f.rtu_frame(5, m.registers_response(3, [1, 2])), f.rtu_frame(5, H("8302")),
                     f.rtu_frame(5, H("8701"))):  # responses (another server's, or this one's echo): never requests
        framer.feed(response)
        assert framer.next_frame() is None
        assert framer.gap() is None
    client = f.RtuFramer(requests=False)
    client.feed(f.rtu_frame(5, H("07")))
    assert client.gap() is None  # a client frames responses by their function's rule only


def test_rtu_a_gap_of_1_5_characters_inside_a_frame_discards_it_until_the_next_silence():
    """Spec 2.5.1.1: a silence of more than 1.5 characters inside a frame makes it incomplete. split() (the I/O
    layer saw such a silence, then more bytes) drops what is buffered and what follows, up to gap(); the landed
    framer joined the two halves and served the request."""
    good = f.rtu_frame(1, m.read_request(3, 0, 10))
    framer = f.RtuFramer(requests=True)
    framer.feed(good[:3])
    framer.split()
    framer.feed(good[3:])
    assert framer.next_frame() is None
    framer.feed(good)  # still before the 3.5-character silence: part of the broken frame
    assert framer.next_frame() is None
    assert framer.gap() is None
    assert framer.discarded == 2 * len(good)
    framer.feed(good)  # after the silence: a frame again
    assert framer.next_frame() == (1, H("030000000a"))
    framer.split()  # nothing buffered (that frame was framed): nothing to discard
    framer.feed(good)
    assert framer.next_frame() == (1, H("030000000a"))
    framer.feed(f.rtu_frame(5, H("11"))[:2])  # a function without a length rule, broken: no exception 01
    framer.split()
    framer.feed(f.rtu_frame(5, H("11"))[2:])
    assert framer.gap() is None
    framer.feed(f.rtu_frame(5, H("11")))
    assert framer.gap() == (5, H("11"))


def test_silence_is_three_and_a_half_characters_to_the_microsecond():
    # a character: start + data + parity + stop bits; t3.5 rounded up to the microsecond
    assert f.silence_us(9600) == 3646  # 3.5 * 10 / 9600 s = 3645.83 us
    assert (f.silence_us(1200, "N"), f.silence_us(1200, "N", 2), f.silence_us(1200, "E", 1)) == (29167, 32084, 32084)
    assert f.silence_us(19200, "O", 2, 7) == 2006  # 11 bits: 2005.2 us
    assert f.silence_us(19200) == 1823
    assert f.silence_us(38400, "N", 2) == f.silence_us(115200, "E") == 1750  # fixed above 19,200 baud
    # t1.5: a longer silence inside a frame breaks it
    assert (f.silence_us(9600, tenths=15), f.silence_us(300, tenths=15), f.silence_us(38400, tenths=15)) == (
        1563, 50000, 750)


def test_rtu_client_side_lengths():
    framer = f.RtuFramer(requests=False)
    framer.feed(f.rtu_frame(1, m.registers_response(3, [1, 2])) + f.rtu_frame(1, m.exception_response(3, 2)))
    assert framer.next_frame() == (1, H("030400010002"))
    assert framer.next_frame() == (1, H("8302"))


def test_tcp_framing():
    frame = f.tcp_frame(0x1234, 1, m.read_request(3, 107, 3))
    assert frame == H("1234000000060103006b0003")
    framer = f.TcpFramer()
    framer.feed(frame[:5])
    assert framer.next_frame() is None
    framer.feed(frame[5:] + frame)
    assert framer.next_frame() == (0x1234, 1, H("03006b0003"))
    assert framer.next_frame() == (0x1234, 1, H("03006b0003"))
    framer.feed(H("00010001000601"))
    try:
        framer.next_frame()
    except ProtocolError as exc:
        assert "protocol id" in str(exc)
    else:
        raise AssertionError("bad protocol id accepted")
    framer = f.TcpFramer()
    framer.feed(H("0001000001000103"))
    refused(framer.next_frame, field="mbap")
