"""Pulse counter against its meter twin: counting, debouncing a bouncing contact, flow, range, the count
kept across resets in a state file, and a handler that allocates nothing (checked with heap_lock on the
unix port)."""

import os
import sys

from firmware.drivers import pulse
from firmware.hw.buses import SimPin
from simulators.twins.pulse import Twin
from tests.drivers.rig import Clock, qualities

MICROPYTHON_HEAP = "64k"
QS = ("water_volume", "water_flow")


def _rig(opts=None, path=None, quantities=QS, **faults):
    clock = Clock()
    twin = Twin(faults, clock)
    d = pulse.Pulse(SimPin(twin), clock, opts or {}, quantities, path)
    return d, twin, clock


def _run(twin, clock, ms):
    for _ in range(ms):
        clock.ms += 1
        twin.advance()


def _state(tag):
    path = "/tmp/qala-pulse-%s-%s" % (sys.implementation.name, tag)
    for p in (path, path + ".tmp"):
        try:
            os.remove(p)  # noqa: PTH107 - dual module: MicroPython has no pathlib
        except OSError:
            pass
    return path


def test_counts_pulses_into_m3():
    d, twin, clock = _rig({"litres_per_pulse": 10}, None, ("gas_volume",))
    _run(twin, clock, 20000)
    assert 7 <= twin.pulses <= 16
    assert d.count == twin.pulses
    assert d.read() == [("gas_volume", round(twin.pulses * 10 / 1000, 4))]


def test_bouncing_contact_is_debounced():
    d, twin, clock = _rig(bouncing=True)
    _run(twin, clock, 20000)
    assert twin.edges == 4 * twin.pulses
    assert d.count == twin.pulses
    assert d.bounced == 3 * twin.pulses
    raw, twin, clock = _rig({"debounce_ms": 0}, bouncing=True)  # without debouncing every bounce counts
    _run(twin, clock, 20000)
    assert raw.count == twin.edges == 4 * twin.pulses


def test_flow_from_the_last_two_pulses_then_falling_off():
    d, twin, clock = _rig(stuck=False)
    assert d.read() == [("water_volume", 0.0), ("water_flow", 0.0, "ok")]
    _run(twin, clock, 10000)
    a, b = twin.times
    r = d.read()
    assert r[1] == ("water_flow", round(3600 / max(b - a, clock.ms - b), 4), "ok")
    assert 1.2 < r[1][1] < 3.1
    twin.set("stuck")  # the meter stops turning: the flow falls off, then is 0
    _run(twin, clock, 20000)
    assert d.read()[1][1] == round(3600 / (clock.ms - b), 4)
    clock.ms += 600000
    assert d.read()[1] == ("water_flow", 0.0, "ok")
    assert twin.level() == 0  # stuck closed; silent leaves the line high
    twin.set("stuck", False)
    twin.set("silent")
    n = d.count
    _run(twin, clock, 10000)
    assert twin.level() == 1
    assert d.count == n


def test_absurd_rate_is_out_of_range():
    d, twin, clock = _rig(out_of_range=True)
    _run(twin, clock, 3000)
    r = d.read()
    assert r[1] == ("water_flow", 60.0, "range")  # a pulse every 60 ms at 1 L: 60 m3/h, above max_flow 10
    assert qualities(r)[0] == "ok"


def test_count_kept_across_resets():
    path = _state("keep")
    d, twin, clock = _rig({"save_every": 5, "save_s": 3600}, path)
    _run(twin, clock, 14000)
    assert twin.pulses == 6
    d.read()  # 6 pulses, 5 or more since the last write: written
    with open(path) as f:  # noqa: PTH123 - no pathlib on MicroPython
        assert f.read() == "6"
    _run(twin, clock, 5000)
    d.read()
    seen = d.count
    assert 0 < seen - 6 < 5  # fewer than save_every new ones: not written yet
    after, twin2, clock2 = _rig({"save_every": 5}, path)  # a power cut: loses the unwritten pulses
    assert after.count == 6
    assert after.read()[0] == ("water_volume", 0.006)
    d.close()  # a clean stop writes at once
    again, _, _ = _rig({}, path)
    assert again.count == seen
    try:
        open(path + ".tmp").close()  # noqa: PTH123 - only whether it exists
    except OSError:
        return
    raise AssertionError("temporary file left behind")


def test_count_written_after_save_s():
    path = _state("time")
    d, twin, clock = _rig({"save_every": 1000, "save_s": 10}, path)
    _run(twin, clock, 5000)
    d.read()
    assert d.saved == 0
    _run(twin, clock, 6000)
    d.read()
    assert d.saved == d.count > 0
    with open(path) as f:  # noqa: PTH123 - no pathlib on MicroPython
        assert int(f.read()) == d.count


def test_edge_handler_allocates_nothing():
    d, twin, clock = _rig()
    try:
        import micropython  # noqa: PLC0415 - only on MicroPython
    except ImportError:  # CPython: nothing to check
        return
    edge = d._edge
    clock.ms = 1000
    micropython.heap_lock()
    try:
        edge(None)
        edge(None)  # a bounce
        clock.ms = 2000
        edge(None)
    finally:
        micropython.heap_unlock()
    assert (d.count, d.bounced, d.seen) == (2, 1, 2)
