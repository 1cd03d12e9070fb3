"""Pure rule evaluation: a threshold on a reading drives an actuator, with hysteresis and a hold time;
and daily schedules. No I/O and no clock of its own: the service feeds readings and the time.

A rule has two thresholds, `above` > `below`. A reading above `above` that stays above for `hold_s`
seconds moves the rule to `high` and asks for `high_value`; a reading below `below` held for `hold_s`
moves it to `low` and asks for `low_value`. A reading between the two (the hysteresis band) keeps the
current state and cancels a pending change, so a value wobbling around one threshold never toggles the
actuator. A rule asks for its value once per change of state (not per reading).

A schedule sets an actuator to a value every day at a local time `HH:MM`; `schedule_due` lists the
schedules whose time fell in (previous, now], so a hub that was busy for a while does not miss one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

HIGH = "high"
LOW = "low"


@dataclass(frozen=True)
class Rule:
    name: str
    device: str
    """The reading's device, sensor and quantity."""
    sensor: str
    quantity: str
    above: float
    below: float
    hold_s: float
    target_device: str
    actuator: str
    high_value: float
    low_value: float


@dataclass
class RuleState:
    state: str | None = None
    """HIGH, LOW or None (not decided yet)."""
    candidate: str | None = None
    since: float = 0.0


def evaluate(rule: Rule, st: RuleState, value: float, now_s: float) -> float | None:
    """Feed one reading at now_s (seconds, any monotonic origin); the setpoint to send, or None."""
    if value > rule.above:
        want = HIGH
    elif value < rule.below:
        want = LOW
    else:
        st.candidate = None  # inside the band: keep the state, forget a pending change
        return None
    if want == st.state:
        st.candidate = None
        return None
    if st.candidate != want:
        st.candidate = want
        st.since = now_s
    if now_s - st.since < rule.hold_s:
        return None
    st.state = want
    st.candidate = None
    return rule.high_value if want == HIGH else rule.low_value


@dataclass(frozen=True)
class Schedule:
    name: str
    device: str
    actuator: str
    at: dt.time
    value: float
    retry_every: float = 60.0
    """Seconds between attempts while the schedule's command has not been applied."""
    retry_window: float = 900.0
    """Seconds after `at` during which a command that was not applied is tried again."""


def schedule_due(schedules: list[Schedule], previous: dt.datetime, now: dt.datetime) -> list[Schedule]:
    """The schedules whose daily time lies in (previous, now] (local naive datetimes)."""
    out = []
    for s in schedules:
        day = previous.date()
        while day <= now.date():
            t = dt.datetime.combine(day, s.at)
            if previous < t <= now:
                out.append(s)
                break
            day += dt.timedelta(days=1)
    return out
