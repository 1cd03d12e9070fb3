"""The offline buffer (firmware/buffer.py): order, bounds, drop counting, and surviving a restart."""

# ruff: noqa: PTH102, PTH123, PTH208
# (a dual module: MicroPython has no pathlib)

import os

from firmware.buffer import Buffer

MICROPYTHON_HEAP = "256k"  # compiled from source here


def _tmpdir():
    path = "/tmp/qala-buf-%s" % "".join("%02x" % b for b in os.urandom(6))
    os.mkdir(path)
    return path + "/q"


def _drain(buf):
    out = []
    while True:
        rec = buf.peek()
        if rec is None:
            return out
        out.append(rec)
        buf.pop(rec)


def _recs(lo, hi):
    return [b"r%d" % i for i in range(lo, hi)]


def test_ram_only_keeps_order_and_drops_oldest():
    buf = Buffer(4)
    buf.offline = False
    for r in _recs(0, 10):
        buf.push(r)
    assert len(buf) == 4
    assert buf.dropped == 6
    assert _drain(buf) == _recs(6, 10)
    assert len(buf) == 0


def test_online_spills_ram_overflow_to_flash_in_order():
    buf = Buffer(3, 100, _tmpdir())
    buf.offline = False
    for r in _recs(0, 10):
        buf.push(r)
    assert len(buf) == 10
    assert buf.dropped == 0
    assert _drain(buf) == _recs(0, 10)


def test_offline_goes_to_flash_and_survives_a_restart():
    path = _tmpdir()
    buf = Buffer(8, 1000, path)
    buf.offline = False
    buf.push(b"r0")
    buf.offline = True
    for r in _recs(1, 150):  # more than two segment files
        buf.push(r)
    assert buf.ram == []  # everything went to flash
    assert buf.peek() == b"r0"
    buf.pop(b"r0")
    buf.close()
    again = Buffer(8, 1000, path)  # a reset: what was unsent is still there, in order
    assert len(again) == 149
    again.offline = False
    again.push(b"new")
    assert _drain(again) == _recs(1, 150) + [b"new"]  # noqa: RUF005 - no *x in MicroPython displays
    assert [n for n in os.listdir(path) if n != "pos"] == []  # drained: files removed


def test_flash_full_drops_oldest_and_counts():
    buf = Buffer(2, 100, _tmpdir())
    buf.offline = True
    for r in _recs(0, 250):
        buf.push(r)
    assert len(buf) == 100
    assert buf.dropped == 150
    assert _drain(buf) == _recs(150, 250)


def test_pop_of_a_record_no_longer_at_the_head_removes_nothing():
    buf = Buffer(2)
    buf.offline = False
    buf.push(b"a")
    head = buf.peek()
    buf.push(b"b")
    buf.push(b"c")  # "a" dropped while it was in flight
    assert buf.dropped == 1
    buf.pop(head)  # ...and then acknowledged: it was delivered after all
    assert buf.dropped == 0
    assert _drain(buf) == [b"b", b"c"]


def test_head_moved_to_flash_while_in_flight_is_still_popped_once():
    buf = Buffer(4, 100, _tmpdir())
    buf.offline = False
    buf.push(b"a")
    head = buf.peek()
    buf.offline = True
    buf.push(b"b")  # offline: "a" moves from RAM to flash
    buf.pop(head)
    assert _drain(buf) == [b"b"]


def test_a_record_cut_by_a_power_failure_is_skipped():
    path = _tmpdir()
    buf = Buffer(2, 100, path)
    buf.offline = True
    for r in _recs(0, 3):
        buf.push(r)
    buf.close()
    with open(path + "/0", "ab") as f:
        f.write(b"r3-half")  # no newline: the write was cut
    again = Buffer(2, 100, path)
    assert len(again) == 3
    again.offline = True
    again.push(b"r4")
    assert _drain(again) == _recs(0, 3) + [b"r4"]  # noqa: RUF005 - no *x in MicroPython displays
