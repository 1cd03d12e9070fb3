"""PMS5003 driver against its twin: datasheet commands and checksum, both modes, every fault of the twin."""

from firmware.drivers import pms5003
from firmware.drivers.base import FrameError
from firmware.hw.buses import SimUART
from simulators.twins.pms5003 import Twin
from tests.drivers.rig import Clock, fault, qualities

MICROPYTHON_HEAP = "64k"


def _rig(mode="passive", **faults):
    clock = Clock()
    twin = Twin(faults, clock)
    return pms5003.Pms5003(SimUART(twin), clock, {"mode": mode, "stuck_after": 3}), twin, clock


def test_commands_match_the_datasheet():
    # appendix B of the PMS5003 datasheet: passive mode, active mode, read in passive mode
    assert bytes(pms5003.command(0xE1, 0)) == bytes((0x42, 0x4D, 0xE1, 0, 0, 0x01, 0x70))
    assert bytes(pms5003.command(0xE1, 1)) == bytes((0x42, 0x4D, 0xE1, 0, 1, 0x01, 0x71))
    assert bytes(pms5003.command(0xE2, 0)) == bytes((0x42, 0x4D, 0xE2, 0, 0, 0x01, 0x71))


def test_frame_checksum_is_the_sum_of_the_bytes():
    frame = bytearray(32)
    frame[0:4] = b"\x42\x4d\x00\x1c"
    frame[10:16] = b"\x00\x07\x00\x0c\x00\x13"  # atmospheric PM1.0 7, PM2.5 12, PM10 19
    frame[17] = 3
    s = sum(frame[:30])
    frame[30], frame[31] = s >> 8, s & 0xFF
    assert pms5003.decode(frame) == (7, 12, 19, False)
    frame[31] ^= 1
    try:
        pms5003.decode(frame)
    except FrameError:
        return
    raise AssertionError("bad checksum accepted")


def test_passive_mode_reads_the_twins_values():
    d, twin, clock = _rig()
    assert twin.commands == [(0xE1, 0)]
    clock.ms = 31000
    r = d.read()
    assert twin.commands[-1] == (0xE2, 0)
    assert r == [("pm1", twin.last[3], "ok"), ("pm25", twin.last[4], "ok"), ("pm10", twin.last[5], "ok")]


def test_active_mode_takes_the_newest_frame():
    d, twin, clock = _rig("active")
    clock.ms = 35500  # the twin streamed 35 frames; its 64-byte FIFO kept the last two
    assert [r[1] for r in d.read()] == twin.last[3:6]


def test_warmup_first_30_s_and_while_counts_are_zero():
    d, twin, clock = _rig()
    assert qualities(d.read()) == ["warmup"] * 3
    clock.ms = 30000
    twin.set("warming_up", 1)
    assert [r[1:] for r in d.read()] == [(0, "warmup")] * 3
    assert qualities(d.read()) == ["ok"] * 3


def test_out_of_range():
    d, twin, clock = _rig(out_of_range=True)
    clock.ms = 31000
    r = d.read()
    assert r[1] == ("pm25", 1500, "range")


def test_transient_bad_checksum_is_retried():
    d, twin, clock = _rig(bad_checksum=2)
    clock.ms = 31000
    assert qualities(d.read()) == ["ok"] * 3
    assert d.errors == 2


def test_persistent_bad_checksum_and_silence_are_faults():
    d, twin, _ = _rig(bad_checksum=True)
    assert "checksum" in fault(d)
    twin.set("bad_checksum", False)
    twin.set("silent")
    assert "no answer" in fault(d)


def test_stuck_frames_are_marked_fault():
    d, twin, clock = _rig(stuck=True)
    clock.ms = 31000
    assert [qualities(d.read())[0] for _ in range(5)] == ["ok", "ok", "ok", "fault", "fault"]
