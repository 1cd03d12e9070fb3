"""PZEM-004T v3 driver against its twin: the manual's request frame, Modbus CRC-16, every fault."""

from firmware.drivers import pzem004t
from firmware.drivers.base import FrameError
from firmware.hw.buses import SimUART
from protocols.modbus_framing import crc16
from simulators.twins.pzem004t import Twin
from tests.drivers.rig import Clock, fault, qualities

MICROPYTHON_HEAP = "64k"


def _rig(**faults):
    twin = Twin(faults, Clock())
    return pzem004t.Pzem004t(SimUART(twin), {}), twin


def test_request_matches_the_manual():
    d, _ = _rig()
    assert bytes(d.request) == bytes((0x01, 0x04, 0x00, 0x00, 0x00, 0x0A, 0x70, 0x0D))


def test_reply_decoding():
    # the manual's reply example values: 220.0 V, 1.000 A, 220.0 W, 0 Wh, 50.0 Hz, PF 1.00 (CRC computed)
    body = bytes((1, 4, 20, 0x08, 0x98, 0x03, 0xE8, 0, 0, 0x08, 0x98, 0, 0, 0, 0, 0, 0, 0x01, 0xF4, 0, 0x64,
                  0, 0))
    crc = crc16(body)
    frame = body + bytes((crc & 0xFF, crc >> 8))
    assert pzem004t.values(pzem004t.decode(frame, 1)) == (220.0, 1.0, 220.0, 0.0, 50.0, 1.0)
    for bad, unit in ((frame[:-1] + bytes((frame[-1] ^ 1,)), 1), (frame, 2)):
        try:
            pzem004t.decode(bad, unit)
        except FrameError:
            continue
        raise AssertionError("accepted %r" % bad)


def test_values_from_the_twin():
    d, twin = _rig()
    r = d.read()
    assert [q[0] for q in r] == ["voltage", "current", "power_active", "energy_import", "frequency",
                                 "power_factor"]
    assert qualities(r) == ["ok"] * 6
    v, a, w, kwh, hz, pf = (q[1] for q in r)
    assert 225 < v < 235
    assert abs(w - v * a * pf) < 1
    assert hz == 50.0
    assert kwh >= 12.345
    assert d.read()[3][1] >= kwh


def test_the_general_address_reaches_the_one_meter_on_the_line():
    twin = Twin({}, Clock())
    d = pzem004t.Pzem004t(SimUART(twin), {"address": 0xF8})  # the manual's general address (248)
    assert bytes(d.request)[:2] == bytes((0xF8, 0x04))
    assert qualities(d.read()) == ["ok"] * 6  # the reply comes from the meter's own address (1)


def test_out_of_range():
    d, _ = _rig(out_of_range=True)
    assert d.read()[0] == ("voltage", 300.0, "range")


def test_bad_crc_and_silence():
    d, twin = _rig(bad_checksum=1)
    assert qualities(d.read()) == ["ok"] * 6
    assert d.errors == 1
    twin.set("bad_checksum")
    assert "CRC" in fault(d)
    twin.set("bad_checksum", False)
    twin.set("silent")
    assert "no answer" in fault(d)


def test_exception_reply_is_a_fault():
    d, _ = _rig()
    d.request = pzem004t.rtu_frame(1, bytes((0x04, 0x00, 0x10, 0x00, 0x01)))  # register 0x10: not in the map
    assert "exception" in fault(d)


def test_stuck_values_repeat():
    d, _ = _rig(stuck=True)
    assert d.read() == d.read()

