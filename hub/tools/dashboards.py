"""Operator dashboards: one list of panels, written as a Grafana dashboard (InfluxQL, InfluxDB 1.x) and as an
InfluxDB 2 dashboard template (Flux). `python -m hub.tools.dashboards` rewrites dashboards/*.json.

Every panel has an InfluxQL query and a Flux query over the schema of docs/influxdb.md. The AQI: the hub
stores no AQI per device (boards may report an `aqi` field, which one panel shows; a district's current one
is in `qala_coverage`, on the districts table). The Flux panel computes
the EPA AQI from PM2.5 and PM10 means with the breakpoints of protocols/aqi.py (generated from its tables).
InfluxQL has no conditional expressions, so the Grafana panels compute the PM2.5 sub-index only, as a
continuous piecewise-linear approximation written with abs() hinges through the band ends of the same
tables: within 1 index point of protocols.aqi.pm25_index (the EPA's own steps of 1 between bands are
smoothed). Pure: builds dicts; only `write()` touches files.
"""

# Query texts for dashboards, never run with outside input (S608); long queries are split over lines (ISC004).
# ruff: noqa: S608, ISC004

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocols import aqi

OUT = Path(__file__).resolve().parents[2] / "dashboards"
GRAFANA_FILE = "grafana-influxql.json"
INFLUX2_FILE = "influxdb2-template.json"
BUCKET = "qala"
SITE = '"site" =~ /^$site$/'
OK = "\"quality\" = 'ok'"
WINDOW = 'GROUP BY time($__interval), "device" fill(none)'
RANGE = "range(start: v.timeRangeStart, stop: v.timeRangeStop)"


@dataclass(frozen=True)
class Panel:
    section: str
    title: str
    influxql: tuple[str, ...]
    flux: str
    kind: str = "timeseries"  # timeseries | table | stat
    unit: str = ""
    description: str = ""


def _series(measurement: str, field: str, fn: str = "mean") -> tuple[str, str]:
    """InfluxQL and Flux for one field per device, good readings only, windowed."""
    q = f'SELECT {fn}("{field}") FROM "{measurement}" WHERE {SITE} AND {OK} AND $timeFilter {WINDOW}'
    f = (f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
         f'  |> filter(fn: (r) => r._measurement == "{measurement}" and r._field == "{field}" and '
         f'r.site == v.site and r.quality == "ok")\n'
         f'  |> aggregateWindow(every: v.windowPeriod, fn: {fn}, createEmpty: false)\n'
         f'  |> group(columns: ["device"])')
    return q, f


def _daily(measurement: str, field: str) -> tuple[str, str]:
    """A meter register's daily increase per device."""
    q = (f'SELECT non_negative_difference(max("{field}")) FROM "{measurement}" WHERE {SITE} AND {OK} '
         f'AND $timeFilter GROUP BY time(1d), "device" fill(none)')
    f = (f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
         f'  |> filter(fn: (r) => r._measurement == "{measurement}" and r._field == "{field}" and '
         f'r.site == v.site and r.quality == "ok")\n'
         f'  |> group(columns: ["device"])\n'
         f'  |> aggregateWindow(every: 1d, fn: max, createEmpty: false)\n'
         f'  |> difference(nonNegative: true)')
    return q, f


def _flux_index(name: str, table: tuple[tuple[float, float, int, int], ...], scale: int) -> str:
    """A Flux function computing one EPA sub-index as protocols.aqi does: truncate, clamp into a band, interpolate."""
    bands = [
        f"if t <= {float(c_hi):.1f} then math.round(x: {float(i_hi - i_lo):.1f} / {float(c_hi - c_lo):.1f} * "
        f"(math.mMax(x: t, y: {float(c_lo):.1f}) - {float(c_lo):.1f}) + {float(i_lo):.1f})"
        for c_lo, c_hi, i_lo, i_hi in table
    ]
    chain = "\n    else ".join([*bands, f"{float(aqi.AQI_MAX):.1f}"])
    return (f"{name} = (c) => {{\n  t = math.floor(x: c * {scale:.1f} + 0.000000001) / {scale:.1f}\n"
            f"  return {chain}\n}}")


def _aqi_flux() -> str:
    return "\n".join([
        'import "math"',
        _flux_index("pm25_index", aqi.PM25_BREAKPOINTS, 10),
        _flux_index("pm10_index", aqi.PM10_BREAKPOINTS, 1),
        f'from(bucket: "{BUCKET}")',
        f"  |> {RANGE}",
        '  |> filter(fn: (r) => r._measurement == "air" and (r._field == "pm25" or r._field == "pm10") and '
        'r.site == v.site and r.quality == "ok")',
        "  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)",
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        '  |> map(fn: (r) => ({_time: r._time, device: r.device, _field: "aqi", _value: math.mMax(\n'
        "      x: if exists r.pm25 then pm25_index(c: r.pm25) else 0.0,\n"
        "      y: if exists r.pm10 then pm10_index(c: r.pm10) else 0.0)}))",
        '  |> group(columns: ["device"])',
    ])


def pm25_hinges() -> tuple[float, list[tuple[float, float]]]:
    """(slope at 0, [(knot, slope change)]) of the line through (0, 0) and each PM2.5 band's (C_hi, I_hi),
    flat after the last band: f(x) = slope0 * x + sum(change * max(x - knot, 0))."""
    points = [(0.0, 0.0)] + [(float(c_hi), float(i_hi)) for _, c_hi, _, i_hi in aqi.PM25_BREAKPOINTS]
    slopes = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in itertools.pairwise(points)] + [0.0]
    return slopes[0], [(points[j + 1][0], slopes[j + 1] - slopes[j]) for j in range(len(points) - 1)]


def pm25_aqi_influxql(x: str) -> str:
    """The PM2.5 sub-index of the InfluxQL expression x, with max(y, 0) written as (abs(y) + y) / 2."""
    slope0, hinges = pm25_hinges()
    terms = [f"{slope0:.6g} * {x}"]
    terms += [f"{'-' if change < 0 else '+'} {abs(change) / 2:.6g} * (abs({x} - {knot:g}) + {x} - {knot:g})"
              for knot, change in hinges]
    return " ".join(terms)


AQI_COLOURS = ("green", "yellow", "orange", "red", "purple", "dark-red")


def aqi_thresholds() -> list[dict[str, Any]]:
    """Grafana threshold steps at the EPA categories' lower bounds (0, 51, 101, ...)."""
    lows: list[int | None] = [None] + [upper + 1 for upper, _ in aqi.CATEGORIES[:-1]]
    return [{"color": colour, "value": low} for low, colour in zip(lows, AQI_COLOURS, strict=True)]


def panels() -> list[Panel]:
    out: list[Panel] = []

    def add(section: str, title: str, pair: tuple[str, str], unit: str = "", **kw: Any) -> None:
        out.append(Panel(section, title, (pair[0],), pair[1], unit=unit, **kw))

    air = "Air quality"
    add(air, "PM2.5 per device", _series("air", "pm25"), "conμgm3")
    add(air, "PM10 per device", _series("air", "pm10"), "conμgm3")
    aqi_pm25 = pm25_aqi_influxql('mean("pm25")')
    about_aqi = (
        "US EPA AQI. Grafana/InfluxQL: the PM2.5 sub-index of the mean PM2.5, a piecewise-linear approximation "
        "within 1 point of protocols/aqi.py (InfluxQL has no conditionals). InfluxDB 2/Flux: the exact index, the "
        "larger of the PM2.5 and PM10 sub-indices. Both from window means of good readings: NowCast-style, not "
        "the official 24 h average. 0-50 good, 51-100 moderate, 101-150 unhealthy for sensitive groups, "
        "151-200 unhealthy, 201-300 very unhealthy, 301-500 hazardous."
    )
    out.append(Panel(
        air, "AQI now (EPA, from PM2.5)",
        (f'SELECT {aqi_pm25} AS "aqi_pm25" FROM "air" WHERE {SITE} AND {OK} AND time > now() - 1h GROUP BY "device"',),
        _aqi_flux(), kind="stat", description=about_aqi,
    ))
    out.append(Panel(
        air, "AQI per device (EPA, from PM2.5)",
        (f'SELECT {aqi_pm25} AS "aqi_pm25" FROM "air" WHERE {SITE} AND {OK} AND $timeFilter {WINDOW}',),
        _aqi_flux(), description=about_aqi,
    ))
    add(air, "AQI reported by boards", _series("air", "aqi", "max"),
        description="Only boards that compute an AQI themselves send the `aqi` field; the hub does not add one.")
    add(air, "CO2", _series("air", "co2"), "ppm")
    add(air, "Temperature", _series("air", "temperature"), "celsius")
    add(air, "Humidity", _series("air", "humidity"), "humidity")
    add(air, "NO2", _series("air", "no2"), "ppb")

    energy = "Energy"
    add(energy, "Active power per meter", _series("energy", "power_active"), "watt")
    add(energy, "Energy imported per day", _daily("energy", "energy_import"), "kwatth")
    add(energy, "Voltage", _series("energy", "voltage"), "volt")
    add(energy, "Power factor", _series("energy", "power_factor"))

    water = "Water and heat"
    add(water, "Water flow", _series("water", "water_flow"), "suffix: m³/h")
    add(water, "Water used per day", _daily("water", "water_volume"), "suffix: m³")
    add(water, "Heat: supply and return temperature", (
        f'SELECT mean("heat_supply_temp") AS "supply", mean("heat_return_temp") AS "return" FROM "heat" '
        f"WHERE {SITE} AND {OK} AND $timeFilter {WINDOW}",
        f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
        '  |> filter(fn: (r) => r._measurement == "heat" and (r._field == "heat_supply_temp" or '
        'r._field == "heat_return_temp") and r.site == v.site and r.quality == "ok")\n'
        "  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)\n"
        '  |> group(columns: ["device", "_field"])'), "celsius")
    add(water, "Heat power", _series("heat", "heat_power"), "kwatt")
    add(water, "Heat delivered per day", _daily("heat", "heat_energy"), "kwatth")

    health = "Device health"
    out.append(Panel(
        health, "Device status (latest)",
        ('SELECT last("state") AS "state", last("online") AS "online", last("safe") AS "safe", last("fw") AS "fw", '
         f'last("boot") AS "boot", last("error") AS "error" FROM "qala_device_status" WHERE {SITE} GROUP BY "device"',),
        f'from(bucket: "{BUCKET}")\n  |> range(start: -30d)\n'
        '  |> filter(fn: (r) => r._measurement == "qala_device_status" and r.site == v.site and '
        '(r._field == "state" or r._field == "fw" or r._field == "boot" or r._field == "error"))\n'
        '  |> group(columns: ["device", "_field"])\n  |> last()\n'
        '  |> pivot(rowKey: ["device"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> group()',
        kind="table",
        description="state online / offline (last will) / safe (config error; see error). Not online: see "
        "docs/operators.md.",
    ))
    out.append(Panel(
        health, "Readings not ok, by flag",
        (f'SELECT count("uptime") FROM "device" WHERE {SITE} AND "quality" != \'ok\' AND $timeFilter '
         'GROUP BY time($__interval), "quality" fill(none)',
         f'SELECT count("pm25") FROM "air" WHERE {SITE} AND "quality" != \'ok\' AND $timeFilter '
         'GROUP BY time($__interval), "quality", "device" fill(none)'),
        f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
        '  |> filter(fn: (r) => r._measurement == "air" and r.site == v.site and r.quality != "ok")\n'
        '  |> group(columns: ["quality", "device"])\n'
        "  |> aggregateWindow(every: v.windowPeriod, fn: count, createEmpty: false)",
        description="warmup: sensor warming up; range: outside the plausible range; fault: sensor error; "
        "stale: an old value repeated; lost: an actuator moved to its fail-safe.",
    ))
    add(health, "Free heap", _series("device", "heap_free", "min"), "bytes")
    add(health, "Wi-Fi signal", _series("device", "rssi"), "dBm")
    add(health, "Readings buffered on the board", _series("device", "buffered", "max"))
    add(health, "Readings dropped by the board (per day)", _daily("device", "dropped"))
    add(health, "Reconnects (per day)", _daily("device", "reconnects"))
    add(health, "Self resets: boards that could not work (per day)", _daily("device", "self_resets"))
    add(health, "Sender lagging (1: sampling faster than it sends)", _series("device", "lagging", "max"))
    out.append(Panel(
        health, "Hub: spool fill and write latency",
        ('SELECT max("spool_fill") AS "spool_fill", max("write_latency_max_ms") AS "write_latency_max_ms" '
         f'FROM "qala_hub" WHERE {SITE} AND $timeFilter GROUP BY time($__interval), "device" fill(none)',),
        f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
        '  |> filter(fn: (r) => r._measurement == "qala_hub" and r.site == v.site and '
        '(r._field == "spool_fill" or r._field == "write_latency_max_ms"))\n'
        "  |> aggregateWindow(every: v.windowPeriod, fn: max, createEmpty: false)",
    ))
    out.append(Panel(
        health, "Hub: messages rejected",
        ('SELECT non_negative_difference(last("rejects")) AS "rejects", '
         'non_negative_difference(last("rejects_unknown_device")) AS "unknown_device", '
         'non_negative_difference(last("seq_gaps")) AS "seq_gaps" '
         f'FROM "qala_hub" WHERE {SITE} AND $timeFilter GROUP BY time($__interval) fill(none)',),
        f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
        '  |> filter(fn: (r) => r._measurement == "qala_hub" and r.site == v.site and '
        '(r._field == "rejects" or r._field == "rejects_unknown_device" or r._field == "seq_gaps"))\n'
        "  |> aggregateWindow(every: v.windowPeriod, fn: last, createEmpty: false)\n"
        "  |> difference(nonNegative: true)",
    ))

    districts = "Districts and alerts"
    district = "\"sensor\" = 'district'"
    out.append(Panel(
        districts, "Coverage per district (devices reporting on time / expected)",
        (f'SELECT last("coverage") FROM "qala_coverage" WHERE {SITE} AND {district} AND $timeFilter '
         'GROUP BY time($__interval), "device" fill(none)',),
        f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
        '  |> filter(fn: (r) => r._measurement == "qala_coverage" and r._field == "coverage" and '
        'r.site == v.site and r.sensor == "district")\n'
        '  |> group(columns: ["device"])\n'
        "  |> aggregateWindow(every: v.windowPeriod, fn: last, createEmpty: false)",
        unit="percentunit",
        description="One line per district (device tag district:<name>; district: for devices without one), "
        "written every alerts.summary_interval (hub.coverage, docs/operators.md).",
    ))
    out.append(Panel(
        districts, "Districts now: expected, online, on time, open alerts, AQI",
        ('SELECT last("expected") AS "expected", last("online") AS "online", last("on_time") AS "on_time", '
         'last("coverage") AS "coverage", last("open_alerts") AS "open_alerts", last("aqi") AS "aqi" '
         f'FROM "qala_coverage" WHERE {SITE} AND {district} AND time > now() - 1h GROUP BY "device"',),
        f'from(bucket: "{BUCKET}")\n  |> range(start: -1h)\n'
        '  |> filter(fn: (r) => r._measurement == "qala_coverage" and r.site == v.site and r.sensor == "district")\n'
        '  |> group(columns: ["device", "_field"])\n  |> last()\n'
        '  |> pivot(rowKey: ["device"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> group()',
        kind="table",
        description="The latest coverage round of each district; the per-quantity figures are in the same "
        "measurement with sensor = the quantity.",
    ))
    out.append(Panel(
        districts, "Open alerts per district",
        (f'SELECT last("open_alerts") FROM "qala_coverage" WHERE {SITE} AND {district} AND $timeFilter '
         'GROUP BY time($__interval), "device" fill(none)',),
        f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
        '  |> filter(fn: (r) => r._measurement == "qala_coverage" and r._field == "open_alerts" and '
        'r.site == v.site and r.sensor == "district")\n'
        '  |> group(columns: ["device"])\n'
        "  |> aggregateWindow(every: v.windowPeriod, fn: last, createEmpty: false)",
        description="Alerts firing or acknowledged (not yet resolved) per district.",
    ))
    out.append(Panel(
        districts, "Alerts: transitions (latest first)",
        ('SELECT "id", "severity", "quantity", "district", "message", "count", "acked_by", "note" FROM "qala_alert" '
         f'WHERE {SITE} AND $timeFilter GROUP BY "device", "sensor", "quality" ORDER BY time DESC LIMIT 200',),
        f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
        '  |> filter(fn: (r) => r._measurement == "qala_alert" and r.site == v.site)\n'
        '  |> pivot(rowKey: ["_time", "device", "sensor", "quality"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> group()\n  |> sort(columns: ["_time"], desc: true)',
        kind="table",
        description="One row per alert transition: sensor is the kind (leak, flatline, ...), quality the state "
        "(firing, acknowledged, resolved). Acknowledge in the operator page or POST /v1/alerts/{id}/ack.",
    ))

    control = "Control actions"
    out.append(Panel(
        control, "Commands (latest first)",
        ('SELECT "value", "applied", "latency_ms", "attempts", "source", "transport", "reason" FROM "qala_command" '
         f'WHERE {SITE} AND $timeFilter GROUP BY "device", "sensor", "quality" ORDER BY time DESC LIMIT 200',),
        f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
        '  |> filter(fn: (r) => r._measurement == "qala_command" and r.site == v.site)\n'
        '  |> pivot(rowKey: ["_time", "device", "sensor", "quality"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> group()\n  |> sort(columns: ["_time"], desc: true)',
        kind="table",
        description="One row per command outcome: quality is applied, rejected or timed_out; sensor is the actuator.",
    ))
    out.append(Panel(
        control, "Commands not applied",
        (f'SELECT count("value") FROM "qala_command" WHERE {SITE} AND "quality" != \'applied\' AND $timeFilter '
         'GROUP BY time($__interval), "quality" fill(none)',),
        f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
        '  |> filter(fn: (r) => r._measurement == "qala_command" and r._field == "value" and r.site == v.site '
        'and r.quality != "applied")\n'
        '  |> group(columns: ["quality"])\n'
        "  |> aggregateWindow(every: v.windowPeriod, fn: count, createEmpty: false)",
    ))
    out.append(Panel(
        control, "Actuator setpoints (as the boards report them)",
        (f'SELECT last("setpoint") FROM "actuator" WHERE {SITE} AND $timeFilter '
         'GROUP BY time($__interval), "device", "sensor", "quality" fill(previous)',),
        f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
        '  |> filter(fn: (r) => r._measurement == "actuator" and r._field == "setpoint" and r.site == v.site)\n'
        '  |> group(columns: ["device", "sensor", "quality"])\n'
        "  |> aggregateWindow(every: v.windowPeriod, fn: last, createEmpty: false)",
        description="quality=lost marks a fail-safe move after the board lost its uplink.",
    ))
    out += _rollout_panels()
    return out


def _rollout_panels() -> list[Panel]:
    """Over-the-air roll-outs (hub.ota, docs/ota.md): progress, the latest state, board reports, the audit."""
    section = "Roll-outs"
    rollouts = '"device" =~ /^rollout:/'
    return [
        Panel(
            section, "Roll-outs: boards healthy on the new version, failed",
            (f'SELECT last("succeeded") AS "healthy", last("failed") AS "failed", last("targeted") AS "targeted" '
             f'FROM "qala_rollout" WHERE {SITE} AND {rollouts} AND $timeFilter '
             'GROUP BY time($__interval), "device" fill(previous)',),
            f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
            '  |> filter(fn: (r) => r._measurement == "qala_rollout" and r.site == v.site and '
            '(r._field == "succeeded" or r._field == "failed" or r._field == "targeted"))\n'
            '  |> group(columns: ["device", "_field"])\n'
            "  |> aggregateWindow(every: v.windowPeriod, fn: last, createEmpty: false)",
            description="Per roll-out (device tag rollout:<id>): boards that reported healthy (or already ran the "
            "version), failed (refused, rolled back, timed out) and targeted; `qala fw rollout status ID` says more.",
        ),
        Panel(
            section, "Roll-outs now: state, wave, boards per state",
            ('SELECT last("state") AS "state", last("wave") AS "wave", last("waves") AS "waves", '
             'last("targeted") AS "targeted", last("succeeded") AS "succeeded", last("downloading") AS '
             '"downloading", last("installed") AS "installed", last("failed") AS "failed", last("rolledback") AS '
             f'"rolledback", last("offline") AS "offline" FROM "qala_rollout" WHERE {SITE} AND {rollouts} AND '
             '$timeFilter GROUP BY "device", "sensor"',),
            f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
            '  |> filter(fn: (r) => r._measurement == "qala_rollout" and r.site == v.site)\n'
            '  |> group(columns: ["device", "sensor", "_field"])\n  |> last()\n'
            '  |> pivot(rowKey: ["device", "sensor"], columnKey: ["_field"], valueColumn: "_value")\n'
            '  |> group()',
            kind="table",
            description="The latest point of each roll-out (sensor = the version): running, paused, halted, "
            "aborted or done, its wave, and how many boards are in each state.",
        ),
        Panel(
            section, "Board update reports (latest first)",
            ('SELECT "version", "done", "total", "reason" FROM "qala_ota" '
             f'WHERE {SITE} AND $timeFilter GROUP BY "device", "sensor", "quality" ORDER BY time DESC LIMIT 200',),
            f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
            '  |> filter(fn: (r) => r._measurement == "qala_ota" and r.site == v.site)\n'
            '  |> pivot(rowKey: ["_time", "device", "sensor", "quality"], columnKey: ["_field"], '
            'valueColumn: "_value")\n'
            '  |> group()\n  |> sort(columns: ["_time"], desc: true)',
            kind="table",
            description="Each signed state report of a board: sensor is the roll-out id, quality the state "
            "(downloading, installed, healthy, refused, rolledback, ...), reason why it refused or rolled back.",
        ),
        Panel(
            section, "Roll-out actions (audit, latest first)",
            ('SELECT "source", "detail", "version", "wave" FROM "qala_audit" '
             f'WHERE {SITE} AND $timeFilter GROUP BY "device", "quality" ORDER BY time DESC LIMIT 200',),
            f'from(bucket: "{BUCKET}")\n  |> {RANGE}\n'
            '  |> filter(fn: (r) => r._measurement == "qala_audit" and r.site == v.site)\n'
            '  |> pivot(rowKey: ["_time", "device", "quality"], columnKey: ["_field"], valueColumn: "_value")\n'
            '  |> group()\n  |> sort(columns: ["_time"], desc: true)',
            kind="table",
            description="start, wave, halt, pause, resume, abort, done: who (source: api:<role>, cli:<role>, hub) "
            "and why (detail).",
        ),
    ]


SITE_VARIABLE_INFLUXQL = 'SHOW TAG VALUES WITH KEY = "site"'
SITE_VARIABLE_FLUX = f'import "influxdata/influxdb/schema"\nschema.tagValues(bucket: "{BUCKET}", tag: "site")'


def _grafana_panel(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    ds = {"type": "influxdb", "uid": "${DS_INFLUXDB}"}
    targets = [{"refId": chr(ord("A") + i), "datasource": ds, "query": q, "rawQuery": True,
                "resultFormat": "table" if panel.kind == "table" else "time_series"}
               for i, q in enumerate(panel.influxql)]
    out: dict[str, Any] = {
        "id": pid, "type": panel.kind, "title": panel.title, "description": panel.description, "datasource": ds,
        "gridPos": {"h": 8, "w": 24 if panel.kind == "table" else 12, "x": x, "y": y}, "targets": targets,
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
    }
    if panel.kind == "stat" or "AQI" in panel.title:
        out["fieldConfig"]["defaults"]["thresholds"] = {"mode": "absolute", "steps": aqi_thresholds()}
    if panel.kind == "stat":
        out["options"] = {"colorMode": "background", "reduceOptions": {"calcs": ["lastNotNull"]}}
    return out


def grafana() -> dict[str, Any]:
    """The Grafana dashboard (import it; choose an InfluxDB data source with InfluxQL, database qala)."""
    items: list[dict[str, Any]] = []
    y = 0
    pid = 1
    section = None
    x = 0
    for panel in panels():
        if panel.section != section:
            section = panel.section
            y += 8 if x else 0
            items.append({"id": pid, "type": "row", "title": section, "collapsed": False,
                          "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
            pid += 1
            y += 1
            x = 0
        width = 24 if panel.kind == "table" else 12
        if x + width > 24:
            x = 0
            y += 8
        items.append(_grafana_panel(panel, pid, x, y))
        pid += 1
        x += width
        if x >= 24:
            x = 0
            y += 8
    return {
        "__inputs": [{"name": "DS_INFLUXDB", "label": "InfluxDB (InfluxQL, database qala)", "type": "datasource",
                      "pluginId": "influxdb", "pluginName": "InfluxDB"}],
        "title": "Qala: city sensors", "uid": "qala-city", "tags": ["qala"], "schemaVersion": 39, "version": 1,
        "time": {"from": "now-24h", "to": "now"}, "refresh": "1m", "editable": True,
        "templating": {"list": [{
            "name": "site", "label": "site", "type": "query", "datasource": {"type": "influxdb",
                                                                              "uid": "${DS_INFLUXDB}"},
            "query": SITE_VARIABLE_INFLUXQL, "refresh": 1, "includeAll": True, "multi": True, "current": {},
        }]},
        "panels": items,
    }


# Grafana unit ids -> what InfluxDB 2's charts print after a value (they take a literal suffix, no unit ids)
INFLUX2_SUFFIX = {
    "": "", "bytes": " B", "celsius": " °C", "conμgm3": " µg/m³", "dBm": " dBm", "humidity": " %", "kwatt": " kW",
    "kwatth": " kWh", "percentunit": "", "ppb": " ppb", "ppm": " ppm", "volt": " V", "watt": " W",
}


def influx2_suffix(unit: str) -> str:
    """The axis suffix of an InfluxDB 2 chart for a panel's Grafana unit (`suffix: X` passes X through)."""
    if unit.startswith("suffix:"):
        return " " + unit.removeprefix("suffix:").strip()
    return INFLUX2_SUFFIX[unit]  # a KeyError here is a unit to add above: tests/tools/test_dashboards.py


def _influx2_chart(panel: Panel, x: int, y: int) -> dict[str, Any]:
    kind = {"timeseries": "Xy", "table": "Table", "stat": "Single_Stat"}[panel.kind]
    chart: dict[str, Any] = {"kind": kind, "name": panel.title, "note": panel.description,
                             "queries": [{"query": panel.flux}], "xPos": x, "yPos": y,
                             "width": 12 if panel.kind == "table" else 6, "height": 4}
    if kind == "Xy":
        chart |= {"geom": "line", "xCol": "_time", "yCol": "_value", "axes": [
            {"name": "x", "scale": "linear", "base": "10"},
            {"name": "y", "scale": "linear", "base": "10", "suffix": influx2_suffix(panel.unit)}]}
    return chart


def influx2() -> list[dict[str, Any]]:
    """The InfluxDB 2 template: `influx apply -f dashboards/influxdb2-template.json` (bucket `qala`)."""
    charts = []
    x = y = 0
    for panel in panels():
        chart = _influx2_chart(panel, x, y)
        if x + chart["width"] > 12:
            x, y = 0, y + 4
            chart["xPos"], chart["yPos"] = x, y
        charts.append(chart)
        x += chart["width"]
    api = "influxdata.com/v2alpha1"
    return [
        {"apiVersion": api, "kind": "Variable", "metadata": {"name": "qala-site"},
         "spec": {"name": "site", "type": "query", "language": "flux", "query": SITE_VARIABLE_FLUX}},
        {"apiVersion": api, "kind": "Dashboard", "metadata": {"name": "qala-city"},
         "spec": {"name": "Qala: city sensors", "description": "Air quality, energy, water and heat, device "
                  "health, districts and alerts, control actions (docs/operators.md)", "charts": charts}},
    ]


def rendered() -> dict[str, str]:
    """{file name: text} of both dashboards, as checked in under dashboards/."""
    return {name: json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
            for name, doc in ((GRAFANA_FILE, grafana()), (INFLUX2_FILE, influx2()))}


def write(out: Path = OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered().items():
        (out / name).write_text(text)
        written.append(out / name)
    return written


if __name__ == "__main__":
    write()
