"""DS18B20 pair against its twin: the datasheet's temperature register table, Maxim CRC-8 vectors, the
1-Wire transactions, ROM mapping and every fault."""

from firmware.drivers import ds18b20
from firmware.drivers.base import crc8_maxim
from firmware.hw.buses import SimOneWire
from simulators.twins import ds18b20 as twin_mod
from tests.drivers.rig import Clock, qualities

MICROPYTHON_HEAP = "64k"
QS = ["heat_supply_temp", "heat_return_temp"]


def _hex(b):
    return "".join("%02x" % x for x in b)


SUPPLY, RETURN = _hex(twin_mod.ROMS[0]), _hex(twin_mod.ROMS[1])


def _rig(roms=None, **faults):
    clock = Clock()
    twin = twin_mod.Twin(faults, clock)
    opts = {"roms": roms if roms is not None else {"heat_supply_temp": SUPPLY, "heat_return_temp": RETURN}}
    d = ds18b20.Ds18b20(SimOneWire(twin), opts, QS)
    clock.ms = 1000
    return d, twin, clock


def fault(d):
    """read() raises after retries + 1 tries of each of the two devices; returns the text."""
    before = d.errors
    try:
        d.read()
    except OSError as exc:
        assert d.errors - before == 2 * (d.retries + 1), (d.errors, before)
        return str(exc)
    raise AssertionError("no OSError")


def test_temperature_register_datasheet_table():
    # DS18B20 datasheet, table "Temperature/Data Relationship" (12-bit)
    table = ((125, 0x07D0), (85, 0x0550), (25.0625, 0x0191), (10.125, 0x00A2), (0.5, 0x0008), (0, 0x0000),
             (-0.5, 0xFFF8), (-10.125, 0xFF5E), (-25.0625, 0xFE6F), (-55, 0xFC90))
    for t, reg in table:
        assert ds18b20.celsius(reg & 0xFF, reg >> 8) == t, (t, hex(reg))
    assert ds18b20.celsius(0x91, 0x01, 0x1F) == 25.0  # 9 bits (config 0x1F): bits 2..0 undefined, cleared
    assert ds18b20.celsius(0x6F, 0xFE, 0x5F) == -25.125  # 11 bits: bit 0 undefined


def test_maxim_crc_vectors():
    # Maxim application note 27: ROM 02 1C B8 01 00 00 00 has CRC A2
    assert crc8_maxim(bytes((0x02, 0x1C, 0xB8, 0x01, 0, 0, 0))) == 0xA2
    # the power-on scratchpad (datasheet memory map: 85 degC 0x0550, config 0x7F, reserved FF 0C 10;
    # TH/TL 4B 46 as shipped): 50 05 4B 46 7F FF 0C 10, CRC 1C
    assert crc8_maxim(bytes((0x50, 0x05, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10))) == 0x1C
    assert twin_mod.maxim_crc(bytes((0x50, 0x05, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10))) == 0x1C
    for r in twin_mod.ROMS:
        assert ds18b20.parse_rom(_hex(r)) == r
    try:
        ds18b20.parse_rom(SUPPLY[:-2] + "00")
    except ValueError as exc:
        assert "not a DS18B20 ROM" in str(exc)
        return
    raise AssertionError("bad ROM CRC accepted")


def test_supply_and_return_by_rom():
    d, twin, clock = _rig()
    first = d.read()  # the conversion started at start is done: real values
    assert [r[0] for r in first] == QS
    assert qualities(first) == ["ok", "ok"]
    assert 64 < first[0][1] < 76
    assert 40 < first[1][1] < 50
    assert first[0][1] * 16 == int(first[0][1] * 16)  # 0.0625 degC steps
    swapped, twin, clock = _rig({"heat_supply_temp": RETURN, "heat_return_temp": SUPPLY})
    r = swapped.read()
    assert 40 < r[0][1] < 50
    assert 64 < r[1][1] < 76


def test_power_on_value_is_warmup_and_scan_order():
    clock = Clock()
    twin = twin_mod.Twin({}, clock)
    d = ds18b20.Ds18b20(SimOneWire(twin), {}, QS)  # no roms: scanned, in ROM order
    assert d.roms == sorted(twin_mod.ROMS)
    assert d.read() == [("heat_supply_temp", 85.0, "warmup"), ("heat_return_temp", 85.0, "warmup")]
    clock.ms = 800
    assert qualities(d.read()) == ["ok", "ok"]


def test_warming_up_85_after_a_reset():
    d, twin, clock = _rig()
    d.read()
    twin.set("warming_up", 2)  # the next conversion leaves both at 85: a brownout reset
    clock.ms = 2000
    assert d.read() == [("heat_supply_temp", 85.0, "warmup"), ("heat_return_temp", 85.0, "warmup")]
    d.last[0] = 84.0  # a supply that really was near 85 before
    twin.regs[0] = 0x0550
    assert d.read()[0] == ("heat_supply_temp", 85.0, "ok")


def test_out_of_range():
    d, twin, clock = _rig(out_of_range=True)
    assert d.read() == [("heat_supply_temp", 128.0, "range"), ("heat_return_temp", 128.0, "range")]


def test_transient_bad_crc_is_retried():
    d, twin, clock = _rig(bad_checksum=1)
    assert qualities(d.read()) == ["ok", "ok"]
    assert d.errors == 1


def test_persistent_bad_crc_and_no_presence_are_faults():
    d, twin, clock = _rig(bad_checksum=True)
    assert "CRC" in fault(d)
    twin.set("bad_checksum", False)
    twin.set("silent")
    assert "no presence" in fault(d)


def test_one_device_gone_the_other_carries_on():
    gone = _hex(twin_mod.rom(b"\x09\x00\x00\x0a\x51\xc3"))
    d, twin, clock = _rig({"heat_supply_temp": SUPPLY, "heat_return_temp": gone})
    r = d.read()
    assert [x[0] for x in r] == ["heat_supply_temp"]  # no value yet for the missing one
    assert d.errors == d.retries + 1
    d.roms[1] = twin_mod.ROMS[1]
    clock.ms = 2000
    d.read()
    d.roms[1] = ds18b20.parse_rom(gone)
    clock.ms = 3000
    r = d.read()
    assert qualities(r) == ["ok", "fault"]  # its last value, marked


def test_bus_shorted_reads_zeros():
    d, twin, clock = _rig()
    twin.ow_read = bytes  # a shorted bus: every bit 0
    assert "zeros" in fault(d)


def test_stuck_values_are_marked_fault():
    clock = Clock()
    twin = twin_mod.Twin({"stuck": True}, clock)
    d = ds18b20.Ds18b20(SimOneWire(twin), {"stuck_after": 2}, QS)
    got = []
    for i in range(4):
        clock.ms = 1000 * (i + 1)
        got.append(qualities(d.read())[0])
    assert got == ["ok", "ok", "fault", "fault"]
