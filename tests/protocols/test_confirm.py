"""Confirmations (hub -> board) and reading a record's (boot, seq). Runs under both interpreters."""

from expect import refused

from protocols import confirm
from protocols.telemetry_encode import encode_telemetry

MICROPYTHON_HEAP = "64k"

TS = 1795553687123


def test_a_confirmation_round_trip():
    data = confirm.encode_conf(7, 1042)
    assert data == b'{"v":1,"boot":7,"seq":1042}'
    assert confirm.decode_conf(data) == (7, 1042)
    assert confirm.decode_conf(b'{"v":1,"seq":0,"boot":0}') == (0, 0)


def test_bad_confirmations_are_refused():
    refused(confirm.encode_conf, -1, 0, field="boot")
    refused(confirm.encode_conf, 0, 2 ** 31, field="seq")
    refused(confirm.decode_conf, b'{"v":1,"boot":7}', field="seq", contains="required")
    refused(confirm.decode_conf, b'{"v":1,"boot":7,"seq":"1"}', field="seq")
    refused(confirm.decode_conf, b'{"v":1,"boot":7,"seq":1,"x":2}', field="conf")
    refused(confirm.decode_conf, b"", field="conf")


def test_the_id_of_a_record_is_read_from_its_prefix():
    record = encode_telemetry(1042, TS, 7, "air1", [("pm25", 12.5), ("co2", 600, "warmup")])
    assert confirm.record_id(record) == (7, 1042)
    assert confirm.record_id(bytearray(encode_telemetry(0, TS, 0, "h", [("uptime", 1)]))) == (0, 0)
    big = encode_telemetry(1073741823, TS, 1073741823, "s", [("pm25", 1)])
    assert confirm.record_id(big) == (1073741823, 1073741823)
    refused(confirm.record_id, b'{"v":2,"seq":1,"ts":1,"boot":1}', field="record")
    refused(confirm.record_id, b'{"v":1,"seq":,"ts":1}', field="record")
    refused(confirm.record_id, b'{"v":1,"seq":5,"ts":1795553687123,"s":"x"}', field="record")
