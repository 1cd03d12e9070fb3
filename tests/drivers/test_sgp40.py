"""SGP40 driver against its twin: the datasheet's default measure command, CRCs, the self-test, the
simplified VOC index and every fault."""

from firmware.drivers import sgp40
from firmware.drivers.base import crc8
from firmware.hw.buses import SimI2C
from simulators.twins.sgp40 import Twin
from tests.drivers.rig import Clock, fault, qualities

MICROPYTHON_HEAP = "64k"
FAST = {"selftest_ms": 0, "measure_ms": 0}


def _rig(opts=None, **faults):
    clock = Clock()
    twin = Twin(faults, clock)
    o = dict(FAST)
    o.update(opts or {})
    d = sgp40.Sgp40(SimI2C(twin), clock, o)
    return d, twin, clock


def test_default_measure_command_datasheet():
    # SGP40 datasheet, sgp40_measure_raw_signal without compensation: 26 0F 80 00 A2 66 66 93
    d, twin, _ = _rig()
    assert bytes(d.cmd) == bytes((0x26, 0x0F, 0x80, 0x00, 0xA2, 0x66, 0x66, 0x93))
    assert sgp40.ticks(50, 25) == (0x8000, 0x6666)
    assert crc8(b"\xbe\xef") == 0x92
    d.read()
    assert (twin.rh_ticks, twin.t_ticks) == (0x8000, 0x6666)


def test_compensation_from_the_config():
    d, twin, _ = _rig({"humidity": 30, "temperature": 21.5})
    d.read()
    assert twin.rh_ticks == int(30 * 65535 / 100 + 0.5)
    assert twin.t_ticks == int((21.5 + 45) * 65535 / 175 + 0.5)


def test_warmup_then_an_index_around_100_rising_with_voc():
    d, twin, clock = _rig()
    r = d.read()
    assert r == [("voc_index", 100, "warmup")]  # the first sample sets the baseline
    got = []
    for i in range(40):
        clock.ms = 46000 + 5000 * i
        got.append(d.read()[0])
    assert {q for _, _, q in got} == {"ok"}
    values = [v for _, v, _ in got]
    assert min(values) >= 60
    assert max(values) > 300  # the twin's VOC event: the raw signal dips by thousands of ticks


def test_index_mapping():
    d, _, _ = _rig({"gain": 0.1, "tau_h": 1})
    assert d.index(30000, 0) == 100
    assert d.index(28000, 0) == 300  # 2000 ticks under the baseline
    assert d.index(40000, 0) == 1  # clamped
    assert d.index(29000, 3600000) == 100  # a time constant later the baseline has followed
    assert d.base == 29000


def test_self_test_failure_raises():
    clock = Clock()
    twin = Twin({}, clock)
    twin.i2c_read_ok = twin.i2c_read

    def bad(addr, buf):
        twin.answer = 0x4B00 if twin.answer == 0xD400 else twin.answer
        twin.i2c_read_ok(addr, buf)

    twin.i2c_read = bad
    try:
        sgp40.Sgp40(SimI2C(twin), clock, FAST)
    except OSError as exc:
        assert "self-test failed (0x4B00)" in str(exc)
        return
    raise AssertionError("a failed self-test was accepted")


def test_out_of_range():
    d, _, _ = _rig(out_of_range=True)
    assert d.read() == [("voc_index", 500, "range")]


def test_transient_bad_crc_is_retried():
    d, twin, clock = _rig()
    twin.set("bad_checksum", 1)
    assert qualities(d.read()) == ["warmup"]
    assert d.errors == 1


def test_persistent_bad_crc_and_nack_are_faults():
    d, twin, clock = _rig()
    twin.set("bad_checksum")
    assert "CRC" in fault(d)
    twin.set("bad_checksum", False)
    twin.set("silent")
    assert "sgp40" in fault(d)


def test_stuck_values_are_marked_fault():
    d, twin, clock = _rig({"stuck_after": 3}, stuck=True)
    got = []
    for i in range(5):
        clock.ms = 50000 + 1000 * i
        got.append(qualities(d.read())[0])
    assert got == ["ok", "ok", "ok", "fault", "fault"]
