"""SCD4x driver against its twin: Sensirion CRC-8 and the datasheet's example, timing, every fault."""

from firmware.drivers import scd4x
from firmware.drivers.base import FrameError, crc8
from firmware.hw.buses import SimI2C
from simulators.twins.scd4x import Twin
from tests.drivers.rig import Clock, fault, qualities

MICROPYTHON_HEAP = "64k"


def _rig(**faults):
    clock = Clock()
    twin = Twin(faults, clock)
    d = scd4x.Scd4x(SimI2C(twin), clock, {"stop_ms": 0, "stuck_after": 3})
    clock.ms = 5000
    return d, twin, clock


def test_crc8_datasheet_example():
    assert crc8(b"\xbe\xef") == 0x92  # SCD4x datasheet, CRC section: 0xBEEF -> 0x92


def test_read_measurement_datasheet_example():
    # datasheet read_measurement example: 500 ppm, 25.0 degC, 37.0 %RH, each word with its CRC
    words = scd4x.words(bytes((0x01, 0xF4, 0x33, 0x66, 0x67, 0xA2, 0x5E, 0xB9, 0x3C)), 3)
    assert words == [500, 0x6667, 0x5EB9]
    assert round(-45 + 175 * words[1] / 65535, 2) == 25.0
    assert round(100 * words[2] / 65535, 1) == 37.0
    try:
        scd4x.words(bytes((0x01, 0xF4, 0x34)), 1)
    except FrameError:
        return
    raise AssertionError("bad CRC accepted")


def test_values_every_5_s():
    d, twin, clock = _rig()
    r = d.read()
    assert qualities(r) == ["ok"] * 3
    assert 400 < r[0][1] < 900
    assert 15 < r[1][1] < 30
    assert 30 < r[2][1] < 60
    clock.ms = 6000
    assert d.read() == r  # no new measurement yet: the last one again, no fault
    clock.ms = 10000
    assert d.read() != r


def test_nothing_before_the_first_measurement():
    clock = Clock()
    d = scd4x.Scd4x(SimI2C(Twin({}, clock)), clock, {"stop_ms": 0})
    assert d.read() == []


def test_warmup_then_range_for_zero_ppm():
    d, twin, clock = _rig(warming_up=True)
    assert d.read()[0] == ("co2", 0, "warmup")
    clock.ms = 65000
    assert d.read()[0] == ("co2", 0, "range")


def test_out_of_range():
    d, _, _ = _rig(out_of_range=True)
    assert d.read()[0] == ("co2", 45000, "range")


def test_transient_bad_crc_is_retried():
    d, twin, clock = _rig(bad_checksum=1)
    assert qualities(d.read()) == ["ok"] * 3  # the retry reads the measurement again
    assert d.errors == 1


def test_persistent_bad_crc_and_nack_are_faults():
    d, twin, clock = _rig(bad_checksum=True)
    assert "CRC" in fault(d)
    twin.set("silent")
    assert "scd4x" in fault(d)


def test_stuck_values_are_marked_fault():
    d, twin, clock = _rig(stuck=True)
    got = []
    for i in range(5):
        clock.ms = 5000 * (i + 1)
        got.append(qualities(d.read())[0])
    assert got == ["ok", "ok", "ok", "fault", "fault"]
