"""District coverage: per district, how many devices the site expects, how many are online and reporting on
time (overall and per quantity), the air quality, the consumption and the open alerts.

Two parts:
- `LastValues`: each device's last message per sensor (so the last value of each quantity), its timestamp
  and the interval the sensor reports at, learned from the messages themselves (a smoothed gap between two
  messages of the same sensor). Fed once per telemetry message by the ingest (hub.ingest.process: `sample`,
  one dict lookup and a list update: 0.3-0.6 us a message measured here, about 5 % of the message's
  processing) and with the Modbus poller's Readings (`observe`). Bounded: at most `max_devices` devices
  (100,000; further ids are not tracked), each entry a device's sensor holding its last decoded message (a few
  hundred bytes).
- `summaries(...)`: the District documents (docs/operators.md), computed from the site's places (each expected
  device with its district, coordinates, online state and the quantities it is expected to report), the last
  values and the open alerts; `coverage_readings` turns them into `qala_coverage` Readings (docs/influxdb.md).

A device reports *on time* while its newest reading of a city quantity (air, energy, water, gas, heat; its
health readings only if it sends nothing else) is younger than `factor` x its interval (the learned one; a
Modbus device's configured poll interval; `default_interval_s` before anything is learned). Per quantity,
only city quantities count: a board's health and setpoints are not coverage. A quantity is
*expected* of a device when its birth message lists it (caps sensors' `q`), its Modbus profile reads it, or
it has reported it since the hub started. AQI: a district's highest current index, from an `aqi` reading or
computed from pm25/pm10 (protocols.aqi). Consumption: the sums of the current `water_flow` (m3/h),
`power_active` (W, given in kW) and `heat_power` (kW) of devices reporting on time; null where no device of
the district reports it.

Imports the standard library, hub.model and protocols (catalogue, aqi); knows nothing of MQTT, InfluxDB, the
store or the service that feeds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.model import COVERAGE, Reading
from protocols import aqi, catalogue

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

MAX_DEVICES = 100_000
SMOOTH = 8
"""The learned interval moves 1/SMOOTH of the way to each new gap (an exponential average)."""
OUTLIER = 4.0
"""A gap longer than OUTLIER x the interval (an outage) moves it as if it were OUTLIER x: outages do not
teach a device a slow interval."""
DISTRICT_SENSOR = "district"
DISTRICT_PREFIX = "district:"
"""The `device` tag of a district's qala_coverage points: `district:<name>` (`district:` for devices without
one), so they never mix with a real device's series."""

_QUANTITIES = catalogue.QUANTITIES
_MEASURED = frozenset(q for q, spec in _QUANTITIES.items() if spec[0] not in (catalogue.DEVICE, catalogue.ACTUATOR))
"""Quantities of the city (air, energy, water, gas, heat): what coverage counts. A board's own health
(`device`) and its setpoints (`actuator`) are not coverage."""


class LastValues:
    """device -> sensor -> [ts of its newest message (board clock, ms), that message's readings, the
    sensor's interval (ms, 0.0 until learned)]: per message one dict lookup and one list update, whatever the
    number of readings in it; values per quantity are unpacked only when asked for (`entries`, `last`)."""

    def __init__(self, max_devices: int = MAX_DEVICES) -> None:
        self.max_devices = max_devices
        self.devices: dict[str, dict[str, list[Any]]] = {}

    def sample(self, device: str, sensor: str, ts: int, readings: list[tuple[str, float, str]]) -> None:
        """One telemetry message's decoded readings (quantity, value, quality). The hot path."""
        sensors = self.devices.get(device)
        if sensors is None:
            if len(self.devices) >= self.max_devices:
                return
            sensors = self.devices[device] = {}
        entry = sensors.get(sensor)
        if entry is None:
            sensors[sensor] = [ts, readings, 0.0]
            return
        gap = ts - entry[0]
        if gap > 0:  # a late or repeated message changes nothing
            every = entry[2]
            entry[2] = gap if not every else every + (min(gap, OUTLIER * every) - every) / SMOOTH
            entry[0] = ts
            entry[1] = readings

    def observe(self, readings: Iterable[Reading]) -> None:
        """Readings from elsewhere (the Modbus poller): the catalogue quantities among them, per message."""
        batches: dict[tuple[str, str, int], list[tuple[str, float, str]]] = {}
        for r in readings:
            if r.field in _QUANTITIES and isinstance(r.value, float):
                batches.setdefault((r.device, r.sensor, r.ts), []).append((r.field, r.value, r.quality))
        for (device, sensor, ts), batch in batches.items():
            self.sample(device, sensor, ts, batch)

    def entries(self, device: str) -> dict[str, tuple[float, int, float, str]]:
        """quantity -> (last value, its ts, the interval of the sensor reporting it in ms, 0.0 if unknown, its
        quality)."""
        out: dict[str, tuple[float, int, float, str]] = {}
        for ts, readings, every in self.devices.get(device, {}).values():
            for quantity, value, quality in readings:
                old = out.get(quantity)
                if old is None or ts > old[1]:
                    out[quantity] = (value, ts, every, quality)
        return out

    def last(self, device: str) -> dict[str, tuple[float, int]]:
        """quantity -> (value, ts) of the device's last readings."""
        return {q: (v, ts) for q, (v, ts, _every, _quality) in self.entries(device).items()}


@dataclass
class Place:
    """An expected device: where it is and what the hub knows of its state."""

    district: str | None = None
    lat: float | None = None
    lon: float | None = None
    online: bool = False
    last_seen: int | None = None
    """Hub clock (ms) of its latest message, None if never seen."""
    quantities: frozenset[str] = frozenset()
    """What it is expected to report (birth caps or Modbus profile)."""
    interval_s: float | None = None
    """A configured reporting interval (a Modbus device's poll interval), else learned."""
    transport: str = "mqtt"
    """mqtt (a board) or modbus (polled by the hub)."""
    extra: dict[str, Any] = field(default_factory=dict)


def device_view(name: str, place: Place, last: Mapping[str, tuple[float, int, float, str]]) -> dict[str, Any]:
    """The fields a device gets in GET /v1/devices: transport, district, lat, lon, online, last_seen, values
    (each with its ts and quality: `range` is a reading outside its quantity's plausible range); `last` is
    LastValues.entries."""
    return {"device": name, "transport": place.transport, "district": place.district, "lat": place.lat,
            "lon": place.lon, "online": place.online, "last_seen": place.last_seen,
            "values": {q: {"value": v, "ts": ts, "quality": quality}
                       for q, (v, ts, _every, quality) in sorted(last.items())}}


def summaries(  # noqa: C901, PLR0912 - one pass over the devices, one branch per figure
    site: Mapping[str, Place],
    values: LastValues,
    open_alerts: Mapping[str, int],
    now_ms: int,
    *,
    factor: float = 3.0,
    default_interval_s: float = 60.0,
) -> list[dict[str, Any]]:
    """The District documents, sorted by district ("" for devices without one). `open_alerts`: device ->
    its open alerts."""
    out: dict[str, dict[str, Any]] = {}
    aqis: dict[str, list[float]] = {}
    sums: dict[str, dict[str, list[float]]] = {}
    for name, place in site.items():
        district = place.district or ""
        doc = out.get(district)
        if doc is None:
            doc = out[district] = {"district": district, "expected": 0, "online": 0, "on_time": 0, "coverage": 0.0,
                                   "quantities": {}, "aqi": None, "open_alerts": 0,
                                   "consumption": {"water_m3_h": None, "energy_kw": None, "heat_kw": None}}
            aqis[district] = []
            sums[district] = {"water_m3_h": [], "energy_kw": [], "heat_kw": []}
        doc["expected"] += 1
        doc["online"] += place.online
        doc["open_alerts"] += open_alerts.get(name, 0)
        everything = values.entries(name)
        known = {q: e for q, e in everything.items() if q in _MEASURED} or everything  # health alone: still alive
        configured = None if place.interval_s is None else place.interval_s * 1000
        newest = max((e[1] for e in known.values()), default=None)
        every = min((e[2] for e in known.values() if e[2]), default=0.0)
        due = factor * (configured or every or default_interval_s * 1000)
        if newest is not None and now_ms - newest <= due:
            doc["on_time"] += 1
        fresh: dict[str, float] = {}
        for quantity in (place.quantities | set(known)) & _MEASURED:
            per = doc["quantities"].setdefault(quantity, {"expected": 0, "on_time": 0})
            per["expected"] += 1
            entry = known.get(quantity)
            if entry is None:
                continue
            limit = factor * (configured or entry[2] or default_interval_s * 1000)
            if now_ms - entry[1] <= limit:
                per["on_time"] += 1  # it reports: on time, whatever it reads
                if entry[3] == catalogue.OK:  # an implausible reading (`range`) is no air quality nor consumption
                    fresh[quantity] = entry[0]
        index = _aqi(fresh)
        if index is not None:
            aqis[district].append(index)
        for key, quantity, scale in (("water_m3_h", "water_flow", 1.0), ("energy_kw", "power_active", 0.001),
                                     ("heat_kw", "heat_power", 1.0)):
            if quantity in fresh:
                sums[district][key].append(fresh[quantity] * scale)
    for district, doc in out.items():
        doc["coverage"] = round(doc["on_time"] / doc["expected"], 4) if doc["expected"] else 0.0
        doc["quantities"] = dict(sorted(doc["quantities"].items()))
        if aqis[district]:
            doc["aqi"] = max(aqis[district])
        for key, parts in sums[district].items():
            if parts:
                doc["consumption"][key] = round(math.fsum(parts), 6)
    return [out[d] for d in sorted(out)]


def _aqi(fresh: Mapping[str, float]) -> float | None:
    if "aqi" in fresh:
        return float(fresh["aqi"])
    pm25, pm10 = fresh.get("pm25"), fresh.get("pm10")
    if pm25 is None and pm10 is None:
        return None
    return float(aqi.aqi(pm25=pm25, pm10=pm10))


def coverage_readings(site: str, districts: Iterable[Mapping[str, Any]], now_ms: int) -> list[Reading]:
    """`qala_coverage` points: per district (device tag `district:<name>`, sensor `district`) the fields
    expected, online, on_time, coverage, open_alerts, aqi, water_m3_h, energy_kw, heat_kw (those known);
    per quantity (sensor = the quantity) expected and on_time."""
    out: list[Reading] = []
    ok = catalogue.OK
    for doc in districts:
        tag = DISTRICT_PREFIX + doc["district"]
        fields: list[tuple[str, float]] = [(k, float(doc[k])) for k in ("expected", "online", "on_time", "coverage",
                                                                         "open_alerts")]
        if doc["aqi"] is not None:
            fields.append(("aqi", float(doc["aqi"])))
        fields += [(k, float(v)) for k, v in doc["consumption"].items() if v is not None]
        out += [Reading(COVERAGE, site, tag, DISTRICT_SENSOR, ok, f, v, now_ms) for f, v in fields]
        for quantity, per in doc["quantities"].items():
            out += [Reading(COVERAGE, site, tag, quantity, ok, f, float(per[f]), now_ms)
                    for f in ("expected", "on_time")]
    return out
