"""Detection benchmark: the hub's detectors on a simulated city with labelled faults, against plain rules.

Runs simulators/faults.py's city (default: 142 boards and meters over 30 simulated days, 300 faults of
every kind) through hub.detect's Detectors as fast as the CPU goes (`sample` per message, `tick` every 10
simulated seconds), and through a plain fixed-threshold rule per kind, and reports per kind: recall (a
fault counts as found when an event of its kind, device and quantity fires between its start and its end
plus a grace), false alarms per 1,000 device-days (fires matching no fault of their kind and happening
outside every fault of their device: a stuck counter also makes its hour's consumption odd, that is a side
effect, counted apart) and the median time to detect (for aqi_forecast: the median lead, minutes before the
AQI crosses the threshold, a hit being a fire before it does).

    python bench/detect.py                      # the full month (about 4 minutes)
    python bench/detect.py --days 14 --small    # what tests/bench/test_detect.py runs
    python bench/detect.py --json               # the figures as JSON as well

Figures go into docs/performance.md ("Detection") and docs/detect.md by hand.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.detect import events as ev
from hub.detect.config import DetectConfig
from hub.detect.defaults import DEFAULTS
from hub.detect.engine import Detectors
from protocols import aqi, catalogue
from simulators.faults import DAY, HOUR, MIN, City, Fault, Message

TICK = 10_000
GRACE = {ev.DRIFT: 3 * HOUR, ev.CONSUMPTION: 3 * HOUR, ev.COUNTER_STOPPED: 3 * HOUR, ev.LEAK: 2 * HOUR,
         ev.SILENT: 30 * MIN, ev.CLOCK: 30 * MIN, ev.SEQ_GAPS: HOUR, ev.OUT_OF_RANGE: 10 * MIN, ev.SPIKE: 5 * MIN,
         ev.FLATLINE: 30 * MIN, ev.COUNTER_BACKWARDS: 30 * MIN}
SIDE = 6 * HOUR
"""After a fault ends, other detectors' fires on its device are still its side effects for this long."""


@dataclass
class Fire:
    kind: str
    device: str
    quantity: str
    at: int
    pair: str = ""


# ---------------------------------------------------------------------------------------------- plain rules
@dataclass
class Plain:
    """The fixed-threshold rule per kind a person would write without the detectors (docs/detect.md)."""

    groups: dict[str, str]
    fires: list[Fire] = field(default_factory=list)
    on: set[tuple[str, str, str]] = field(default_factory=set)
    last: dict[tuple[str, str, str], float] = field(default_factory=dict)
    same: dict[tuple[str, str, str], int] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    gap_at: dict[str, int] = field(default_factory=dict)
    latest: dict[tuple[str, str], float] = field(default_factory=dict)
    pm5: dict[str, deque[tuple[int, float]]] = field(default_factory=dict)
    hourly: dict[str, list[float]] = field(default_factory=dict)
    h0: dict[str, float] = field(default_factory=dict)

    def edge(self, kind: str, device: str, quantity: str, cond: bool, at: int) -> None:
        key = (kind, device, quantity)
        if cond and key not in self.on:
            self.on.add(key)
            self.fires.append(Fire(kind, device, quantity, at))
        elif not cond and key in self.on:
            self.on.discard(key)

    def sample(self, m: Message) -> None:  # noqa: C901
        d, now = m.device, m.now_ms
        self.seen[d] = now
        self.edge(ev.CLOCK, d, "", abs(m.ts_ms - now) > 120_000, now)
        if m.gap:
            self.gap_at[d] = now
        self.edge(ev.SEQ_GAPS, d, "", now - self.gap_at.get(d, -HOUR) < HOUR, now)
        for q, v, _quality in m.readings:
            lo, hi = catalogue.QUANTITIES[q][2:]
            self.edge(ev.OUT_OF_RANGE, d, q, not lo <= v <= hi, now)
            key = (ev.SPIKE, d, q)
            prev = self.last.get(key)
            self.last[key] = v
            lim = DEFAULTS.get(q)
            if prev is None:
                continue
            if q in ("water_volume", "heat_energy", "energy_import"):
                self.edge(ev.COUNTER_BACKWARDS, d, q, v < prev, now)
                n = self.same[key] = self.same.get(key, 0) + 1 if v == prev else 0
                self.edge(ev.COUNTER_STOPPED, d, q, n >= 12, now)
                continue
            if lim is not None and lim.flatline_s is not None:
                n = self.same[key] = self.same.get(key, 0) + 1 if v == prev and not (lim.flat_zero_ok and v == 0) \
                    else 0
                self.edge(ev.FLATLINE, d, q, n >= 10, now)
            span = hi - lo
            if lim is not None and lim.spike_step is not None:
                self.edge(ev.SPIKE, d, q, abs(v - prev) > 0.05 * span, now)
            if lim is not None and lim.drift_abs is not None and d in self.groups:
                self.latest[(d, q)] = v
                mates = [self.latest.get((o, q)) for o, g in self.groups.items() if g == self.groups[d] and o != d]
                vals = [x for x in mates if x is not None]
                if vals:
                    self.edge(ev.DRIFT, d, q, abs(v - sum(vals) / len(vals)) > 2 * lim.drift_abs, now)
            if q in ("water_flow", "heat_flow") and lim is not None and lim.leak_min is not None:
                h = ((m.ts_ms + 5 * HOUR) % DAY) / HOUR
                if 3 <= h < 3.1:
                    self.edge(ev.LEAK, d, q, v > lim.leak_min, now)
            if q == "pm25":
                win = self.pm5.setdefault(d, deque())
                win.append((now, v))
                while win and win[0][0] < now - 5 * MIN:
                    win.popleft()
                mean = sum(x for _, x in win) / len(win)
                self.edge(ev.AQI_FORECAST, d, q, aqi.pm25_index(mean) > 80, now)

    def tick(self, now: int, meters: dict[str, tuple[str, float]]) -> None:
        for d, t in self.seen.items():
            self.edge(ev.SILENT, d, "", now - t > 10 * MIN, now)
        if now % HOUR < TICK:
            for d, (q, v) in meters.items():
                inc = v - self.h0.get(d, v)
                self.h0[d] = v
                hist = self.hourly.setdefault(d, [])
                mean = sum(hist) / len(hist) if len(hist) >= 24 else None
                self.edge(ev.CONSUMPTION, d, q, mean is not None and inc > 3 * mean, now)
                if inc >= 0:
                    hist.append(inc)


# ---------------------------------------------------------------------------------------------- scoring
def _matches(fire: Fire, f: Fault) -> bool:
    if fire.kind != f.kind or (f.quantity and fire.quantity != f.quantity):
        return False
    if f.device not in (fire.device, fire.pair):
        return False
    if f.kind == ev.AQI_FORECAST:
        return f.start_ms <= fire.at <= f.due_ms
    return f.start_ms <= fire.at <= f.end_ms + GRACE.get(f.kind, HOUR)


def score(city: City, fires: list[Fire], episodes: list[tuple[str, int, int]]) -> dict[str, dict[str, float]]:
    by_kind: dict[str, list[Fault]] = defaultdict(list)
    by_device: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for f in city.faults:
        by_kind[f.kind].append(f)
        by_device[f.device].append((f.start_ms, f.end_ms))
    for d, s, e in episodes:
        by_device[d].append((s, e))
    fires_kind: dict[str, list[Fire]] = defaultdict(list)
    for fire in fires:
        fires_kind[fire.kind].append(fire)
    days = len(city.devices) * city.days
    out: dict[str, dict[str, float]] = {}
    for kind in ev.KINDS:
        faults = by_kind.get(kind, [])
        kfires = fires_kind.get(kind, [])
        found = 0
        delays: list[float] = []
        for f in faults:
            hits = [x.at for x in kfires if _matches(x, f)]
            if hits:
                found += 1
                first = min(hits)
                delays.append((f.due_ms - first if kind == ev.AQI_FORECAST else first - f.start_ms) / MIN)
        false = side = 0
        for x in kfires:
            if any(_matches(x, f) for f in faults):
                continue
            devices = (x.device, x.pair) if x.pair else (x.device,)
            if any(s - HOUR <= x.at <= e + SIDE for d in devices for s, e in by_device.get(d, [])):
                side += 1
            else:
                false += 1
        out[kind] = {
            "faults": len(faults), "found": found, "recall": found / len(faults) if faults else float("nan"),
            "false": false, "false_per_1000dd": false / days * 1000, "side_effects": side,
            "median_min": statistics.median(delays) if delays else float("nan"),
        }
    return out


def run(city: City, config: DetectConfig | None = None) -> dict[str, object]:
    det = Detectors(config or DetectConfig())
    det.set_groups(city.groups)
    plain = Plain(dict(city.groups))
    fires: list[Fire] = []
    next_tick = city.start + TICK
    meters: dict[str, tuple[str, float]] = {}
    messages = readings = 0
    spent = 0.0
    started = time.perf_counter()
    sample = det.sample
    psample = plain.sample

    def tick(now: int) -> None:
        fires.extend(Fire(e.kind, e.device, e.quantity, now, str(e.evidence.get("pair", "")))
                     for e in det.tick(now) if e.state == ev.FIRE)
        plain.tick(now, meters)

    for m in city.messages():
        while m.now_ms >= next_tick:
            tick(next_tick)
            next_tick += TICK
        messages += 1
        readings += len(m.readings)
        t0 = time.perf_counter()
        sample(m.device, m.sensor, m.ts_ms, m.readings, m.now_ms, m.gap)
        spent += time.perf_counter() - t0
        psample(m)
        if m.sensor == "meter":
            meters[m.device] = (m.readings[1][0], m.readings[1][1])
    tick(next_tick)
    episodes = [(f.device, f.start_ms, f.end_ms + 6 * HOUR) for f in city.faults if f.kind == ev.AQI_FORECAST]
    episodes += city.episode_boards
    return {
        "detectors": score(city, fires, episodes), "plain": score(city, plain.fires, episodes),
        "messages": messages, "readings": readings, "faults": len(city.faults), "devices": len(city.devices),
        "days": city.days, "seconds": time.perf_counter() - started, "sample_us_per_message": spent / messages * 1e6,
    }


def table(result: dict[str, object]) -> str:
    det = result["detectors"]
    plain = result["plain"]
    assert isinstance(det, dict)
    assert isinstance(plain, dict)
    lines = [("| kind | faults | recall | false /1000 dd | median detect (min) | side effects | plain recall | "
              "plain false /1000 dd | plain median (min) | plain side effects |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for kind in ev.KINDS:
        a, b = det[kind], plain[kind]
        lines.append(f"| {kind} | {a['faults']} | {a['recall']:.2f} | {a['false_per_1000dd']:.2f} | "
                     f"{a['median_min']:.0f} | {a['side_effects']} | {b['recall']:.2f} | {b['false_per_1000dd']:.2f} | "
                     f"{b['median_min']:.0f} | {b['side_effects']} |")
    return "\n".join(lines)


def small_city(seed: int = 17, days: int = 12) -> City:
    return City(seed, days, groups3=4, groups2=3, air_single=3, water=8, heat=6, energy=6, faults_per_kind=8,
                episodes=8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--small", action="store_true", help="the test suite's small city")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    city = small_city(args.seed, args.days) if args.small else City(args.seed, args.days)
    result = run(city)
    print(f"city: {result['devices']} devices, {result['days']} days, {result['faults']} faults, "
          f"{result['messages']} messages, {result['readings']} readings; {result['seconds']:.0f} s, "
          f"Detectors.sample {result['sample_us_per_message']:.2f} us/message")
    print(table(result))
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
