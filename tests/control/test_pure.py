"""hub.control's pure parts: the command life cycle, limit checks, rules with a fake clock, schedules."""

from __future__ import annotations

import datetime as dt

import pytest

from hub.control import command as lc
from hub.control import limits, rules
from hub.control.limits import Last


def make(**kw: object) -> lc.Command:
    base: dict[str, object] = {"id": "c-1", "device": "t1", "actuator": "fan1", "value": 80.0, "transport": "mqtt",
                               "source": "api", "created_ms": 0, "expires_ms": 10_000, "retries": 2,
                               "ack_timeout_ms": 1000}
    base.update(kw)
    return lc.Command(**base)  # type: ignore[arg-type]


def test_applied_once_and_a_second_ack_is_refused() -> None:
    cmd = make()
    lc.step(cmd, "send", 0)
    lc.step(cmd, "applied", 120, value=80.0)
    assert (cmd.state, cmd.applied, cmd.latency_ms, cmd.attempts) == ("applied", 80.0, 120, 1)
    with pytest.raises(lc.TransitionError):
        lc.step(cmd, "rejected", 130, reason="again")
    assert cmd.state == "applied"


def test_hub_refusal_never_sends() -> None:
    cmd = make()
    lc.step(cmd, "reject", 0, reason="hub: 150 above max 100")
    assert cmd.final
    assert cmd.attempts == 0
    with pytest.raises(lc.TransitionError):
        lc.step(cmd, "send", 1)


def test_resends_then_times_out_after_expiry() -> None:
    cmd = make(expires_ms=5000)
    lc.step(cmd, "send", 0)
    assert lc.due(cmd, 999) is None
    assert lc.due(cmd, 1000) == lc.RESEND
    lc.step(cmd, "send", 1000)
    lc.step(cmd, "send", 2000)  # third attempt: retries used up
    assert lc.due(cmd, 3500) is None
    assert lc.due(cmd, 5999) is None  # the board may still apply it until exp; the hub waits one ack_timeout more
    assert lc.due(cmd, 6000) == lc.TIMEOUT
    assert lc.next_due_ms(cmd) == 6000
    lc.step(cmd, "timeout", 6000, reason="no ack")
    assert cmd.state == "timed_out"
    assert lc.due(cmd, 99_999) is None


def test_no_resend_past_expiry() -> None:
    cmd = make(expires_ms=1500)
    lc.step(cmd, "send", 0)
    assert lc.due(cmd, 1200) == lc.RESEND
    lc.step(cmd, "send", 1200)
    assert lc.due(cmd, 2300) is None
    assert lc.due(cmd, 2500) == lc.TIMEOUT


PWM = {"kind": "pwm", "min": 0, "max": 100, "failsafe": 20, "rate": 10}
RELAY = {"kind": "relay", "min": 0, "max": 1, "failsafe": 0, "min_on": 60, "min_off": 30}


@pytest.mark.parametrize(("spec", "value", "last", "now", "why"), [
    (PWM, 50, None, 0, None),
    (PWM, 150, None, 0, "150 above max 100"),
    (PWM, -1, None, 0, "-1 below min 0"),
    (PWM, 80, Last(20, 0), 3000, "change of 60 in 3.0 s exceeds rate 10/s"),
    (PWM, 80, Last(20, 0), 6000, None),
    (PWM, 20, Last(20, 0), 0, None),
    (RELAY, 0.5, None, 0, "0.5 is neither off (0) nor on (1) for a relay"),
    (RELAY, 0, Last(1, 0), 59_000, "min_on: on for 59.0 s, less than 60 s"),
    (RELAY, 0, Last(1, 0), 60_000, None),
    (RELAY, 1, Last(0, 0), 10_000, "min_off: off for 10.0 s, less than 30 s"),
    (RELAY, 1, Last(0, 0), 30_000, None),
])
def test_limits(spec: dict[str, object], value: float, last: Last | None, now: int, why: str | None) -> None:
    assert limits.check(spec, value, last, now) == why


@pytest.mark.parametrize("value", [True, "80", float("nan"), float("inf"), None, [80]])
def test_number_refuses_non_numbers(value: object) -> None:
    assert limits.number(value) is None


RULE = rules.Rule("co2fan", "t1", "air1", "co2", above=1000, below=800, hold_s=120, target_device="t1",
                  actuator="fan1", high_value=80, low_value=20)


def feed(st: rules.RuleState, samples: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for t, v in samples:
        r = rules.evaluate(RULE, st, v, t)
        if r is not None:
            out.append((t, r))
    return out


def test_rule_needs_the_hold_time_and_fires_once() -> None:
    st = rules.RuleState()
    assert feed(st, [(0, 1200), (60, 1300), (119, 1100)]) == []
    assert feed(st, [(120, 1100), (130, 1400), (500, 1500)]) == [(120, 80)]


def test_rule_hysteresis_both_ways() -> None:
    st = rules.RuleState()
    feed(st, [(0, 1200), (120, 1200)])
    assert st.state == rules.HIGH
    # inside the band (800..1000): nothing, however long
    assert feed(st, [(200, 900), (1000, 950), (2000, 810)]) == []
    # below 800 for the hold time: low
    assert feed(st, [(3000, 700), (3120, 750)]) == [(3120, 20)]
    # back into the band, then above 1000 only briefly: nothing
    assert feed(st, [(3200, 900), (3300, 1100), (3350, 950), (3400, 1100), (3500, 1100)]) == []
    assert feed(st, [(3520, 1100)]) == [(3520, 80)]


def test_rule_dip_into_band_restarts_the_hold() -> None:
    st = rules.RuleState()
    assert feed(st, [(0, 1200), (100, 900), (110, 1200), (200, 1200)]) == []
    assert feed(st, [(230, 1200)]) == [(230, 80)]


def test_schedule_due() -> None:
    s = [rules.Schedule("morning", "t1", "fan1", dt.time(7, 30), 60), rules.Schedule("night", "t1", "fan1",
                                                                                       dt.time(22, 0), 10)]
    d = dt.datetime(2026, 11, 24, 7, 29, 59)  # noqa: DTZ001 - schedules use naive local time
    assert [x.name for x in rules.schedule_due(s, d, d + dt.timedelta(seconds=1))] == ["morning"]
    assert rules.schedule_due(s, d + dt.timedelta(seconds=1), d + dt.timedelta(seconds=2)) == []
    late = dt.datetime(2026, 11, 24, 21, 59, 0)  # noqa: DTZ001
    assert [x.name for x in rules.schedule_due(s, late, late + dt.timedelta(hours=10))] == ["morning", "night"]
