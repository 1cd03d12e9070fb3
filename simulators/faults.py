"""A simulated city with labelled injected faults: the data bench/detect.py measures the detectors on.

`City(seed, days, ...)` lays out boards and meters; `City.messages()` yields every telemetry message the
hub would take, in the hub's arrival order: `Message(now_ms, device, sensor, ts_ms, readings, gap)`, with
`readings` as the ingest decodes them ((quantity, value, quality), the quality from
protocols.catalogue.check) and `gap` True when earlier messages of the board were lost. `City.faults` is the
list of every injected fault: `Fault(kind, device, quantity, start_ms, end_ms, due_ms)` (`due_ms`: for
aqi_forecast, when the AQI threshold is crossed; otherwise end_ms). Deterministic from the seed.

The city: air boards (pm25, pm10 from a `pms` sensor, co2, temperature, humidity from an `env` sensor,
every 60 s) in co-located groups of three and two and on their own; water meters (water_flow, water_volume),
heat meters (heat_flow, heat_energy) and energy meters (power_active, energy_import), every 300 s. Signals
have daily cycles (traffic peaks, night lows, weekend shifts), weather that wanders, per-sensor gain and
noise and the sensors' resolution (PMS5003 reads whole ug/m3). A group's boards see one district signal.

Faults (one at a time per device, none in the first `warmup_days`, so baselines can learn), of every kind
of hub.detect.events.KINDS: flatline (frozen value), spike (1-3 samples an impossible step away),
out_of_range (readings outside the catalogue's range), drift (an offset ramping up over hours, on a
grouped board, one board of a group at a time), silent (no messages; half the boards deliver their
backlog at the end, half lose it), clock (board clock minutes ahead or behind), seq_gaps (a lossy link
drops 15-40 % of messages), leak (a constant extra flow through day and night), counter_stopped (the
register freezes), counter_backwards (a reset to a lower value, or a meter counting backwards for hours),
consumption (a surge of 2.5-5x the usual use for hours, by day), aqi_forecast (a district pollution
episode ramping pm25 past the AQI threshold; labelled on each of its boards from the ramp's start, due
when the board's AQI crosses).

Imports the standard library and protocols (catalogue, aqi); knows nothing of the hub's detectors.
"""

from __future__ import annotations

import heapq
import math
import random
from typing import TYPE_CHECKING, NamedTuple

from protocols import aqi, catalogue

if TYPE_CHECKING:
    from collections.abc import Iterator

DAY = 86_400_000
HOUR = 3_600_000
MIN = 60_000
START = 1_767_571_200_000
"""2026-01-05 00:00 UTC, a Monday."""
LOCAL = 5 * HOUR
"""Astana, UTC+5: the cycles follow local time."""
STEP = 5 * MIN
"""The district signals' resolution."""
AIR_IV = 60_000
METER_IV = 300_000
AQI_THRESHOLD = 100


class Fault(NamedTuple):
    kind: str
    device: str
    quantity: str
    start_ms: int
    end_ms: int
    due_ms: int


class Message(NamedTuple):
    now_ms: int
    device: str
    sensor: str
    ts_ms: int
    readings: list[tuple[str, float, str]]
    gap: bool


def _q(quantity: str, value: float) -> tuple[str, float, str]:
    return (quantity, value, catalogue.check(quantity, value))


def _hour(ms: int) -> float:
    return ((ms + LOCAL) % DAY) / HOUR


def _weekend(ms: int) -> bool:
    return ((ms + LOCAL) // DAY + 3) % 7 >= 5


def _bump(h: float, centre: float, width: float) -> float:
    d = min(abs(h - centre), 24 - abs(h - centre))
    return math.exp(-(d * d) / (2 * width * width))


class _District:
    """One place's air: pm25 (with its pollution episodes), traffic, temperature, humidity per 5 minutes."""

    def __init__(self, rng: random.Random, steps: int) -> None:
        self.pm: list[float] = []
        self.traffic: list[float] = []
        self.temp: list[float] = []
        self.hum: list[float] = []
        weather = 0.0
        tw = 0.0
        level = rng.uniform(7, 12)
        for i in range(steps):
            ms = START + i * STEP
            h = _hour(ms)
            weather = 0.995 * weather + rng.gauss(0, 0.12)
            tw = 0.998 * tw + rng.gauss(0, 0.08)
            traffic = _bump(h, 8.5, 1.2) + 0.8 * _bump(h, 19, 1.8) + (0.0 if _weekend(ms) else 0.3) * _bump(h, 13, 3)
            pm = level * (1 + 0.6 * traffic + 0.35 * _bump(h, 22, 2)) * math.exp(max(-0.8, min(0.5, weather * 0.25)))
            self.pm.append(min(pm, 26.0))
            self.traffic.append(traffic)
            self.temp.append(-8 + 5 * math.sin((h - 9) / 24 * 2 * math.pi) + 3 * tw)
            self.hum.append(max(25.0, min(95.0, 72 - 12 * math.sin((h - 9) / 24 * 2 * math.pi) - 2 * tw)))

    def episode(self, i0: int, peak: float, rise: int, hold: int, fall: int) -> None:
        for k in range(rise + hold + fall):
            if i0 + k >= len(self.pm):
                return
            f = k / rise if k < rise else 1.0 if k < rise + hold else 1 - (k - rise - hold) / fall
            self.pm[i0 + k] += peak * f


class _Device:
    """One board or meter: its kind, district, own gain and the faults planned on it."""

    def __init__(self, name: str, kind: str, district: _District | None, group: str, rng: random.Random) -> None:
        self.name = name
        self.kind = kind
        self.district = district
        self.group = group
        self.gain = rng.gauss(1, 0.05)
        self.seed = rng.getrandbits(32)
        self.size = rng.uniform(0.6, 3.0)  # meters: the building's size
        self.faults: list[Fault] = []
        self.busy: list[tuple[int, int]] = []


KINDS_AIR = ("flatline", "spike", "out_of_range", "silent", "clock", "seq_gaps")
KINDS_METER = ("silent", "clock", "leak", "counter_stopped", "counter_backwards", "consumption")


class City:
    """The city, its faults and its messages (see the module docstring)."""

    def __init__(self, seed: int = 17, days: int = 30, *, groups3: int = 14, groups2: int = 8, air_single: int = 14,
                 water: int = 30, heat: int = 20, energy: int = 20, faults_per_kind: int = 24,
                 warmup_days: int = 7, episodes: int = 24) -> None:
        self.seed = seed
        self.days = days
        self.start = START
        self.end = START + days * DAY
        rng = random.Random(seed)  # noqa: S311 - a simulation, not a secret
        steps = days * DAY // STEP + 1
        self.devices: list[_Device] = []
        self.districts: list[_District] = []
        self.groups: dict[str, str] = {}
        """device -> group of co-located boards."""
        n = 0
        for g, size in enumerate([3] * groups3 + [2] * groups2 + [1] * air_single):
            district = _District(rng, steps)
            self.districts.append(district)
            for _ in range(size):
                n += 1
                group = f"g{g:02d}" if size > 1 else ""
                dev = _Device(f"air-{n:03d}", "air", district, group, rng)
                self.devices.append(dev)
                if group:
                    self.groups[dev.name] = group
        for kind, count in (("water", water), ("heat", heat), ("energy", energy)):
            for i in range(count):
                self.devices.append(_Device(f"{kind}-{i + 1:03d}", kind, None, "", rng))
        self.faults: list[Fault] = []
        self.episode_boards: list[tuple[str, int, int]] = []
        """(device, start, end) of every board in a pollution episode, whether its AQI crosses or not."""
        self._plan(rng, faults_per_kind, warmup_days, episodes)
        self.faults.sort(key=lambda f: (f.start_ms, f.device))

    # ---------------------------------------------------------------------------------------------- plan
    def _free(self, dev: _Device, start: int, end: int) -> bool:
        return all(end + DAY // 2 < s or start > e + DAY // 2 for s, e in dev.busy) and end < self.end - HOUR

    def _place(self, rng: random.Random, pool: list[_Device], kind: str, quantity: str,
               duration: tuple[float, float], lo: int) -> Fault | None:
        for _ in range(200):
            dev = rng.choice(pool)
            start = rng.randrange(lo, self.end - DAY // 4, MIN)
            end = start + int(rng.uniform(*duration))
            if self._free(dev, start, end) and not (kind == "drift" and self._mate_drifts(dev, start, end)):
                fault = Fault(kind, dev.name, quantity, start, end, end)
                dev.busy.append((start, end))
                dev.faults.append(fault)
                self.faults.append(fault)
                return fault
        return None

    def _plan(self, rng: random.Random, per_kind: int, warmup_days: int, episodes: int) -> None:
        lo = self.start + warmup_days * DAY
        air = [d for d in self.devices if d.kind == "air"]
        grouped = [d for d in air if d.group]
        meters = [d for d in self.devices if d.kind != "air"]
        flows = [d for d in meters if d.kind in ("water", "heat")]
        everyone = air + meters
        spans = {
            "flatline": (4 * HOUR, 20 * HOUR), "spike": (MIN, 3 * MIN), "out_of_range": (5 * MIN, 3 * HOUR),
            "drift": (2 * DAY, 5 * DAY), "silent": (20 * MIN, 12 * HOUR), "clock": (6 * HOUR, 3 * DAY),
            "seq_gaps": (3 * HOUR, 2 * DAY), "leak": (30 * HOUR, 4 * DAY), "counter_stopped": (8 * HOUR, 2 * DAY),
            "counter_backwards": (MIN, 12 * HOUR), "consumption": (4 * HOUR, 10 * HOUR),
        }
        for kind, span in spans.items():
            pool = {"drift": grouped, "seq_gaps": air, "leak": flows, "silent": everyone, "clock": everyone,
                    "counter_stopped": meters, "counter_backwards": meters, "consumption": meters}.get(kind, air)
            for _ in range(per_kind):
                quantity = self._quantity(rng, kind, pool)
                if kind == "consumption":  # a surge by day: hours 8..16 local
                    self._place_day(rng, pool, span, lo)
                    continue
                self._place(rng, pool if quantity[0] == "" else [d for d in pool if quantity[0] in ("", d.kind)],
                            kind, quantity[1], span, lo)
        self._episodes(rng, episodes, lo)

    def _mate_drifts(self, dev: _Device, start: int, end: int) -> bool:
        """Another board of dev's group drifts around then: two drifting boards of a pair cannot be told
        apart (nor can a group whose majority drifts), so one drift at a time per group."""
        return any(f.kind == "drift" and f.start_ms < end + DAY // 2 and start < f.end_ms + DAY // 2
                   for mate in self.devices if mate.group == dev.group and mate is not dev for f in mate.faults)

    def _place_day(self, rng: random.Random, pool: list[_Device], span: tuple[float, float], lo: int) -> None:
        for _ in range(200):
            dev = rng.choice(pool)
            day = rng.randrange((lo - self.start) // DAY + 1, self.days)
            start = self.start + day * DAY - LOCAL + rng.randrange(8, 13) * HOUR + rng.randrange(0, 60) * MIN
            end = start + int(rng.uniform(*span))
            if self._free(dev, start, end):
                fault = Fault("consumption", dev.name, _COUNTER[dev.kind], start, end, end)
                dev.busy.append((start, end))
                dev.faults.append(fault)
                self.faults.append(fault)
                return

    def _quantity(self, rng: random.Random, kind: str, pool: list[_Device]) -> tuple[str, str]:
        """(device kind the fault needs or "", quantity or "")."""
        if kind in ("flatline", "spike"):
            return ("air", rng.choice(("pm25", "pm10", "co2", "temperature", "humidity")))
        if kind == "out_of_range":
            return ("air", rng.choice(("pm25", "co2", "temperature", "humidity")))
        if kind == "drift":
            return ("air", rng.choice(("co2", "temperature", "humidity")))
        if kind in ("leak", "counter_stopped", "counter_backwards"):
            kinds = sorted({d.kind for d in pool})
            dk = rng.choice(kinds)
            if kind == "leak":
                return (dk, "water_flow" if dk == "water" else "heat_flow")
            return (dk, _COUNTER[dk])
        return ("", "")

    def _episodes(self, rng: random.Random, count: int, lo: int) -> None:
        """District pollution episodes, labelled aqi_forecast on each board that crosses the threshold."""
        boards: dict[int, list[_Device]] = {}
        for dev in self.devices:
            if dev.district is not None:
                boards.setdefault(id(dev.district), []).append(dev)
        done = 0
        for _ in range(count * 50):
            if done >= count:
                break
            district = rng.choice(self.districts)
            members = boards[id(district)]
            i0 = rng.randrange((lo - self.start) // STEP, (self.end - self.start) // STEP - 200)
            rise, hold, fall = rng.randint(12, 36), rng.randint(12, 60), rng.randint(24, 48)
            start = self.start + i0 * STEP
            end = start + (rise + hold + fall) * STEP
            if not all(self._free(d, start, end) for d in members):
                continue
            district.episode(i0, rng.uniform(35, 110), rise, hold, fall)
            for dev in members:
                dev.busy.append((start, end))
                self.episode_boards.append((dev.name, start, end))
                due = None
                for k in range(rise + hold):
                    if aqi.pm25_index(max(0.0, district.pm[i0 + k] * dev.gain)) > AQI_THRESHOLD:
                        due = start + k * STEP
                        break
                if due is None:
                    continue
                fault = Fault("aqi_forecast", dev.name, "pm25", start, start + (rise + hold) * STEP, due)
                dev.faults.append(fault)
                self.faults.append(fault)
            done += 1

    # ---------------------------------------------------------------------------------------------- messages
    def messages(self) -> Iterator[Message]:
        """Every board's messages merged in the hub's arrival order (now_ms)."""
        return heapq.merge(*(self._device(dev) for dev in self.devices), key=lambda m: m.now_ms)

    def _device(self, dev: _Device) -> Iterator[Message]:  # noqa: C901, PLR0912 - one board's life, in order
        rng = random.Random(dev.seed)  # noqa: S311 - a simulation, not a secret
        iv = AIR_IV if dev.kind == "air" else METER_IV
        t = self.start + rng.randrange(0, iv, 1000)
        silent = [f for f in dev.faults if f.kind == "silent"]
        backlog_ok = {f: rng.random() < 0.5 for f in silent}
        backlog: list[Message] = []
        lost = False
        seq_loss = [(f, rng.uniform(0.15, 0.4)) for f in dev.faults if f.kind == "seq_gaps"]
        clocks = [(f, rng.choice((1, -1)) * rng.randrange(3, 40) * MIN) for f in dev.faults if f.kind == "clock"]
        state = _MeterState(dev, rng) if dev.kind != "air" else None
        air = _AirState(dev, rng) if dev.kind == "air" else None
        while t < self.end:
            active = [f for f in dev.faults if f.start_ms <= t < f.end_ms]
            offset = 0
            for f, off in clocks:
                if f in active:
                    offset = off
            if air is not None:
                msgs = air.sample(t, active)
            elif state is not None:
                msgs = state.sample(t, active)
            out = [Message(t, dev.name, sensor, t + offset, readings, gap=False) for sensor, readings in msgs]
            quiet = next((f for f in silent if f in active), None)
            if quiet is not None:
                if backlog_ok[quiet]:
                    backlog += out
                else:
                    lost = True
            else:
                if backlog:
                    # the board sends its buffer on reconnect, 200 messages a second
                    for k, m in enumerate(backlog):
                        yield m._replace(now_ms=t + k * 5)
                    t2 = t + len(backlog) * 5
                    backlog = []
                    out = [m._replace(now_ms=max(m.now_ms, t2)) for m in out]
                drop = next((p for f, p in seq_loss if f in active), 0.0002)
                for m in out:
                    if rng.random() < drop:
                        lost = True
                        continue
                    yield m._replace(gap=lost) if lost else m
                    lost = False
            t += iv + rng.randrange(-300, 301)


_COUNTER = {"water": "water_volume", "heat": "heat_energy", "energy": "energy_import"}
_FLOW = {"water": "water_flow", "heat": "heat_flow", "energy": "power_active"}


def _active(active: list[Fault], kind: str) -> Fault | None:
    for f in active:
        if f.kind == kind:
            return f
    return None


class _AirState:
    def __init__(self, dev: _Device, rng: random.Random) -> None:
        self.dev = dev
        self.rng = rng
        self.frozen: dict[tuple[Fault, str], float] = {}
        self.last: dict[str, float] = {}
        self.spike: dict[Fault, float] = {}
        self.drift: dict[Fault, tuple[float, int]] = {}
        self.oor: dict[Fault, float] = {}

    def sample(self, t: int, active: list[Fault]) -> list[tuple[str, list[tuple[str, float, str]]]]:
        dev, rng = self.dev, self.rng
        district = dev.district
        if district is None:
            return []
        i = (t - START) // STEP
        pm = district.pm[i] * dev.gain
        values = {
            "pm25": float(max(0, round(pm + rng.gauss(0, 1.0 + 0.08 * pm)))),
            "pm10": float(max(0, round(pm * 1.6 + rng.gauss(0, 1.5 + 0.1 * pm)))),
            "co2": float(round(425 + 60 * district.traffic[i] * dev.gain + rng.gauss(0, 6))),
            "temperature": round(district.temp[i] + (dev.gain - 1) * 3 + rng.gauss(0, 0.08), 2),
            "humidity": round(district.hum[i] + (dev.gain - 1) * 10 + rng.gauss(0, 0.6), 1),
        }
        for f in active:
            q = f.quantity
            if f.kind == "flatline":
                values[q] = self.frozen.setdefault((f, q), self.last.get(q, values[q]))
            elif f.kind == "spike":
                mag = self.spike.setdefault(f, rng.uniform(1.3, 3.0))
                step = {"pm25": 300, "pm10": 400, "co2": 2000, "temperature": 10, "humidity": -30}[q]
                values[q] = values[q] + step * mag if q != "humidity" else max(0.0, values[q] + step * min(mag, 2))
                values[q] = min(values[q], catalogue.QUANTITIES[q][3])
            elif f.kind == "out_of_range":
                bad = self.oor.setdefault(f, rng.choice({"pm25": (1500.0, 65535.0), "co2": (0.0, 12000.0),
                                                         "temperature": (-80.0, 85.0), "humidity": (120.0, -5.0)}[q]))
                values[q] = bad
            elif f.kind == "drift":
                size, ramp = self.drift.setdefault(f, (rng.choice((1, -1)) * rng.uniform(2.5, 5),
                                                       int(rng.uniform(6, 24) * HOUR)))
                tol = {"co2": 100.0, "temperature": 1.5, "humidity": 8.0}[q]
                values[q] = round(values[q] + size * tol * min(1.0, (t - f.start_ms) / ramp), 2)
        self.last.update(values)
        pms = [_q("pm25", values["pm25"]), _q("pm10", values["pm10"])]
        env = [_q("co2", values["co2"]), _q("temperature", values["temperature"]), _q("humidity", values["humidity"])]
        return [("pms", pms), ("env", env)]


class _MeterState:
    def __init__(self, dev: _Device, rng: random.Random) -> None:
        self.dev = dev
        self.rng = rng
        self.counter = rng.uniform(100, 50_000)
        self.t = 0
        self.leak: dict[Fault, float] = {}
        self.surge: dict[Fault, float] = {}
        self.reverse: dict[Fault, bool] = {}
        self.reset: set[Fault] = set()

    def flow(self, t: int) -> float:
        dev, rng = self.dev, self.rng
        h = _hour(t)
        weekend = _weekend(t)
        if dev.kind == "water":
            shift = 1.5 if weekend else 0.0
            day = 0.9 * _bump(h, 7.5 + shift, 1.0) + _bump(h, 20, 1.8) + 0.35 * _bump(h, 13, 3)
            if 0.5 <= h < 5.5 and rng.random() < 0.7:
                return 0.0
            return dev.size * max(0.0, (0.03 + day) * rng.lognormvariate(0, 0.3))
        if dev.kind == "heat":
            return dev.size * (1.0 + 0.12 * math.cos((h - 4) / 24 * 2 * math.pi)) * rng.gauss(1, 0.02)
        base = 4000 * dev.size
        day = (0.6 if weekend else 1.0) * (_bump(h, 11, 3) + 0.7 * _bump(h, 19, 2))
        return base * (0.35 + day) * rng.gauss(1, 0.05)

    def sample(self, t: int, active: list[Fault]) -> list[tuple[str, list[tuple[str, float, str]]]]:
        dev, rng = self.dev, self.rng
        flow = self.flow(t)
        leak = _active(active, "leak")
        if leak is not None:
            size = {"water": (0.05, 0.4), "heat": (0.6, 1.0)}[dev.kind]
            flow += self.leak.setdefault(leak, rng.uniform(*size) * (1 if dev.kind == "water" else dev.size))
        surge = _active(active, "consumption")
        if surge is not None:
            flow *= self.surge.setdefault(surge, rng.uniform(2.5, 5))
        dt_h = (t - self.t) / HOUR if self.t else 0.0
        self.t = t
        per_h = flow / 1000 if dev.kind == "energy" else flow * (25 * 1.163 if dev.kind == "heat" else 1.0)
        back = _active(active, "counter_backwards")
        stopped = _active(active, "counter_stopped")
        if back is not None:
            reverse = self.reverse.setdefault(back, rng.random() < 0.5)
            if reverse:
                self.counter -= per_h * dt_h
            elif back not in self.reset:
                self.reset.add(back)
                self.counter *= rng.uniform(0.0, 0.5)  # reset or swapped register
            else:
                self.counter += per_h * dt_h
        elif stopped is None:
            self.counter += per_h * dt_h
        res = {"water": 3, "heat": 1, "energy": 2}[dev.kind]
        flow_r = round(flow, 3) if dev.kind != "energy" else round(flow)
        return [("meter", [_q(_FLOW[dev.kind], float(flow_r)), _q(_COUNTER[dev.kind], round(self.counter, res))])]


def device_days(city: City) -> float:
    return len(city.devices) * city.days
