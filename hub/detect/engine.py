"""The detectors in the hub's stream: `Detectors.sample` per telemetry message, `Detectors.tick` to evaluate.

The ingest (hub.ingest.process) calls `sample(device, sensor, ts_ms, readings, now_ms, gap)` for every
accepted telemetry message: the hot path. Per message it costs one dict lookup (device -> the stream of its
last message) and a few comparisons; per reading one dict lookup, one subtraction, two or three comparisons
and a store. With thousands of boards each one's state is long gone from the caches when its next message
comes, so what a message touches is laid out to take few cache lines: no device object, the stream's and each
series' hot slots side by side, the step limits shared floats (docs/performance.md). A reading whose step
is larger than its quantity allows, a counter that went backwards, a reading of quality `range` or a board
clock ahead of the hub's leave the hot path for a rare one. Everything else is judged in `tick(now_ms)` (every
`detect.interval` seconds), on state the hot path leaves per series: its last value. Each tick notes when
that value changed and adds it to a sum (sample and hold: a time-weighted mean) that tick rolls every 5
minutes into a ring of twelve 5-minute means. A value that changes and comes back between two ticks is not
seen as a change: harmless for conditions that last hours.

Detectors (docs/detect.md says more, with the defaults of hub.detect.defaults):
- flatline: a value unchanged longer than its quantity allows (a zero flow or power may last);
- spike: a step larger than physics allows; the value is not believed (not averaged) until it comes back
  or stays for `settle_s` (10 minutes: then it is a level shift); the spike clears `settle_s` after it began;
- out_of_range: readings of quality `range` (protocols.catalogue.check); clears `settle_s` after the last;
- drift: hourly means of co-located boards (`set_groups`) of one quantity: with 3 or more, each against the
  group median; with 2, the pair (the event names the first and, in its evidence, the other);
- silent: no message for silent_factor x the board's learned interval (at least silent_min_s);
- clock: a timestamp ahead of the hub clock by more than clock_bound_s, or a live board (timestamps
  advancing at the hub's pace, which a backlog replay does not) whose smallest lag over clock_window_s is
  beyond the bound;
- seq_gaps: sequence gaps per message over the last hour above seq_gap_rate;
- leak: a water or heat flow whose minimum of 5-minute means over the night hours (local time) stays above
  its usual night minimum (median of past nights) by max(leak_min, 30 %);
- counter_stopped / counter_backwards / consumption: meter counters; hourly increments feed a baseline per
  hour of the day (weekday or weekend: median and MAD of the last 10 such hours); an hour far from it
  (robust z > consumption_k, two hours running) is unusual consumption; a counter still for counter_stop_h
  hours that its baseline says always move (never a zero hour among them) has stopped;
- aqi_forecast: pm25's 5-minute means of the last hour, a straight line fitted, extrapolated an hour ahead:
  the US EPA AQI (protocols.aqi) of that forecast above aqi_threshold while it is still below.
Every condition fires once (FIRE), may fire again with new evidence, and clears (CLEAR) with hysteresis.

Bounded state: per device at most MAX_SERIES series (quantity x sensor), each a few hundred bytes (a meter
counter's baseline 48 x 10 floats, 2 KB); at most `max_devices` devices (default 100,000). The clock is the
hub's (`now_ms`) for silence, clock and windows; a board's timestamps for the evidence in its readings.

Imports hub.detect (events, defaults, config, the Limits) and protocols (catalogue, aqi); knows nothing of
MQTT, InfluxDB, alerts or asyncio. Not thread-safe: the hub's loop owns it.
"""

from __future__ import annotations

import logging
import math
from array import array
from typing import TYPE_CHECKING

from hub.detect import events as ev
from hub.detect.defaults import COUNTER_QUANTITIES, Limits
from protocols import aqi, catalogue

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from hub.detect.config import DetectConfig

log = logging.getLogger(__name__)

OK = catalogue.OK
RANGE = catalogue.RANGE
INF = math.inf
NAN = math.nan

MAX_SERIES = 64
"""Series (sensor x quantity) tracked per device; more are ignored (a board has a dozen at most)."""
ROLL_MS = 300_000
"""The 5-minute window of the means."""
RING = 12
"""5-minute means kept: the last hour."""
SLOTS = 48
"""Hour-of-day baselines: 24 weekday and 24 weekend hours."""
PER_SLOT = 10
"""Past hourly increments kept per slot (median and MAD of these)."""
LEARN_HOURS = 2
"""Past increments a slot needs before its hour is judged (the weekend's come from a single weekend)."""
NIGHTS = 14
"""Past night minima kept per flow."""
LEARN_NIGHTS = 3
"""Nights a flow must have been seen before it can leak."""
BACKWARDS_CLEAR_MS = 1_800_000
"""counter_backwards clears once the counter went forward this long without stepping back."""
DRIFT_HOURS = 2
"""Hourly comparisons in a row beyond (or, to clear, within 60 % of) the tolerance."""
CONSUMPTION_HOURS = 2
"""Hours in a row far from (or, to clear, within half of) the usual to fire (to clear)."""
SILENT_VOID_MS = 1_200_000
"""A meter without a message for this long (or 3 intervals) has no hourly increment to judge."""
FORECAST_MIN = 6
"""5-minute means (of the last 12) a forecast needs."""
FORECAST_MARGIN = 1.4
"""The forecast must pass the threshold's concentration by this factor (40 %): a straight line overshoots
the daily peaks that level off by themselves (bench/detect.py: 1.3 gave 1 false alarm per 1,000 device-days,
1.4 none, 1.5 lost a tenth of the episodes)."""
FORECAST_FIT = 6
"""The last 5-minute means (30 minutes) the straight line is fitted to: an hour reacts too late to fast
episodes."""
FORECAST_CONFIRM = 2
"""5-minute windows in a row that must foresee the crossing (a trend, not a wobble)..."""
FORECAST_FAST = 20.0
"""... or one, when pm25 rises faster than this (ug/m3 per hour): a fast episode leaves no time to wait
(bench/detect.py: 25 missed one more episode, 15 gave two false alarms)."""


COUNTER_DOWN = -1e-6
"""A counter's smallest step that counts as going back."""
_NEGATED: dict[float, float] = {}


def _negated(x: float) -> float:
    """-x, one float object per value: the series of a quantity share it (one object to keep in cache)."""
    neg = _NEGATED.get(x)
    if neg is None:
        neg = _NEGATED[x] = -x
    return neg


def _median(values: list[float]) -> float:
    values = sorted(values)
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2


class _Series:
    """One quantity of one sensor of one device: what the hot path updates, what tick reads."""

    __slots__ = (
        "avg",
        "backwards",
        "changed",
        "counter",
        "drift",
        "drift_n",
        "fc_clear",
        "flat",
        "flat_ms",
        "flat_zero_ok",
        "forecast",
        "h0",
        "hot_down",
        "hot_last",
        "hot_up",
        "lim",
        "n",
        "night_min",
        "nights",
        "oor",
        "q",
        "ring",
        "ring_i",
        "seen",
        "slot_n",
        "slots",
        "spike",
        "spike_ref",
        "spike_step",
        "stop",
        "sum",
        "z_n",
    )

    def __init__(self, q: str, lim: Limits, *, counter: bool, windowed: bool) -> None:
        self.q = q
        self.lim = lim
        # What the hot path reads and writes per reading: three slots side by side in one cache line (CPython
        # lays slots out in name order, hence the prefix); `up` and `down` are floats shared by the series of
        # a quantity. With 1,000 boards a series is touched once per 1,000 messages, long after the caches
        # forgot it: each further line is a miss (docs/performance.md: Ingest with the detectors).
        self.hot_last = NAN  # the last value believed (NaN: none yet)
        self.seen = NAN  # `hot_last` at the previous tick
        self.changed = 0
        self.sum = 0.0
        self.n = 0
        self.counter = counter
        step = lim.spike_step
        if counter:
            self.hot_up, self.hot_down = INF, COUNTER_DOWN
        elif step is not None:
            self.hot_up, self.hot_down = step, _negated(step)
        else:
            self.hot_up, self.hot_down = INF, -INF
        self.spike_step = step
        self.flat_ms = None if lim.flatline_s is None or counter else int(lim.flatline_s * 1000)
        self.flat_zero_ok = lim.flat_zero_ok
        self.flat = 0  # ts of the flatline fired (0: not firing)
        self.spike = 0  # ts the spike started (0: none)
        self.spike_ref = NAN
        self.oor = 0  # ts of the last `range` reading while out_of_range fires
        self.backwards = 0  # hub time of the last backwards step while counter_backwards fires
        self.ring: array[float] | None = array("d", [NAN] * RING) if windowed else None
        self.ring_i = 0
        self.drift = 0  # drift: 1 while firing
        self.drift_n = 0  # hours in a row beyond (firing: within) the tolerance
        self.night_min = INF
        self.nights: list[float] | None = [] if lim.leak_min is not None else None
        self.forecast = 0  # 1 while aqi_forecast fires
        self.fc_clear = 0
        # counters
        self.h0 = NAN
        self.slots: array[float] | None = array("f", [NAN] * (SLOTS * PER_SLOT)) if counter else None
        self.slot_n: array[int] | None = array("I", [0] * SLOTS) if counter else None
        self.z_n = 0
        self.stop = 0
        self.avg = NAN  # a counter's hourly increment, averaged over about two days

    def means(self) -> list[float]:
        """The 5-minute means of the last hour, oldest first, windows without readings left out."""
        ring = self.ring
        if ring is None:
            return []
        i = self.ring_i
        return [x for x in (ring[(i + k) % RING] for k in range(RING)) if x == x]  # noqa: PLR0124 - NaN test


class _Stream:
    """One sensor's messages of one device."""

    # last_now, minlag, msgs, sensor, series and ts, what the hot path touches, lie side by side (see _Series)
    __slots__ = ("dev", "iv", "last_now", "minlag", "msgs", "msgs0", "sensor", "series", "slow", "ts", "ts0",
                 "win_ts0")

    def __init__(self, dev: _Device, sensor: str) -> None:
        self.dev = dev
        self.sensor = sensor
        self.series: dict[str, _Series] = {}
        self.last_now = 0  # hub time of its last message
        self.minlag = INF  # smallest hub time - board time in the clock window, ms
        self.ts = 0
        self.ts0 = 0  # ts at the last interval estimate
        self.msgs = 0  # messages ever (the only count the hot path keeps)
        self.msgs0 = 0  # `msgs` at the last interval estimate
        self.iv = 0.0  # learned message interval, ms (0: not yet)
        self.slow = 0
        self.win_ts0 = 0  # ts at the start of the clock window


class _Device:
    __slots__ = ("ahead", "by_q", "clock", "gaps", "gaps5", "group", "iv", "msgs", "msgs5", "name", "nseries",
                 "seq", "silent", "streams", "win_ahead")

    def __init__(self, name: str) -> None:
        self.name = name
        self.streams: dict[str, _Stream] = {}
        self.by_q: dict[str, _Series] = {}
        self.nseries = 0
        self.ahead = 0  # largest lead of a board timestamp over the hub clock in the window, ms
        self.win_ahead = 0
        self.msgs = 0
        self.gaps = 0
        self.msgs5: array[int] = array("I", [0] * RING)
        self.gaps5: array[int] = array("I", [0] * RING)
        self.iv = 0.0
        self.silent = 0
        self.clock = 0
        self.seq = 0
        self.group = ""


def _last_now(dev: _Device) -> int:
    """Hub time of the device's last message (its streams keep theirs: the hot path touches no device)."""
    return max((st.last_now for st in dev.streams.values()), default=0)


def _local(ms: int, offset_ms: int) -> tuple[int, int]:
    """(hour of day, weekday 0=Monday) at UTC ms shifted by offset_ms."""
    t = (ms + offset_ms) // 1000
    return (t // 3600) % 24, (t // 86400 + 3) % 7


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


class Detectors:
    """The stream's detectors (see the module docstring); `enabled` False makes both entry points no-ops."""

    def __init__(self, config: DetectConfig) -> None:
        self.config = config
        self.enabled = config.enabled
        self._lim = config.quantities
        self._on = {kind: config.on(kind) for kind in ev.KINDS}
        self._ahead = int(config.clock_bound_s * 1000)
        self._settle = int(config.settle_s * 1000)
        self._offset = int(config.utc_offset_h * 3_600_000)
        self._devices: dict[str, _Device] = {}
        self._hot: dict[str, _Stream] = {}
        """device -> the stream of its last message: one lookup per message while a board sends one sensor."""
        self._events: list[ev.Event] = []
        self._firing: set[tuple[str, str, str]] = set()
        self._groups: dict[str, list[str]] = {}
        self._started = False
        self._next_roll = 0
        self._next_hour = 0
        self._next_clock = 0
        self._rolls = 0
        self._full_logged = False
        self._unit = {q: row[1] for q, row in catalogue.QUANTITIES.items()}

    # ------------------------------------------------------------------------------------------ hot path
    def sample(  # noqa: C901 - the hot path, kept in one function on purpose (no calls per reading)
        self, device: str, sensor: str, ts_ms: int, readings: Sequence[tuple[str, float, str]], now_ms: int,
        gap: bool,
    ) -> None:
        """One accepted telemetry message: its board timestamp, its readings (quantity, value, quality)."""
        st = self._hot.get(device)
        if st is None or st.sensor != sensor:
            st = self._stream(device, sensor)
            if st is None:
                return
        if gap or ts_ms > now_ms + self._ahead:
            self._odd_message(st.dev, ts_ms, now_ms, gap)
        lag = now_ms - ts_ms
        if lag < st.minlag:  # noqa: PLR1730 - min() is a call: slower on the hot path
            st.minlag = lag
        st.last_now = now_ms
        st.ts = ts_ms
        st.msgs += 1
        series = st.series
        for q, v, quality in readings:
            s = series.get(q)
            if s is None:
                s = self._new_series(st.dev, st, q)
            if quality != OK:
                if quality == RANGE:
                    self._out_of_range(st.dev, s, ts_ms, v)
                continue
            d = v - s.hot_last
            if d:
                if (d > s.hot_up or d < s.hot_down) and self._step(st.dev, s, ts_ms, v, d, now_ms):
                    continue
                s.hot_last = v  # when it changed is noted by tick, as are the means (sample and hold)

    # ------------------------------------------------------------------------------------------ rare paths
    def _stream(self, device: str, sensor: str) -> _Stream | None:
        """The stream of a message whose device is new or last sent another sensor (None: beyond the bound)."""
        dev = self._devices.get(device)
        if dev is None:
            dev = self._new_device(device)
            if dev is None:
                return None
        st = dev.streams.get(sensor)
        if st is None:
            st = self._new_stream(dev, sensor)
        self._hot[device] = st
        return st

    def _new_device(self, device: str) -> _Device | None:
        if len(self._devices) >= self.config.max_devices:
            if not self._full_logged:
                self._full_logged = True
                log.warning("detect: device bound reached devices=%d: device=%s and later ones are not watched "
                            "(raise detect.max_devices)", len(self._devices), device)
            return None
        dev = self._devices[device] = _Device(device)
        for group, members in self._groups.items():
            if device in members:
                dev.group = group
        return dev

    def _new_stream(self, dev: _Device, sensor: str) -> _Stream:
        if len(dev.streams) >= MAX_SERIES:  # a board inventing sensor names: one stream takes the rest
            st = dev.streams.get("")
            if st is None:
                st = dev.streams[""] = _Stream(dev, "")
            return st
        st = dev.streams[sensor] = _Stream(dev, sensor)
        return st

    def _new_series(self, dev: _Device, st: _Stream, q: str) -> _Series:
        lim = self._lim.get(q)
        if lim is None or dev.nseries >= MAX_SERIES:
            lim = Limits()  # unknown quantity (or too many): kept, watched by nothing
            s = _Series(q, lim, counter=False, windowed=False)
            s.hot_up, s.hot_down, s.flat_ms = INF, -INF, None
        else:
            counter = q in COUNTER_QUANTITIES
            windowed = not counter and (lim.drift_abs is not None or lim.leak_min is not None or q == "pm25")
            s = _Series(q, lim, counter=counter, windowed=windowed)
            dev.by_q.setdefault(q, s)
        dev.nseries += 1
        st.series[q] = s
        return s

    def _odd_message(self, dev: _Device, ts_ms: int, now_ms: int, gap: bool) -> None:
        if gap:
            dev.gaps += 1
        ahead = ts_ms - now_ms
        if ahead > self._ahead and ahead > dev.ahead:
            dev.ahead = ahead
            if self._on[ev.CLOCK] and not dev.clock:
                self._clock_fire(dev, now_ms, f"board clock {ahead / 1000:.0f} s ahead of the hub's", ahead)

    def _out_of_range(self, dev: _Device, s: _Series, ts_ms: int, v: float) -> None:
        if not self._on[ev.OUT_OF_RANGE]:
            return
        first = not s.oor
        s.oor = ts_ms
        if first:
            _, unit, lo, hi = catalogue.QUANTITIES.get(s.q, ("", "", NAN, NAN))
            self._fire(ev.OUT_OF_RANGE, dev.name, s.q, ev.WARNING, ts_ms,
                       f"{s.q} reads {_fmt(v)} {unit}, outside the plausible {lo}..{hi}: sensor fault, wiring "
                       f"or a wrong unit", {"value": v, "lo": lo, "hi": hi})

    def _step(self, dev: _Device, s: _Series, ts_ms: int, v: float, d: float, now_ms: int) -> bool:  # noqa: PLR0911
        """A step beyond the quantity's limit; True if the value is not to be believed (not averaged)."""
        if s.counter:  # stepped back
            if self._on[ev.COUNTER_BACKWARDS]:
                if not s.backwards:
                    self._fire(ev.COUNTER_BACKWARDS, dev.name, s.q, ev.WARNING, ts_ms,
                               f"{s.q} counter went back from {_fmt(s.hot_last)} to {_fmt(v)}: meter reset, replaced "
                               f"or failing", {"from": s.hot_last, "to": v, "step": d})
                s.backwards = now_ms
            s.hot_last = v
            s.changed = ts_ms
            s.h0 = NAN  # this hour's increment is void
            return True
        step = s.spike_step
        if step is None or not self._on[ev.SPIKE]:
            return False
        if s.spike:
            if abs(v - s.spike_ref) <= step:  # back: believed again
                s.hot_last = v
                s.changed = ts_ms
                return False
            if ts_ms - s.spike >= self._settle:  # stayed: a level shift, believed
                self._clear(ev.SPIKE, dev.name, s.q, ts_ms, f"{s.q} stayed at the new level: a level shift")
                s.spike = 0
                return False
            return True
        allowed = step * max(1.0, (ts_ms - s.changed) / 60_000)  # more time, more room
        if abs(d) <= allowed:
            return False
        s.spike = ts_ms
        s.spike_ref = s.hot_last
        self._fire(ev.SPIKE, dev.name, s.q, ev.WARNING, ts_ms,
                   f"{s.q} jumped from {_fmt(s.hot_last)} to {_fmt(v)} {self._unit.get(s.q, '')} in one sample "
                   f"(physics allows {_fmt(allowed)}): electrical noise or a failing sensor",
                   {"from": s.hot_last, "to": v, "step": d, "allowed": allowed})
        return True

    # ------------------------------------------------------------------------------------------ events
    def _fire(self, kind: str, device: str, q: str, severity: str, ts: int, message: str,
              evidence: dict[str, float | str]) -> None:
        self._firing.add((kind, device, q))
        self._events.append(ev.Event(kind, ev.FIRE, device, q, severity, int(ts), message, evidence))

    def _clear(self, kind: str, device: str, q: str, ts: int, message: str,
               evidence: dict[str, float | str] | None = None) -> None:
        key = (kind, device, q)
        if key in self._firing:
            self._firing.discard(key)
            self._events.append(ev.Event(kind, ev.CLEAR, device, q, ev.INFO, int(ts), message, evidence or {}))

    def _clock_fire(self, dev: _Device, now_ms: int, what: str, off_ms: float) -> None:
        dev.clock = now_ms
        self._fire(ev.CLOCK, dev.name, "", ev.WARNING, now_ms,
                   f"{what} (bound {self.config.clock_bound_s:.0f} s): NTP not synced or the RTC drifts",
                   {"offset_s": off_ms / 1000, "bound_s": self.config.clock_bound_s})

    def firing(self) -> frozenset[tuple[str, str, str]]:
        """Keys (kind, device, quantity) of the conditions firing now."""
        return frozenset(self._firing)

    # ------------------------------------------------------------------------------------------ baseline
    def preload(self, device: str, sensor: str, quantity: str, hours: Iterable[tuple[int, float]]) -> bool:
        """Past hourly increments of a meter counter ((end of the hour, ms; increment), oldest first) into its
        baseline, as if the stream had seen them (hub.detect.baseline reads them from InfluxDB at start-up).
        False if the quantity is not a meter counter or the device is beyond the bound."""
        if quantity not in COUNTER_QUANTITIES:
            return False
        dev = self._devices.get(device) or self._new_device(device)
        if dev is None:
            return False
        st = dev.streams.get(sensor)
        if st is None:
            st = dev.streams[sensor] = _Stream(dev, sensor)
        s = st.series.get(quantity) or self._new_series(dev, st, quantity)
        slots, slot_n = s.slots, s.slot_n
        if slots is None or slot_n is None:
            return False
        for end_ms, inc in hours:
            if inc != inc or inc < 0:  # noqa: PLR0124 - NaN
                continue
            hour, weekday = _local(end_ms - 1, self._offset)
            slot = hour + (24 if weekday >= 5 else 0)
            slots[slot * PER_SLOT + slot_n[slot] % PER_SLOT] = inc
            slot_n[slot] += 1
        return True

    # ------------------------------------------------------------------------------------------ groups
    def set_groups(self, mapping: Mapping[str, str]) -> None:
        """Co-located devices: device -> group name (devices of one group are compared for drift)."""
        groups: dict[str, list[str]] = {}
        for device, group in mapping.items():
            if group:
                groups.setdefault(group, []).append(device)
        self._groups = {g: sorted(members) for g, members in groups.items() if len(members) >= 2}
        for dev in self._devices.values():
            dev.group = ""
        for group, members in self._groups.items():
            for device in members:
                if device in self._devices:
                    self._devices[device].group = group

    # ------------------------------------------------------------------------------------------ tick
    def tick(self, now_ms: int) -> list[ev.Event]:
        """Evaluate what is due at `now_ms` (hub clock); every event since the last tick."""
        if not self.enabled:
            return []
        if not self._started:
            self._started = True
            self._next_roll = (now_ms // ROLL_MS + 1) * ROLL_MS
            self._next_hour = (now_ms // 3_600_000 + 1) * 3_600_000
            self._next_clock = now_ms + int(self.config.clock_window_s * 1000)
        self._every_tick(now_ms)
        while now_ms >= self._next_roll:
            at = self._next_roll
            self._roll(at)
            self._next_roll += ROLL_MS
            if at >= self._next_hour:
                self._hour(self._next_hour)
                self._next_hour += 3_600_000
        if now_ms >= self._next_clock:
            self._clock_window(now_ms)
            self._next_clock = now_ms + int(self.config.clock_window_s * 1000)
        out, self._events = self._events, []
        return out

    def _every_tick(self, now_ms: int) -> None:
        cfg = self.config
        on = self._on
        silent_min = cfg.silent_min_s * 1000
        for dev in self._devices.values():
            last_now = _last_now(dev)
            if not dev.iv:  # a new board: a first estimate from its first messages, not its first 5-minute roll
                self._interval(dev)
            if on[ev.SILENT] and dev.iv:
                limit = max(cfg.silent_factor * dev.iv, silent_min)
                quiet = now_ms - last_now
                if not dev.silent and quiet > limit:
                    dev.silent = last_now
                    self._fire(ev.SILENT, dev.name, "", ev.WARNING, last_now,
                               f"no message for {quiet / 1000:.0f} s (it sends every {dev.iv / 1000:.0f} s): "
                               f"power, network or firmware", {"silent_s": quiet / 1000, "interval_s": dev.iv / 1000})
                elif dev.silent and last_now > dev.silent:
                    dev.silent = 0
                    self._clear(ev.SILENT, dev.name, "", last_now, "sends again")
            live = now_ms - last_now <= max(ROLL_MS, 2 * dev.iv)
            for st in dev.streams.values():
                for s in st.series.values():
                    if live and s.ring is not None and s.hot_last == s.hot_last:
                        s.sum += s.hot_last  # the value held at each tick: a time-weighted mean, out of the hot path
                        s.n += 1
                    self._series_tick(dev, st, s, now_ms)

    def _series_tick(self, dev: _Device, st: _Stream, s: _Series, now_ms: int) -> None:
        if s.hot_last != s.seen:  # changed since the last tick (a value that went and came back between two
            s.seen = s.hot_last  # ticks is missed: harmless for hours-long conditions)
            s.changed = st.ts
        flat_ms = s.flat_ms
        if flat_ms is not None and self._on[ev.FLATLINE]:
            if s.flat:
                if s.changed > s.flat:
                    s.flat = 0
                    self._clear(ev.FLATLINE, dev.name, s.q, s.changed, f"{s.q} moves again")
            elif st.ts - s.changed > flat_ms and s.changed and not (s.flat_zero_ok and s.hot_last == 0):
                s.flat = st.ts
                stuck = (st.ts - s.changed) / 3_600_000
                self._fire(ev.FLATLINE, dev.name, s.q, ev.WARNING, s.changed,
                           f"{s.q} stuck at {_fmt(s.hot_last)} {self._unit.get(s.q, '')} for {stuck:.1f} h (allowed "
                           f"{flat_ms / 3_600_000:.1f} h): sensor or its fan may have failed",
                           {"value": s.hot_last, "duration_s": (st.ts - s.changed) / 1000, "allowed_s": flat_ms / 1000})
        if s.oor and st.ts - s.oor > self._settle:
            s.oor = 0
            self._clear(ev.OUT_OF_RANGE, dev.name, s.q, st.ts, f"{s.q} back in range")
        if s.spike and st.ts - s.spike > self._settle and s.hot_last == s.hot_last:
            s.spike = 0  # the value came back (or the board stopped): over
            self._clear(ev.SPIKE, dev.name, s.q, st.ts, f"{s.q} back to {_fmt(s.hot_last)}")
        if s.backwards and now_ms - s.backwards > BACKWARDS_CLEAR_MS and s.changed > 0:
            s.backwards = 0
            self._clear(ev.COUNTER_BACKWARDS, dev.name, s.q, st.ts, f"{s.q} counts forward again")
        if s.stop and s.changed > s.stop:
            s.stop = 0
            self._clear(ev.COUNTER_STOPPED, dev.name, s.q, s.changed, f"{s.q} counts again")

    # 5-minute windows ---------------------------------------------------------------------------------
    def _roll(self, at: int) -> None:
        self._rolls += 1
        hour, _ = _local(at - 1, self._offset)
        cfg = self.config
        start, end = cfg.night_start_h, cfg.night_end_h
        night = (start <= hour < end) if start < end else (hour >= start or hour < end)
        judge_leak = hour == (end - 1) % 24 and (at + self._offset) % 3_600_000 == 0
        i = self._rolls % RING
        for dev in self._devices.values():
            total = sum(st.msgs for st in dev.streams.values())
            dev.msgs5[i] = total - dev.msgs
            dev.gaps5[i] = dev.gaps
            dev.msgs = total  # the streams' messages at this roll
            dev.gaps = 0
            self._interval(dev)
            for s in dev.by_q.values():
                ring = s.ring
                if ring is None:
                    continue
                mean = s.sum / s.n if s.n else NAN
                s.sum = 0.0
                s.n = 0
                ring[s.ring_i] = mean
                s.ring_i = (s.ring_i + 1) % RING
                if s.nights is not None:
                    if night and mean == mean and mean < s.night_min:  # noqa: PLR0124 - NaN test
                        s.night_min = mean
                    if judge_leak:
                        self._leak(dev, s, at)
                if s.q == "pm25" and self._on[ev.AQI_FORECAST]:
                    self._forecast(dev, s, at)
            if self._on[ev.SEQ_GAPS]:
                self._seq_gaps(dev, at)

    def _interval(self, dev: _Device) -> None:
        """Learn each stream's message interval from its timestamps (a backlog keeps its spacing)."""
        iv = 0.0
        for st in dev.streams.values():
            n = st.msgs - st.msgs0
            if n >= 2 or (n and st.ts - st.ts0 >= ROLL_MS):
                if st.ts0:
                    est = (st.ts - st.ts0) / n
                    if est > 0 and (not st.iv or est < 3 * st.iv or st.slow >= 3):
                        st.iv = est if not st.iv else 0.7 * st.iv + 0.3 * est
                        st.slow = 0
                    elif est > 0:
                        st.slow += 1
                st.ts0 = st.ts
                st.msgs0 = st.msgs
            iv = max(iv, st.iv)
        dev.iv = iv

    def _seq_gaps(self, dev: _Device, at: int) -> None:
        gaps = sum(dev.gaps5)
        msgs = sum(dev.msgs5)
        rate = gaps / msgs if msgs else 0.0
        cfg = self.config
        key = (ev.SEQ_GAPS, dev.name, "")
        if not dev.seq and gaps >= cfg.seq_gap_min and rate > cfg.seq_gap_rate:
            dev.seq = 1
            self._fire(ev.SEQ_GAPS, dev.name, "", ev.WARNING, at,
                       f"{gaps} sequence gaps in {msgs} messages in the last hour ({rate:.0%}, allowed "
                       f"{cfg.seq_gap_rate:.0%}): the board loses messages (radio, broker limits)",
                       {"gaps": gaps, "messages": msgs, "rate": rate})
        elif dev.seq and key in self._firing and rate <= cfg.seq_gap_rate / 2:
            dev.seq = 0
            self._clear(ev.SEQ_GAPS, dev.name, "", at, "no more sequence gaps than allowed")

    def _forecast(self, dev: _Device, s: _Series, at: int) -> None:
        means = s.means()[-FORECAST_FIT:]
        if len(means) < FORECAST_MIN:
            return
        threshold = self.config.aqi_threshold
        now_idx = aqi.pm25_index(max(0.0, means[-1]))
        n = len(means)
        xm = (n - 1) / 2
        ym = sum(means) / n
        sxx = sum((x - xm) ** 2 for x in range(n))
        slope = sum((x - xm) * (y - ym) for x, y in enumerate(means)) / sxx
        fitted = ym + slope * (n - 1 - xm)
        forecast = max(0.0, fitted + slope * RING)  # an hour ahead, per 5-minute step
        fc_idx = aqi.pm25_index(forecast)
        if not s.forecast:
            # foreseen in FORECAST_CONFIRM windows running, by a margin
            s.fc_clear = s.fc_clear + 1 if now_idx <= threshold < aqi.pm25_index(forecast / FORECAST_MARGIN) else 0
            if slope > 0 and (s.fc_clear >= FORECAST_CONFIRM or (s.fc_clear and slope * 12 >= FORECAST_FAST)):
                s.forecast = 1
                s.fc_clear = 0
                sev = ev.CRITICAL if fc_idx > threshold + 50 else ev.WARNING
                self._fire(ev.AQI_FORECAST, dev.name, s.q, sev, at,
                           f"AQI {now_idx} ({aqi.category(now_idx)}) forecast to reach {fc_idx} "
                           f"({aqi.category(fc_idx)}) within the hour: pm25 rising {slope * 12:.1f} ug/m3 per hour",
                           {"aqi": now_idx, "forecast_aqi": fc_idx, "pm25": means[-1], "forecast_pm25": forecast,
                            "slope_per_h": slope * 12, "threshold": threshold})
            elif now_idx > threshold:
                s.forecast = 1  # exceeded without warning: say so, once
                s.fc_clear = 0
                self._fire(ev.AQI_FORECAST, dev.name, s.q, ev.WARNING, at,
                           f"AQI {now_idx} ({aqi.category(now_idx)}) is above {threshold} (not foreseen)",
                           {"aqi": now_idx, "pm25": means[-1], "threshold": threshold})
            return
        if now_idx <= threshold and fc_idx <= threshold:
            s.fc_clear += 1
            if s.fc_clear >= 3:
                s.forecast = 0
                self._clear(ev.AQI_FORECAST, dev.name, s.q, at, f"AQI {now_idx}, forecast {fc_idx}: below "
                            f"{threshold}")
        else:
            s.fc_clear = 0

    def _leak(self, dev: _Device, s: _Series, at: int) -> None:
        nights = s.nights
        lim = s.lim.leak_min
        low = s.night_min
        s.night_min = INF
        if nights is None or lim is None or low == INF or not self._on[ev.LEAK]:
            return
        key = (ev.LEAK, dev.name, s.q)
        if len(nights) >= LEARN_NIGHTS:
            usual = _median(nights)
            margin = max(lim, 0.3 * usual)
            unit = self._unit.get(s.q, "")
            if low > usual + margin:
                if key not in self._firing:
                    self._fire(ev.LEAK, dev.name, s.q, ev.CRITICAL, at,
                               f"{s.q} never fell below {_fmt(low)} {unit} last night (usually {_fmt(usual)}): "
                               f"a leak or a tap left open",
                               {"night_min": low, "usual": usual, "limit": usual + margin})
                return
            if key in self._firing:
                if low < usual + margin / 2:
                    self._clear(ev.LEAK, dev.name, s.q, at, f"{s.q} fell to {_fmt(low)} {unit} last night")
                return
        nights.append(low)
        if len(nights) > NIGHTS:
            del nights[0]

    # hours -----------------------------------------------------------------------------------------------
    def _hour(self, at: int) -> None:
        """Hourly: meter counters' increments (consumption, stops) and co-located drift."""
        hour, weekday = _local(at - 1, self._offset)
        slot = hour + (24 if weekday >= 5 else 0)
        for dev in self._devices.values():
            for s in dev.by_q.values():
                if s.counter:
                    self._counter_hour(dev, s, slot, at)
        if self._on[ev.DRIFT]:
            for group, members in self._groups.items():
                self._drift(group, members, at)

    def _counter_hour(self, dev: _Device, s: _Series, slot: int, at: int) -> None:
        slots, slot_n = s.slots, s.slot_n
        if slots is None or slot_n is None:
            return
        if at - _last_now(dev) > max(SILENT_VOID_MS, 3 * dev.iv):
            s.h0 = NAN  # a silent board: its hours say nothing (silent's matter), nor does the first one after
            return
        inc = s.hot_last - s.h0
        s.h0 = s.hot_last
        if inc != inc or inc < 0:  # noqa: PLR0124 - NaN: no value at the last hour, or stepped back
            return
        s.avg = inc if s.avg != s.avg else s.avg + (inc - s.avg) / 48
        base = slot * PER_SLOT
        count = min(slot_n[slot], PER_SLOT)
        past = [slots[base + k] for k in range(count)]
        usual = _median(past) if count >= LEARN_HOURS else NAN
        if usual == usual and self._on[ev.CONSUMPTION]:  # noqa: PLR0124 - NaN: not learnt yet
            mad = _median([abs(x - usual) for x in past])
            scale = max(1.4826 * mad, 0.15 * usual, 0.1 * s.avg, 1e-3)
            self._consumption(dev, s, inc, usual, (inc - usual) / scale, at)
        self._stopped(dev, s, at)
        if inc > 0 or not usual > 0:  # a zero in an hour that usually moves stays out (counter_stopped's)
            slots[base + slot_n[slot] % PER_SLOT] = inc
            slot_n[slot] += 1

    def _consumption(self, dev: _Device, s: _Series, inc: float, usual: float, z: float, at: int) -> None:
        key = (ev.CONSUMPTION, dev.name, s.q)
        k = self.config.consumption_k
        if key not in self._firing:
            # a counter that did not move is counter_stopped's matter, not consumption's
            s.z_n = s.z_n + 1 if abs(z) > k and inc > 0 else 0
            if s.z_n >= CONSUMPTION_HOURS:
                s.z_n = 0
                unit = self._unit.get(s.q, "")
                self._fire(ev.CONSUMPTION, dev.name, s.q, ev.CRITICAL if abs(z) > 2 * k else ev.WARNING, at,
                           f"{s.q} used {_fmt(inc)} {unit} in the last hour, usually {_fmt(usual)} at this hour "
                           f"(z {z:.1f}): {'far more' if z > 0 else 'far less'} than usual",
                           {"value": inc, "usual": usual, "z": z})
        else:
            s.z_n = s.z_n + 1 if abs(z) < k / 2 else 0
            if s.z_n >= CONSUMPTION_HOURS:
                s.z_n = 0
                self._clear(ev.CONSUMPTION, dev.name, s.q, at, f"{s.q} consumption usual again")

    def _stopped(self, dev: _Device, s: _Series, at: int) -> None:
        slots, slot_n = s.slots, s.slot_n
        if s.stop or not self._on[ev.COUNTER_STOPPED] or slots is None or slot_n is None or not s.changed:
            return
        hours = self.config.counter_stop_h
        if at - s.changed < hours * 3_600_000:
            return
        for h in range(hours):
            hour, weekday = _local(at - 1 - h * 3_600_000, self._offset)
            slot = hour + (24 if weekday >= 5 else 0)
            if slot_n[slot] < LEARN_HOURS:  # a weekend hour not learnt yet: the weekday one says if it moves
                slot = hour
            count = min(slot_n[slot], PER_SLOT)
            past = [slots[slot * PER_SLOT + k] for k in range(count)]
            if count < LEARN_HOURS or min(past) <= 0:
                return
        s.stop = at
        self._fire(ev.COUNTER_STOPPED, dev.name, s.q, ev.WARNING, s.changed,
                   f"{s.q} stuck at {_fmt(s.hot_last)} for {(at - s.changed) / 3_600_000:.1f} h in hours it always "
                   f"moves: meter, pulse wiring or supply",
                   {"value": s.hot_last, "hours": (at - s.changed) / 3_600_000})

    def _drift(self, group: str, members: list[str], at: int) -> None:
        devices = [self._devices[m] for m in members if m in self._devices]
        quantities = {q for dev in devices for q, s in dev.by_q.items() if s.lim.drift_abs is not None}
        for q in quantities:
            rows: list[tuple[_Device, _Series, float]] = []
            for dev in devices:
                s = dev.by_q.get(q)
                if s is None or s.ring is None:
                    continue
                means = s.means()
                if len(means) >= RING // 2:
                    rows.append((dev, s, sum(means) / len(means)))
            if len(rows) == 2:
                (a, sa, ma), (b, _, mb) = rows
                self._drift_one(a, sa, ma - mb, (ma + mb) / 2, at, group, pair=b.name)
            elif len(rows) >= 3:
                median = _median([m for _, _, m in rows])
                for dev, s, m in rows:
                    self._drift_one(dev, s, m - median, median, at, group)

    def _drift_one(self, dev: _Device, s: _Series, diff: float, ref: float, at: int, group: str,
                   pair: str = "") -> None:
        lim = s.lim
        tol = max(lim.drift_abs or 0.0, lim.drift_rel * abs(ref))
        unit = self._unit.get(s.q, "")
        if not s.drift:
            s.drift_n = s.drift_n + 1 if abs(diff) > tol else 0
            if s.drift_n >= DRIFT_HOURS:
                s.drift = 1
                s.drift_n = 0
                who = f"{dev.name} and {pair} differ" if pair else f"{dev.name} is off the group median"
                evidence: dict[str, float | str] = {"difference": diff, "tolerance": tol, "reference": ref,
                                                    "group": group}
                if pair:
                    evidence["pair"] = pair
                self._fire(ev.DRIFT, dev.name, s.q, ev.WARNING, at,
                           f"{s.q}: {who} by {_fmt(diff)} {unit} in hourly means (tolerance {_fmt(tol)}): "
                           f"{'one of them' if pair else 'it'} drifts, calibrate or replace", evidence)
        else:
            s.drift_n = s.drift_n + 1 if abs(diff) < 0.6 * tol else 0
            if s.drift_n >= DRIFT_HOURS:
                s.drift = 0
                s.drift_n = 0
                self._clear(ev.DRIFT, dev.name, s.q, at, f"{s.q} agrees with its group again")

    # clock window ------------------------------------------------------------------------------------------
    def _clock_window(self, now_ms: int) -> None:
        if not self._on[ev.CLOCK]:
            return
        bound = self._ahead
        window = self.config.clock_window_s * 1000
        for dev in self._devices.values():
            minlag = INF
            ahead = dev.ahead
            live = False
            for st in dev.streams.values():
                if st.win_ts0 and 0 < st.ts - st.win_ts0 <= 1.5 * window:
                    live = True
                st.win_ts0 = st.ts
                minlag = min(minlag, st.minlag)
                st.minlag = INF
            dev.ahead = 0
            if minlag == INF:
                continue  # no message in the window: silent, not a clock matter
            if not dev.clock:
                if live and minlag > bound:
                    self._clock_fire(dev, now_ms, f"board clock {minlag / 1000:.0f} s behind the hub's while live",
                                     -minlag)
            elif ahead <= bound / 2 and (minlag <= bound / 2 or not live):
                dev.clock = 0
                self._clear(ev.CLOCK, dev.name, "", now_ms, "board clock agrees with the hub's again")
