"""Each detector of hub.detect.engine fires on a crafted stream and clears when the condition is over.

A stream is a function of time giving one message's readings; `Feed` sends it every `every` seconds through
`Detectors.sample` and calls `tick` every 10 s of simulated time, keeping every Event. Times start on a
Monday 00:00 UTC (05:00 in Astana, the default UTC offset).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import pytest

from hub.detect import events as ev
from hub.detect.config import DetectConfig
from hub.detect.defaults import COUNTER_QUANTITIES, DEFAULTS, limits
from hub.detect.engine import Detectors
from protocols import catalogue

if TYPE_CHECKING:
    from collections.abc import Callable

T0 = 1_767_571_200_000
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000

Readings = list[tuple[str, float, str]]


def r(quantity: str, value: float) -> tuple[str, float, str]:
    return (quantity, value, catalogue.check(quantity, value))


class Feed:
    def __init__(self, config: DetectConfig | None = None) -> None:
        self.det = Detectors(config or DetectConfig())
        self.now = T0
        self.events: list[tuple[int, ev.Event]] = []
        self._next_tick = T0

    def run(self, ms: int, streams: dict[str, Callable[[int], Readings | None]], every: int = MIN,
            skew: Callable[[str, int], int] | None = None, gap: Callable[[str, int], bool] | None = None) -> None:
        """Each stream (device -> readings at t, None: no message) sends every `every` ms for `ms` ms."""
        end = self.now + ms
        while self.now < end:
            for device, fn in streams.items():
                readings = fn(self.now)
                if readings is not None:
                    ts = self.now + (skew(device, self.now) if skew else 0)
                    self.det.sample(device, "s1", ts, readings, self.now, bool(gap and gap(device, self.now)))
            step_end = self.now + every
            while self._next_tick <= step_end:
                for e in self.det.tick(self._next_tick):
                    self.events.append((self._next_tick, e))
                self._next_tick += 10_000
            self.now = step_end

    def of(self, kind: str, state: str | None = None) -> list[tuple[int, ev.Event]]:
        return [(t, e) for t, e in self.events if e.kind == kind and (state is None or e.state == state)]


def wobble(base: float, swing: float, period_min: float = 37) -> Callable[[int], float]:
    return lambda t: round(base + swing * math.sin(t / (period_min * MIN) * 2 * math.pi), 1)


def test_flatline_fires_after_the_allowed_time_and_clears_when_it_moves() -> None:
    feed = Feed()
    pm = wobble(12, 3)
    feed.run(HOUR, {"a": lambda t: [r("pm25", pm(t))]})
    feed.run(3 * HOUR, {"a": lambda _t: [r("pm25", 12.0)]})
    fired = feed.of(ev.FLATLINE, ev.FIRE)
    assert len(fired) == 1
    t, e = fired[0]
    assert (e.device, e.quantity, e.severity) == ("a", "pm25", ev.WARNING)
    assert 2 * HOUR <= t - (T0 + HOUR) <= 2 * HOUR + 2 * MIN
    assert "stuck at 12" in e.message
    assert e.evidence["allowed_s"] == 7200
    feed.run(HOUR, {"a": lambda t: [r("pm25", pm(t))]})
    assert len(feed.of(ev.FLATLINE, ev.CLEAR)) == 1


def test_a_zero_flow_may_last_but_a_stuck_counter_is_not_a_flatline() -> None:
    feed = Feed()
    feed.run(14 * HOUR, {"w": lambda _t: [r("water_flow", 0.0), r("water_volume", 10.0)]})
    assert feed.of(ev.FLATLINE) == []


def test_spike_fires_at_once_is_not_averaged_and_clears() -> None:
    feed = Feed()
    temp = wobble(5, 1)
    feed.run(30 * MIN, {"a": lambda t: [r("temperature", temp(t))]})
    feed.run(2 * MIN, {"a": lambda t: [r("temperature", temp(t) + 30)]})
    feed.run(30 * MIN, {"a": lambda t: [r("temperature", temp(t))]})
    fired = feed.of(ev.SPIKE, ev.FIRE)
    assert len(fired) == 1
    assert fired[0][1].evidence["allowed"] == 10
    cleared = feed.of(ev.SPIKE, ev.CLEAR)
    assert len(cleared) == 1
    assert cleared[0][0] - fired[0][0] <= 12 * MIN


def test_a_slow_change_is_not_a_spike_and_a_level_shift_clears() -> None:
    feed = Feed()
    feed.run(HOUR, {"a": lambda t: [r("temperature", round(-10 + (t - T0) / HOUR * 5, 2))]})
    assert feed.of(ev.SPIKE) == []
    feed.run(30 * MIN, {"a": lambda _t: [r("temperature", 30.0)]})
    assert [e.state for _, e in feed.of(ev.SPIKE)] == [ev.FIRE, ev.CLEAR]


def test_out_of_range_fires_on_quality_range_and_clears_ten_minutes_after() -> None:
    feed = Feed()
    feed.run(10 * MIN, {"a": lambda _t: [r("humidity", 50.0)]})
    feed.run(5 * MIN, {"a": lambda _t: [r("humidity", 120.0)]})
    feed.run(20 * MIN, {"a": lambda _t: [r("humidity", 50.5)]})
    fired = feed.of(ev.OUT_OF_RANGE, ev.FIRE)
    assert len(fired) == 1
    assert fired[0][1].evidence == {"value": 120.0, "lo": 0, "hi": 100}
    assert len(feed.of(ev.OUT_OF_RANGE, ev.CLEAR)) == 1


def test_drift_against_the_group_median() -> None:
    feed = Feed()
    feed.det.set_groups({"a": "g1", "b": "g1", "c": "g1", "lone": ""})
    temp = wobble(-5, 2, 300)
    streams = {d: (lambda t, off=off: [r("temperature", round(temp(t) + off, 2))])
               for d, off in (("a", 0.1), ("b", -0.1), ("c", 0.0), ("lone", 9.0))}
    feed.run(3 * HOUR, streams)
    assert feed.of(ev.DRIFT) == []
    streams["c"] = lambda t: [r("temperature", round(temp(t) + 3, 2))]
    feed.run(4 * HOUR, streams)
    fired = feed.of(ev.DRIFT, ev.FIRE)
    assert [(e.device, e.quantity) for _, e in fired] == [("c", "temperature")]
    assert fired[0][1].evidence["group"] == "g1"
    streams["c"] = lambda t: [r("temperature", round(temp(t), 2))]
    feed.run(4 * HOUR, streams)
    assert [e.device for _, e in feed.of(ev.DRIFT, ev.CLEAR)] == ["c"]


def test_drift_of_a_pair_names_both() -> None:
    feed = Feed()
    feed.det.set_groups({"a": "g1", "b": "g1"})
    co2 = wobble(450, 30, 300)
    feed.run(5 * HOUR, {"a": lambda t: [r("co2", co2(t))], "b": lambda t: [r("co2", co2(t) + 300)]})
    fired = feed.of(ev.DRIFT, ev.FIRE)
    assert len(fired) == 1
    e = fired[0][1]
    assert (e.device, e.evidence["pair"]) == ("a", "b")
    assert "a and b differ" in e.message


def test_silent_after_its_learned_interval_and_clears_when_it_sends() -> None:
    feed = Feed()
    feed.run(HOUR, {"a": lambda _t: [r("co2", 500.0)], "b": lambda _t: [r("co2", 500.0)]})
    feed.run(20 * MIN, {"a": lambda _t: None, "b": lambda _t: [r("co2", 500.0)]})
    fired = feed.of(ev.SILENT, ev.FIRE)
    assert [e.device for _, e in fired] == ["a"]
    assert 5 * MIN <= fired[0][0] - (T0 + HOUR - MIN) <= 5 * MIN + 10_000  # the last message: a minute before
    feed.run(5 * MIN, {"a": lambda _t: [r("co2", 500.0)]})
    assert [e.device for _, e in feed.of(ev.SILENT, ev.CLEAR)] == ["a"]


def test_clock_ahead_fires_at_once() -> None:
    feed = Feed()
    feed.run(30 * MIN, {"a": lambda _t: [r("co2", 500.0)]})
    feed.run(30 * MIN, {"a": lambda _t: [r("co2", 500.0)]}, skew=lambda _d, _t: 10 * MIN)
    fired = feed.of(ev.CLOCK, ev.FIRE)
    assert len(fired) == 1
    assert fired[0][1].evidence["offset_s"] == 600
    feed.run(HOUR, {"a": lambda _t: [r("co2", 500.0)]})
    assert len(feed.of(ev.CLOCK, ev.CLEAR)) == 1


def test_clock_behind_on_a_live_board_fires_but_a_backlog_does_not() -> None:
    feed = Feed()
    feed.run(HOUR, {"late": lambda _t: [r("co2", 500.0)]}, skew=lambda _d, _t: -10 * MIN)
    assert len(feed.of(ev.CLOCK, ev.FIRE)) == 1
    feed = Feed()
    feed.run(HOUR, {"b": lambda _t: [r("co2", 500.0)]})
    # a two-hour outage, then the board's buffer (old timestamps) at 20 messages a second, then live again
    for k in range(120):
        feed.det.sample("b", "s1", feed.now - 2 * HOUR + k * MIN, [r("co2", 500.0)], feed.now + k * 50, gap=False)
    feed.run(HOUR, {"b": lambda _t: [r("co2", 500.0)]})
    assert feed.of(ev.CLOCK) == []


def test_seq_gaps_above_the_rate() -> None:
    feed = Feed()
    feed.run(HOUR, {"a": lambda _t: [r("co2", 500.0)]}, gap=lambda _d, t: (t // MIN) % 5 == 0)
    fired = feed.of(ev.SEQ_GAPS, ev.FIRE)
    assert len(fired) == 1
    assert fired[0][1].evidence["rate"] > 0.05
    feed.run(2 * HOUR, {"a": lambda _t: [r("co2", 500.0)]})
    assert len(feed.of(ev.SEQ_GAPS, ev.CLEAR)) == 1


def test_a_few_gaps_are_not_seq_gaps() -> None:
    feed = Feed()
    feed.run(3 * HOUR, {"a": lambda _t: [r("co2", 500.0)]}, gap=lambda _d, t: (t // MIN) % 45 == 0)
    assert feed.of(ev.SEQ_GAPS) == []


def local_hour(t: int) -> float:
    return ((t + 5 * HOUR) % DAY) / HOUR


def water(extra: float) -> Callable[[int], Readings]:
    state = {"v": 100.0, "t": T0}

    def fn(t: int) -> Readings:
        h = local_hour(t)
        flow = (0.0 if 1 <= h < 5 else 0.8 + 0.3 * math.sin(t / 7e5)) + extra
        state["v"] += flow * (t - state["t"]) / HOUR
        state["t"] = t
        return [r("water_flow", round(flow, 3)), r("water_volume", round(state["v"], 3))]
    return fn


def test_leak_a_night_flow_that_never_drops() -> None:
    feed = Feed()
    feed.run(4 * DAY, {"w": water(0.0)}, every=5 * MIN)
    assert feed.of(ev.LEAK) == []
    feed.run(DAY, {"w": water(0.2)}, every=5 * MIN)
    fired = feed.of(ev.LEAK, ev.FIRE)
    assert len(fired) == 1
    assert local_hour(fired[0][0]) == pytest.approx(5, abs=0.1)
    assert fired[0][1].severity == ev.CRITICAL
    assert fired[0][1].evidence["night_min"] == pytest.approx(0.2)
    feed.run(DAY, {"w": water(0.0)}, every=5 * MIN)
    assert len(feed.of(ev.LEAK, ev.CLEAR)) == 1


def energy(rate: Callable[[int], float], start: float = 1000.0) -> tuple[Callable[[int], Readings], dict[str, float]]:
    state = {"v": start, "t": float(T0), "stop": 0.0}

    def fn(t: int) -> Readings:
        if not state["stop"]:
            state["v"] += rate(t) * (t - state["t"]) / HOUR
        state["t"] = t
        return [r("power_active", rate(t) * 1000), r("energy_import", round(state["v"], 2))]
    return fn, state


def test_counter_stopped_in_hours_it_always_moves_and_clears() -> None:
    feed = Feed()
    fn, state = energy(lambda t: 5 + 3 * math.sin(t / 5e6))
    feed.run(5 * DAY, {"e": fn}, every=5 * MIN)  # to Saturday: weekend hours fall back on weekday ones
    assert feed.of(ev.COUNTER_STOPPED) == []
    state["stop"] = 1
    feed.run(4 * HOUR, {"e": fn}, every=5 * MIN)
    fired = feed.of(ev.COUNTER_STOPPED, ev.FIRE)
    assert len(fired) == 1
    assert fired[0][1].quantity == "energy_import"
    assert feed.of(ev.CONSUMPTION) == []  # a stop is counter_stopped's matter
    state["stop"] = 0
    feed.run(HOUR, {"e": fn}, every=5 * MIN)
    assert len(feed.of(ev.COUNTER_STOPPED, ev.CLEAR)) == 1


def test_counter_backwards_at_once() -> None:
    feed = Feed()
    fn, state = energy(lambda _t: 5.0)
    feed.run(HOUR, {"e": fn}, every=5 * MIN)
    state["v"] -= 500
    feed.run(HOUR, {"e": fn}, every=5 * MIN)
    fired = feed.of(ev.COUNTER_BACKWARDS, ev.FIRE)
    assert len(fired) == 1
    assert fired[0][1].evidence["step"] < -499
    assert len(feed.of(ev.COUNTER_BACKWARDS, ev.CLEAR)) == 1


def test_consumption_far_from_the_same_hours_usual() -> None:
    feed = Feed()
    surge = {"k": 1.0}
    fn, _ = energy(lambda t: surge["k"] * (4 + 2 * math.sin((t % DAY) / DAY * 2 * math.pi)))
    feed.run(4 * DAY, {"e": fn}, every=5 * MIN)  # Monday to Thursday: weekday hours learnt
    assert feed.of(ev.CONSUMPTION) == []
    surge["k"] = 4.0
    feed.run(4 * HOUR, {"e": fn}, every=5 * MIN)
    fired = feed.of(ev.CONSUMPTION, ev.FIRE)
    assert len(fired) == 1
    assert fired[0][1].evidence["z"] > 5
    assert "far more" in fired[0][1].message
    surge["k"] = 1.0
    feed.run(4 * HOUR, {"e": fn}, every=5 * MIN)
    assert len(feed.of(ev.CONSUMPTION, ev.CLEAR)) == 1


def test_aqi_forecast_fires_before_the_threshold_is_crossed() -> None:
    feed = Feed()
    feed.run(2 * HOUR, {"a": lambda _t: [r("pm25", 10.0 + (_t // MIN) % 3)]})
    start = feed.now

    def rising(t: int) -> Readings:
        return [r("pm25", round(10 + 20 * (t - start) / HOUR, 1))]
    feed.run(2 * HOUR, {"a": rising})
    fired = feed.of(ev.AQI_FORECAST, ev.FIRE)
    assert fired
    crossing = start + int((35.5 - 10) / 20 * HOUR)  # pm25 35.5 is AQI 101
    assert crossing - HOUR <= fired[0][0] < crossing
    assert fired[0][1].evidence["forecast_aqi"] > 100
    feed.run(2 * HOUR, {"a": lambda _t: [r("pm25", 10.0 + (_t // MIN) % 3)]})
    assert len(feed.of(ev.AQI_FORECAST, ev.CLEAR)) == 1


def test_steady_air_raises_nothing() -> None:
    feed = Feed()
    feed.det.set_groups({"a": "g", "b": "g", "c": "g"})
    pm, t = wobble(15, 5, 90), wobble(-3, 2, 300)
    feed.run(DAY, {d: (lambda x: [r("pm25", pm(x)), r("temperature", t(x)), r("humidity", 60.0 + (x // MIN) % 4)])
                   for d in "abc"})
    assert feed.events == []


def test_switched_off_detectors_and_a_disabled_engine_say_nothing() -> None:
    feed = Feed(DetectConfig(off=frozenset({ev.SPIKE})))
    feed.run(10 * MIN, {"a": lambda _t: [r("temperature", 5.0)]})
    feed.run(MIN, {"a": lambda _t: [r("temperature", 50.0)]})
    assert feed.of(ev.SPIKE) == []
    det = Detectors(DetectConfig(enabled=False))
    assert det.enabled is False
    assert det.tick(T0) == []


def test_devices_beyond_the_bound_are_not_watched(caplog: pytest.LogCaptureFixture) -> None:
    feed = Feed(DetectConfig(max_devices=2))
    feed.run(10 * MIN, {d: (lambda _t: [r("co2", 500.0)]) for d in "abc"})
    feed.run(20 * MIN, {"a": lambda _t: [r("co2", 500.0)]})
    assert sorted(e.device for _, e in feed.of(ev.SILENT, ev.FIRE)) == ["b"]
    assert "device bound reached" in caplog.text


def test_defaults_cover_the_catalogue() -> None:
    table = limits()
    assert set(table) == set(catalogue.QUANTITIES)
    assert set(DEFAULTS) <= set(catalogue.QUANTITIES)
    for q in COUNTER_QUANTITIES:
        assert q in catalogue.COUNTERS
        assert table[q].flatline_s is None
    assert table["pm25"].spike_step == 300
    changed = limits({"pm25": {"spike_step": 50.0}})
    assert changed["pm25"] == dataclasses.replace(DEFAULTS["pm25"], spike_step=50.0)
    assert changed["pm10"] == DEFAULTS["pm10"]


def test_overrides_reach_the_detectors() -> None:
    feed = Feed(DetectConfig(quantities=limits({"co2": {"flatline_s": 600.0}})))
    feed.run(30 * MIN, {"a": lambda _t: [r("co2", 500.0)]})
    assert len(feed.of(ev.FLATLINE, ev.FIRE)) == 1


def test_settle_s_sets_how_long_a_spike_and_an_out_of_range_last() -> None:
    feed = Feed(DetectConfig(settle_s=60.0))
    feed.run(10 * MIN, {"a": lambda _t: [r("temperature", 5.0 + (_t // MIN) % 2 / 10)]})
    feed.run(MIN, {"a": lambda _t: [r("temperature", 45.0), r("humidity", 130.0)]})
    feed.run(5 * MIN, {"a": lambda _t: [r("temperature", 5.0 + (_t // MIN) % 2 / 10), r("humidity", 50.0)]})
    for kind in (ev.SPIKE, ev.OUT_OF_RANGE):
        (fired, _), (cleared, _) = feed.of(kind, ev.FIRE)[0], feed.of(kind, ev.CLEAR)[0]
        assert cleared - fired <= 3 * MIN, kind
