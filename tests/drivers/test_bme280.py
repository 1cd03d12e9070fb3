"""BME280 driver against its twin: the datasheet's compensation on its worked example, every fault."""

from firmware.drivers import bme280
from firmware.hw.buses import SimI2C
from simulators.twins import bme280 as twin_mod
from tests.drivers.rig import Clock, fault, qualities

MICROPYTHON_HEAP = "64k"


def _rig(**faults):
    twin = twin_mod.Twin(faults, Clock())
    return bme280.Bme280(SimI2C(twin), {"stuck_after": 3}), twin


def test_compensation_worked_example():
    # BMP280 datasheet 3.12 (same T and P compensation as the BME280's): adc_T 519888 -> 25.08 degC,
    # t_fine 128422; adc_P 415148 -> 100653.27 Pa (the double formula; the 64-bit integer one: 100653.25)
    t, fine = bme280.compensate_t(519888, twin_mod.T)
    assert (t, fine) == (2508, 128422)
    assert abs(bme280.compensate_p(415148, fine, twin_mod.P) / 256 - 100653.27) < 0.05
    assert abs(twin_mod.press_f(415148, twin_mod.temp_f(519888)) - 100653.27) < 0.01


def test_humidity_integer_matches_the_float_formula():
    _, fine = bme280.compensate_t(519888, twin_mod.T)
    for adc in (24000, 26000, 30000, 36000):  # 20..75 %RH
        integer = bme280.compensate_h(adc, fine, twin_mod.H) / 1024
        assert abs(integer - twin_mod.hum_f(adc, twin_mod.temp_f(519888))) < 0.05, adc


def test_calibration_read_back_from_the_registers():
    d, _ = _rig()
    assert (d.t, d.p, d.h) == (twin_mod.T, twin_mod.P, twin_mod.H)


def test_values_from_the_twin():
    d, twin = _rig()
    r = d.read()
    assert qualities(r) == ["ok"] * 3
    want = 21 + 4 * __import__("math").sin(6.2832 / 40)  # the twin's first value
    assert abs(r[0][1] - want) < 0.02
    assert abs(r[2][1] - (1000 + 10 * (want - 21) / 4)) < 0.05
    assert abs(r[1][1] - (50 + 2 * (want - 21))) < 0.2


def test_reset_values_are_warmup():
    d, twin = _rig(warming_up=True)
    assert qualities(d.read())[0] == "warmup"


def test_out_of_range():
    d, twin = _rig(out_of_range=True)
    assert d.read()[0] == ("temperature", 95.0, "range")


def test_nack_retried_then_fault():
    d, twin = _rig()
    twin.set("silent", 2)
    assert qualities(d.read()) == ["ok"] * 3
    assert d.errors == 2
    twin.set("silent")
    assert "bme280" in fault(d)


def test_wrong_chip_and_bad_checksum_refused():
    twin = twin_mod.Twin({}, Clock())
    twin.regs[0xD0] = 0x58  # a BMP280
    try:
        bme280.Bme280(SimI2C(twin), {})
    except OSError as exc:
        assert "chip id 0x58" in str(exc)
    else:
        raise AssertionError("BMP280 accepted")
    try:
        twin_mod.Twin({"bad_checksum": True}, Clock())
    except ValueError:
        return
    raise AssertionError("a BME280 twin cannot have a bad checksum")


def test_stuck_values_are_marked_fault():
    d, twin = _rig(stuck=True)
    assert [qualities(d.read())[0] for _ in range(5)] == ["ok", "ok", "ok", "fault", "fault"]
