"""firmware/vitals.py: when the board counts as working, when it must reset, when it lags. Pure: ticks in."""

from firmware.vitals import Vitals

MICROPYTHON_HEAP = "64k"

STALL = 120000
OOM_LIMIT = 5  # MemoryErrors in a run that mean "out of memory" (a literal in firmware/vitals.py)
QUARTER = STALL // 4  # how long they must go on, and the quiet that ends a run
LAG_MS = 300000  # how long records wait before the sender counts as lagging


def sub(a, b):  # time.ticks_diff on the board; these tick times never wrap
    return a - b


def test_a_working_board_is_fine():
    v = Vitals(0, STALL, 10000, sub)
    for t in range(0, 600000, 1000):
        if t % 10000 == 0:
            v.sampled_at = t
            v.sent_at = t + 50
        assert v.verdict(t, True, 1 if t % 10000 == 0 else 0) is None


def test_a_sender_that_gets_no_puback_while_connected_is_stalled():
    v = Vitals(0, STALL, 0, sub)
    for t in range(0, STALL + 2000, 1000):
        why = v.verdict(t, True, 5)
    assert why.startswith("sender stalled: no PUBACK for 121 s with 5 records to send")


def test_the_link_down_is_a_known_reason_and_the_wait_starts_at_the_connect():
    v = Vitals(0, STALL, 0, sub)
    for t in range(0, 10 * STALL, 1000):
        assert v.verdict(t, False, 500) is None  # offline: the backlog waits, the board knows why
    t = 10 * STALL
    assert v.verdict(t, True, 500) is None  # connected now: the stall clock starts here
    v.sent_at = t + 200
    assert v.verdict(t + STALL, True, 499) is None


def test_nothing_to_send_is_not_a_stall():
    v = Vitals(0, STALL, 0, sub)
    for t in range(0, 3 * STALL, 1000):
        assert v.verdict(t, True, 0) is None


def test_a_sampler_that_stops_sampling_is_stalled():
    v = Vitals(0, STALL, 30000, sub)
    v.sampled_at = 1000
    assert v.verdict(1000 + STALL + 30000, True, 0) is None
    assert v.verdict(1001 + STALL + 30000, True, 0).startswith("sampler stalled: no sample for 150 s")


def test_memory_errors_that_go_on_for_a_quarter_of_stall_mean_a_reset_even_while_the_sender_works():
    v = Vitals(0, STALL, 0, sub)
    t = 1000
    while t < 1000 + QUARTER:
        v.memory_error(t)
        v.sent_at = t + 500  # health still gets out; the reads that failed are readings lost
        assert v.verdict(t + 600, True, 1) is None
        t += 3000
    v.memory_error(t)
    assert v.verdict(t, True, 0).startswith("out of memory: 11 MemoryErrors in 30 s")


def test_a_burst_of_memory_errors_that_ends_or_spread_out_ones_are_no_reset():
    v = Vitals(0, STALL, 0, sub)
    for k in range(20):  # 20 at once (a reconnect that needed more than there was), then quiet
        v.memory_error(1000 + k)
    for t in range(2000, 2000 + 2 * STALL, 1000):
        assert v.verdict(t, True, 0) is None
    v.memory_error(2000 + QUARTER + 10)  # after a quiet quarter: a new run, not the end of the old one
    assert v.oom[0] == 1
    w = Vitals(0, STALL, 0, sub)
    for k in range(2 * OOM_LIMIT):
        t = k * (QUARTER + 1000)  # one every 31 s: a run of them never reaches the limit
        w.memory_error(t)
        assert w.verdict(t, False, 0) is None


def test_lagging_when_the_queue_grows_for_the_whole_window():
    v = Vitals(0, STALL, 1000, sub)
    t = 0
    waiting = 10
    while t <= LAG_MS:
        v.sampled_at = t
        v.sent_at = t
        v.verdict(t, True, waiting)
        waiting += 1  # more come in than go out
        t += 1000
    assert v.lagging
    v.verdict(t, True, 0)  # drained
    assert not v.lagging


def test_an_outage_backlog_that_drains_is_not_lagging():
    v = Vitals(0, STALL, 1000, sub)
    for t in range(0, 2 * LAG_MS, 1000):
        v.verdict(t, False, 10 + t // 1000)  # offline: it grows
    waiting = 1200
    t = 2 * LAG_MS
    while t <= 3 * LAG_MS + 1000:
        v.sent_at = t
        v.verdict(t, True, waiting)
        waiting -= 1  # draining, slowly
        t += 1000
    assert not v.lagging
