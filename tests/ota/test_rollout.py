"""The roll-out state machine (hub.ota.rollout) and the selectors (hub.ota.selector), without I/O: waves, the
halt on a failure share, time-outs, pause/resume/abort, offline boards, and a round trip through as_dict
(what a hub restart reads back)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from hub.ota import rollout as ro
from hub.ota.selector import Facts, SelectorError, select

if TYPE_CHECKING:
    from collections.abc import Iterable

T0 = 1_800_000_000_000
FLEET = [f"aq-{i:02d}" for i in range(20)]


def everyone(_device: str) -> bool:
    return True


def offers(actions: Iterable[ro.Action], kind: str = "offer") -> list[str]:
    return [a.device for a in actions if a.kind == kind]


def events(actions: Iterable[ro.Action]) -> list[str]:
    return [a.what for a in actions if a.kind == "event"]


def new(devices: Iterable[str] = FLEET, **kw: object) -> ro.Rollout:
    return ro.Rollout.new("r1", "0.2.0", "fw", "all", devices, now_ms=T0, **kw)  # type: ignore[arg-type]


def finish(r: ro.Rollout, devices: Iterable[str], state: str = "healthy", at: int = T0 + 1000,
           reason: str = "") -> list[ro.Action]:
    out: list[ro.Action] = []
    for d in devices:
        out += r.report(d, state, at, reason=reason)
    return out


def test_waves_are_cumulative_shares_of_at_least_one_board() -> None:
    assert ro.plan_waves(20, [1, 10, 50, 100]) == [1, 2, 10, 20]
    assert ro.plan_waves(1000, [1, 10, 50, 100]) == [10, 100, 500, 1000]
    assert ro.plan_waves(3, [1, 10, 50, 100]) == [1, 2, 3]
    assert ro.plan_waves(1, [1, 10, 50, 100]) == [1]
    assert ro.plan_waves(7, [100]) == [7]


@pytest.mark.parametrize(("waves", "says"), [
    ([], "list of percentages"), ([10, 5, 100], "growing"), ([0, 100], "(0, 100]"), ([1, 50], "last wave"),
    ([1, float("nan"), 100], "list of percentages"), ([1, 150], "(0, 100]")])
def test_bad_waves_are_named(waves: list[float], says: str) -> None:
    with pytest.raises(ro.RolloutError, match=r"^waves: ") as err:
        new(percents=waves)
    assert says in str(err.value)
    assert err.value.status == 400


def test_no_boards_and_bad_share_are_refused() -> None:
    with pytest.raises(ro.RolloutError, match="matches no provisioned board") as err:
        new([])
    assert err.value.status == 422
    with pytest.raises(ro.RolloutError, match="max_failures"):
        new(max_failures=1.5)


def test_order_is_fixed_by_the_id_and_not_alphabetical() -> None:
    assert ro.order("r1", FLEET) == ro.order("r1", reversed(FLEET))
    assert ro.order("r1", FLEET) != ro.order("r2", FLEET)
    assert ro.order("r1", FLEET) != sorted(FLEET)


def test_a_rollout_goes_wave_by_wave_to_every_board() -> None:
    r = new()
    actions = r.start(T0, everyone)
    assert events(actions) == ["start", "wave"]
    first = offers(actions)
    assert first == r.devices[:1]
    assert r.boards[first[0]].state == ro.OFFERED
    assert offers(r.tick(T0 + 10, everyone)) == []  # nothing new until the wave ends
    assert r.report(first[0], "downloading", T0 + 20, done=100, total=1000) == []
    assert r.detail()["boards"][first[0]] == {"state": "downloading", "wave": 1, "since": T0 + 20, "done": 100,
                                              "total": 1000}
    finish(r, first)
    actions = r.tick(T0 + 2000, everyone)
    assert events(actions) == ["wave"]
    assert offers(actions) == r.devices[1:2]
    finish(r, r.devices[1:2], "current")
    actions = r.tick(T0 + 3000, everyone)
    assert offers(actions) == r.devices[2:10]
    finish(r, r.devices[2:10])
    assert offers(r.tick(T0 + 4000, everyone)) == r.devices[10:]
    finish(r, r.devices[10:])
    actions = r.tick(T0 + 5000, everyone)
    assert events(actions) == ["done"]
    assert r.state == ro.DONE
    counts = r.counts()
    assert counts["targeted"] == 20
    assert counts["succeeded"] == 20
    assert counts["current"] == 1
    assert counts["failed"] == 0
    assert [e["event"] for e in r.events] == ["start", "wave", "wave", "wave", "wave", "done"]


def test_a_rollback_in_the_first_wave_halts_and_leaves_the_rest_untouched() -> None:
    r = new()
    first = offers(r.start(T0, everyone))
    actions = finish(r, first, "rolledback", reason="raised at start-up: ValueError: boom")
    assert events(actions) == ["halt"]
    assert r.state == ro.HALTED
    assert r.reason == "wave 1: 1 of 1 boards failed, more than 10%"
    assert r.boards[first[0]].reason == "raised at start-up: ValueError: boom"
    assert offers(r.tick(T0 + 99_000_000, everyone)) == []
    assert r.counts()["waiting"] == 19
    with pytest.raises(ro.RolloutError, match="halted: only a paused one can be resumed"):
        r.resume(T0, "api:control", everyone)


def test_the_halt_comes_as_soon_as_the_share_is_passed_and_cancels_downloads() -> None:
    r = new(max_failures=0.25)
    first = offers(r.start(T0, everyone))
    finish(r, first)
    second = offers(r.tick(T0, everyone))
    assert len(second) == 1
    finish(r, second)
    third = offers(r.tick(T0, everyone))
    assert len(third) == 8
    r.report(third[0], "downloading", T0, done=1, total=10)
    r.report(third[1], "installed", T0)
    assert events(finish(r, third[2:4], "refused", reason="hash mismatch")) == []  # 2 of 8: not above 25 %
    actions = r.report(third[4], "rolledback", T0, reason="not healthy within 300 s")
    assert events(actions) == ["halt"]
    cancelled = offers(actions, "cancel")
    assert third[0] in cancelled
    assert third[1] not in cancelled  # installed: in its trial already, the board decides
    assert set(cancelled) == {third[0], *third[5:]}
    assert r.boards[third[0]].state == ro.CANCELLED
    assert r.counts()["waiting"] == 10


def test_a_board_without_a_final_state_times_out_and_counts_as_failed() -> None:
    r = new(board_timeout=600)
    first = offers(r.start(T0, everyone))
    assert r.tick(T0 + 599_999, everyone) == []
    actions = r.tick(T0 + 600_000, everyone)
    assert offers(actions, "cancel") == first
    assert events(actions) == ["halt"]
    assert r.boards[first[0]].state == ro.TIMEDOUT
    # the board's real outcome, late, replaces the guess (the halt stands)
    r.report(first[0], "healthy", T0 + 700_000)
    assert r.boards[first[0]].state == ro.HEALTHY
    assert r.state == ro.HALTED


def test_reports_that_change_nothing() -> None:
    r = new()
    first = offers(r.start(T0, everyone))[0]
    waiting = r.devices[5]
    assert r.report(waiting, "healthy", T0) == []
    assert r.boards[waiting].state == ro.WAITING
    assert r.report("stranger", "healthy", T0) == []
    assert r.report(first, "bogus", T0) == []
    r.report(first, "installed", T0)
    r.report(first, "downloading", T0)  # late progress
    assert r.boards[first].state == ro.INSTALLED
    r.report(first, "healthy", T0)
    r.report(first, "rolledback", T0)
    assert r.boards[first].state == ro.HEALTHY


def test_pause_holds_the_next_wave_and_resume_goes_on() -> None:
    r = new()
    first = offers(r.start(T0, everyone))
    assert events(r.pause(T0, "api:control")) == ["pause"]
    with pytest.raises(ro.RolloutError, match="only a running one can be paused"):
        r.pause(T0, "api:control")
    finish(r, first)  # boards already offered carry on
    assert r.tick(T0 + 10, everyone) == []
    actions = r.resume(T0 + 20, "api:control", everyone)
    assert events(actions) == ["resume", "wave"]
    assert offers(actions) == r.devices[1:2]
    assert r.events[-2]["by"] == "api:control"


def test_a_paused_rollout_still_halts() -> None:
    r = new()
    first = offers(r.start(T0, everyone))
    r.pause(T0, "x")
    assert events(finish(r, first, "refused", reason="no command key")) == ["halt"]
    assert r.state == ro.HALTED


def test_abort_cancels_what_is_not_installed() -> None:
    r = new(percents=[100])
    targets = offers(r.start(T0, everyone))
    assert len(targets) == 20
    r.report(targets[0], "installed", T0)
    r.report(targets[1], "healthy", T0)
    actions = r.abort(T0 + 5, "cli:control")
    assert events(actions) == ["abort"]
    assert set(offers(actions, "cancel")) == set(targets[2:])
    assert r.state == ro.ABORTED
    assert r.reason == "aborted by cli:control"
    with pytest.raises(ro.RolloutError, match="already aborted"):
        r.abort(T0, "x")
    assert r.tick(T0 + 10**9, everyone) == []  # the installed board times out: no cancel reaches its trial
    assert r.boards[targets[0]].state == ro.TIMEDOUT


def test_offline_boards_are_offered_when_they_come_back() -> None:
    online = dict.fromkeys(FLEET, True)
    r = new(percents=[50, 100])
    first_half = r.devices[:10]
    for d in first_half[:3]:
        online[d] = False
    actions = r.start(T0, online.__getitem__)
    assert offers(actions) == first_half[3:]
    assert r.counts()["offline"] == 3
    finish(r, first_half[3:])
    actions = r.tick(T0 + 10, online.__getitem__)  # the wave ended without its offline boards
    assert offers(actions) == r.devices[10:]
    online[first_half[0]] = True
    assert offers(r.tick(T0 + 20, online.__getitem__)) == [first_half[0]]
    finish(r, [*r.devices[10:], first_half[0]])
    actions = r.tick(T0 + 30, online.__getitem__)
    assert events(actions) == ["done"]
    assert r.events[-1]["detail"] == "18 succeeded, 0 failed, 2 offline"
    online[first_half[1]] = True  # a straggler after the end is still offered
    assert offers(r.tick(T0 + 40, online.__getitem__)) == [first_half[1]]


def test_a_wave_of_offline_boards_waits_for_one() -> None:
    r = new()
    first = r.devices[0]
    online = dict.fromkeys(FLEET, True)
    online[first] = False
    actions = r.start(T0, online.__getitem__)
    assert offers(actions) == []
    assert r.tick(T0 + 1000, online.__getitem__) == []
    online[first] = True
    assert offers(r.tick(T0 + 2000, online.__getitem__)) == [first]


def test_a_board_that_reconnects_gets_its_offer_again() -> None:
    online = dict.fromkeys(FLEET, True)
    r = new()
    first = offers(r.start(T0, online.__getitem__))[0]
    online[first] = False
    assert r.tick(T0 + 1, online.__getitem__) == []
    online[first] = True
    assert offers(r.tick(T0 + 2, online.__getitem__)) == [first]
    assert r.boards[first].offers == 2
    r.report(first, "downloading", T0 + 3, done=1, total=9)
    online[first] = False
    r.tick(T0 + 4, online.__getitem__)
    online[first] = True
    assert r.tick(T0 + 5, online.__getitem__) == []  # it has the offer on flash and resumes by itself


def test_as_dict_round_trip_goes_on_where_it_stopped() -> None:
    r = new()
    first = offers(r.start(T0, everyone))
    finish(r, first)
    r.tick(T0 + 10, everyone)
    r.pause(T0 + 20, "api:control")
    again = ro.Rollout.from_dict(json.loads(json.dumps(r.as_dict())))
    assert again.detail() == r.detail()
    actions = again.resume(T0 + 30, "api:control", everyone)
    assert events(actions) == ["resume"]
    finish(again, again.devices[1:2])
    assert offers(again.tick(T0 + 40, everyone)) == again.devices[2:10]


def test_from_dict_refuses_what_does_not_add_up() -> None:
    doc = new().as_dict()
    with pytest.raises(ValueError, match="format"):
        ro.Rollout.from_dict(doc | {"format": 9})
    with pytest.raises(ValueError, match="add up"):
        ro.Rollout.from_dict(doc | {"state": "sleeping"})
    with pytest.raises(KeyError):
        ro.Rollout.from_dict({k: v for k, v in doc.items() if k != "boards"})


# ------------------------------------------------------------------------------------------------ selectors

BOARDS = {
    "aq-01": Facts("north", "0.1.0"), "aq-02": Facts("south", "0.1.0"), "aq-03": Facts("north", "0.2.0"),
    "wm-01": Facts("north", "0.1.0"), "wm-02": Facts(None, None),
}


@pytest.mark.parametrize(("selector", "chosen"), [
    ("all", ["aq-01", "aq-02", "aq-03", "wm-01", "wm-02"]),
    ("district:north", ["aq-01", "aq-03", "wm-01"]),
    ("district:north,district:south", ["aq-01", "aq-02", "aq-03", "wm-01"]),
    ("prefix:aq-", ["aq-01", "aq-02", "aq-03"]),
    ("district:north,prefix:aq-", ["aq-01", "aq-03"]),
    ("version:0.1.0", ["aq-01", "aq-02", "wm-01"]),
    ("prefix:aq-,version:0.1.0,district:north", ["aq-01"]),
    ("devices:aq-02,wm-02", ["aq-02", "wm-02"]),
    ("devices:aq-02,wm-02,district:south", ["aq-02"]),
    ("prefix:zz", []),
])
def test_selectors(selector: str, chosen: list[str]) -> None:
    assert select(selector, BOARDS) == chosen


@pytest.mark.parametrize(("selector", "says"), [
    ("", "empty"), ("site:x", "unknown"), ("district:", "needs a value"), ("devices:aq-09", "not a provisioned"),
    ("district:no rth", "district"), ("all,bogus", "unknown"), ("prefix:aq-,", "unknown")])
def test_bad_selectors_are_named(selector: str, says: str) -> None:
    with pytest.raises(SelectorError, match="selector") as err:
        select(selector, BOARDS)
    assert says in str(err.value)
