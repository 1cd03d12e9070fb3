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


def _take(get, done):
    """Every record `get` gives, each handed to `done` before the next."""
    out = []
    while True:
        rec = get()
        if rec is None:
            return out
        out.append(rec)
        done(rec)


def _drain(buf):
    return _take(buf.peek, buf.pop)


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


def _tel(seq, boot=1):
    return b'{"v":1,"seq":%d,"ts":1795553687000,"boot":%d,"s":"a","r":{"pm25":1}}' % (seq, boot)


def _send_all(buf):
    return _take(buf.next, buf.sent_one)


def test_confirmed_records_leave_unconfirmed_ones_stay_and_are_sent_again():
    buf = Buffer(4, 100, _tmpdir(), confirming=True)
    buf.offline = False
    for seq in range(10):
        buf.push(_tel(seq))
    assert _send_all(buf) == [_tel(s) for s in range(10)]  # through flash (ram 4) and RAM
    assert (len(buf), buf.sent, len(buf) - buf.sent) == (10, 10, 0)
    assert buf.confirm(1, 3) == 4  # 0..3 stored by the hub
    assert (len(buf), buf.sent) == (6, 6)
    buf.push(_tel(10))
    assert buf.next() == _tel(10)
    buf.sent = 0  # no confirmation for a while: send again what stays unconfirmed, in order
    assert _send_all(buf) == [_tel(s) for s in range(4, 11)]
    assert buf.confirm(1, 2) == 0  # an old confirmation changes nothing
    assert buf.confirm(1, 10) == 7
    assert len(buf) == 0
    assert buf.dropped == 0


def test_confirmation_survives_a_restart_of_the_board():
    path = _tmpdir()
    buf = Buffer(2, 100, path, confirming=True)
    buf.offline = True
    for seq in range(6):
        buf.push(_tel(seq))
    _send_all(buf)
    buf.confirm(1, 1)
    buf.close()
    again = Buffer(2, 100, path, confirming=True)  # a reset: the unconfirmed ones are sent again
    assert again.sent == 0
    assert _send_all(again) == [_tel(s) for s in range(2, 6)]
    assert again.confirm(1, 5) == 4
    assert len(again) == 0


def test_records_of_an_older_boot_are_confirmed_by_their_own_mark():
    buf = Buffer(8, confirming=True)
    buf.offline = False
    for rec in (_tel(5, boot=1), _tel(6, boot=1), _tel(0, boot=2), _tel(1, boot=2)):
        buf.push(rec)
    _send_all(buf)
    assert buf.confirm(2, 1) == 0  # the head is of boot 1: nothing leaves before it
    assert buf.confirm(1, 6) == 4  # boot 1 confirmed: the boot 2 records behind it were confirmed already
    assert len(buf) == 0


def test_full_buffer_drops_the_oldest_and_counts_only_what_was_never_sent():
    buf = Buffer(2, 5, _tmpdir(), confirming=True)
    buf.offline = False
    for seq in range(4):
        buf.push(_tel(seq))
    _send_all(buf)  # 0..3 sent, never confirmed (no hub)
    for seq in range(4, 9):
        buf.push(_tel(seq))  # flash holds 5: 0..3 make room, and they had reached the broker
    assert len(buf) == 5
    assert (buf.dropped, buf.sent) == (0, 0)
    assert _send_all(buf) == [_tel(s) for s in range(4, 9)]
    for seq in range(9, 20):
        buf.push(_tel(seq))  # 11 more: 4..8 (sent) make room first, then 9..14, never sent: a loss
    assert buf.dropped == 6
    assert _send_all(buf) == [_tel(s) for s in range(15, 20)]


def test_without_confirmation_the_broker_ack_removes_the_record():
    buf = Buffer(4, 10, _tmpdir())
    buf.offline = False
    for seq in range(3):
        buf.push(_tel(seq))
    assert _send_all(buf) == [_tel(s) for s in range(3)]
    assert len(buf) == 0
