"""dashboards/: every measurement, field, tag and quality flag a query names is one the hub writes.

The allowed schema is derived from the code that writes it, not copied: the catalogue's domains and quantities,
Reading's tag fields, and the Readings that hub.ingest.process.status_readings, ControlService.audit and the
hub's self-metrics snapshot produce. The InfluxQL queries also run against a real influxd 1.6.7 holding points
made by the hub's own encoder, and each must return data.
"""

from __future__ import annotations

import json
import re
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from hub import alerts
from hub.alerts import AlertBook, alert_readings
from hub.control import command as lc
from hub.control.service import ControlService
from hub.coverage import LastValues, Place, coverage_readings, summaries
from hub.detect.events import Event
from hub.ingest.process import status_readings
from hub.metrics import Metrics
from hub.model import ALERT, AUDIT, COMMAND, COVERAGE, DEVICE_STATUS, HUB, Reading, telemetry_readings
from hub.ota import rollout as ro
from hub.ota.service import COUNT_FIELDS, OTA, ROLLOUT, report_readings, rollout_readings
from hub.service import Hub
from hub.sinks import lineproto
from hub.tools import dashboards
from protocols import aqi, catalogue
from protocols.status import Status

if TYPE_CHECKING:
    from simulators.services import Influxd

DIR = dashboards.OUT
TAGS = {f for f in Reading._fields if f not in {"measurement", "field", "value", "ts"}}
SITE = "lab"


def _status(ts: int) -> list[Reading]:
    return [*status_readings(SITE, "aq-1", Status("online", ts, 3, "0.1.0", None, None), ts),
            *status_readings(SITE, "aq-2", Status("safe", ts, 1, "0.1.0", None, "config: bad"), ts)]


def _audit(ts: int) -> list[Reading]:
    out: list[Reading] = []
    for state, applied, reason in (("applied", 40.0, None), ("rejected", None, "board: above max")):
        cmd = lc.Command(f"c-{state}", "aq-1", "fan1", 40.0, "mqtt", "cli", ts - 100, ts + 60000)
        cmd.state, cmd.applied, cmd.reason, cmd.done_ms, cmd.attempts = state, applied, reason, ts, 1
        out += ControlService.audit(SimpleNamespace(site=SITE), cmd)  # type: ignore[arg-type]
    return out


def _hub(ts: int) -> list[Reading]:
    metrics = Metrics()
    metrics.write_latency(0.01)
    fake = SimpleNamespace(
        spool=SimpleNamespace(used_bytes=0, segments=0, fill=0.0, full=False), writer=SimpleNamespace(pending=0),
        broker=SimpleNamespace(connected=True, queue=[]), registry=SimpleNamespace(devices={}),
        tracker=SimpleNamespace(gaps=0, late=0, duplicates=0, reboots=0), metrics=metrics,
        config=SimpleNamespace(site=SimpleNamespace(id=SITE), mqtt=SimpleNamespace(client_id="hub-1")),
        _disk_error=None, confirms=SimpleNamespace(gaps_given_up=0),
        alerting=SimpleNamespace(book=SimpleNamespace(open={}, suppressed=0), actions_sent=0), north=None, modbus=None,
        ota=SimpleNamespace(fields=lambda: {"ota_chunks": 0.0, "rollouts_running": 0.0}),
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "time", lambda: ts / 1000)
        return Hub._snapshot(fake)  # type: ignore[arg-type]


def _telemetry(ts: int) -> list[Reading]:
    out: list[Reading] = []
    for device in ("aq-1", "m-1"):
        values = [(q, float(catalogue.QUANTITIES[q][2] + 1), "ok") for q in catalogue.QUANTITIES]
        out += telemetry_readings(SITE, device, "s1", ts, values)
        out += telemetry_readings(SITE, device, "s1", ts + 1, [("pm25", 1.0, "warmup"), ("uptime", 5.0, "fault")])
        later = [(q, v + 1, quality) for q, v, quality in values]
        out += telemetry_readings(SITE, device, "s1", ts - 86_400_000, values)
        out += telemetry_readings(SITE, device, "s1", ts + 60_000, later)
    out += telemetry_readings(SITE, "aq-1", "fan1", ts + 2, [("setpoint", 20.0, "lost")])
    return out


def _alerts(ts: int) -> list[Reading]:
    book = AlertBook(district=lambda _d: "esil")
    out: list[Reading] = []
    fire = Event("leak", "fire", "w-1", "water_flow", "warning", ts - 2000, "never below 0.4", {"value": 0.4})
    ((alert, _),) = book.apply([fire], ts - 2000)
    out += alert_readings(SITE, alert)
    book.ack(alert.id, "api:control", "crew sent", ts - 1000)
    out += alert_readings(SITE, alert)
    book.apply([fire._replace(state="clear", ts=ts)], ts)
    return out + alert_readings(SITE, alert)


def _coverage(ts: int) -> list[Reading]:
    values = LastValues()
    values.sample("aq-1", "s1", ts - 1000, [("pm25", 20.0, "ok"), ("power_active", 500.0, "ok")])
    values.sample("aq-1", "s1", ts, [("pm25", 21.0, "ok"), ("power_active", 500.0, "ok")])
    site = {"aq-1": Place("esil", online=True), "w-1": Place("esil", quantities=frozenset({"water_flow"}))}
    return coverage_readings(SITE, summaries(site, values, {"w-1": 1}, ts), ts)


def _rollouts(ts: int) -> list[Reading]:
    rollout = ro.Rollout.new("r1", "0.2.0", "fw", "all", ["aq-1", "aq-2"], now_ms=ts - 2000, percents=[50, 100])
    rollout.start(ts - 2000, lambda _d: True)
    out: list[Reading] = []
    for state, reason in (("downloading", ""), ("rolledback", "raised at start-up: ValueError")):
        report = {"id": "r1", "version": "0.2.0", "state": state, "done": 10, "total": 100, "reason": reason}
        out += report_readings(SITE, rollout.devices[0], report, ts - 1000)
        rollout.report(rollout.devices[0], state, ts - 1000, reason=reason)
    out += rollout_readings(SITE, rollout, rollout.counts(), ts)
    audit = SimpleNamespace(site=SITE, clock_ms=lambda: ts, emit=out.extend)
    ControlService.audit_action(audit, "rollout:r1", "halt", "hub", rollout.reason,  # type: ignore[arg-type]
                                version="0.2.0", wave=1.0)
    return out


def every_reading(ts: int) -> list[Reading]:
    return (_telemetry(ts) + _status(ts) + _audit(ts) + _hub(ts) + _hub(ts + 60_000) + _alerts(ts)
            + _coverage(ts) + _coverage(ts + 60_000) + _rollouts(ts))


def schema() -> tuple[dict[str, set[str]], set[str]]:
    """{measurement: fields} and quality values, from Readings the hub's own code makes."""
    fields: dict[str, set[str]] = {}
    qualities: set[str] = set(catalogue.QUALITIES) | set(lc.FINAL) | set(alerts.STATES)
    for r in every_reading(1_700_000_000_000):
        fields.setdefault(r.measurement, set()).add(r.field)
    return fields, qualities


def test_schema_is_what_the_docs_say() -> None:
    fields, _ = schema()
    assert set(fields) == set(catalogue.DOMAINS) | {DEVICE_STATUS, HUB, COMMAND, ALERT, COVERAGE, ROLLOUT, OTA, AUDIT}
    assert fields[ROLLOUT] == {*COUNT_FIELDS, "wave", "waves", "state", "kind"}
    assert fields[OTA] == {"count", "version", "done", "total", "reason"}
    assert fields[AUDIT] == {"source", "detail", "version", "wave"}
    assert fields[ALERT] == {"id", "severity", "quantity", "district", "message", "evidence", "count", "fired_at",
                             "acked_by", "note", "resolved_at"}
    assert fields[COVERAGE] == {"expected", "online", "on_time", "coverage", "open_alerts", "aqi", "energy_kw"}
    assert fields[COMMAND] >= {"value", "applied", "latency_ms", "attempts", "id", "source", "transport", "reason"}
    assert fields[DEVICE_STATUS] == {"state", "online", "safe", "boot", "fw", "error"}
    assert {"spool_fill", "write_latency_max_ms", "rejects", "seq_gaps"} <= fields[HUB]
    assert {"site", "device", "sensor", "quality"} == TAGS


def grafana_queries() -> list[str]:
    doc = json.loads((DIR / dashboards.GRAFANA_FILE).read_text())
    queries = [t["query"] for p in doc["panels"] for t in p.get("targets", [])]
    return queries + [v["query"] for v in doc["templating"]["list"]]


def flux_queries() -> list[str]:
    doc = json.loads((DIR / dashboards.INFLUX2_FILE).read_text())
    out: list[str] = []
    for item in doc:
        if item["kind"] == "Dashboard":
            out += [q["query"] for c in item["spec"]["charts"] for q in c["queries"]]
        elif item["kind"] == "Variable":
            out.append(item["spec"]["query"])
    return out


def test_checked_in_dashboards_are_the_generated_ones() -> None:
    for name, text in dashboards.rendered().items():
        assert (DIR / name).read_text() == text, f"regenerate: python -m hub.tools.dashboards ({name})"


def test_influxdb2_axes_show_units_not_grafana_unit_ids() -> None:
    """InfluxDB 2 prints an axis suffix as it is: the landed template showed "20celsius"."""
    template = json.loads((DIR / "influxdb2-template.json").read_text())
    suffixes = {axis.get("suffix", "") for item in template for cell in _cells(item) for axis in cell.get("axes", [])}
    assert " °C" in suffixes
    assert " µg/m³" in suffixes
    # the ids that print differently from their unit (ppm, ppb and dBm are the same either way)
    grafana_ids = {u for u, shown in dashboards.INFLUX2_SUFFIX.items() if u and shown.strip() != u}
    assert not {s.strip() for s in suffixes} & grafana_ids, suffixes


def _cells(item: dict[str, Any]) -> list[dict[str, Any]]:
    spec = item.get("spec", {})
    return [c for c in spec.get("charts", []) if isinstance(c, dict)]


def _check_refs(query: str, measurements: set[str], fields: set[str], tags: set[str], qualities: set[str]) -> None:
    known, allowed_qualities = schema()
    assert measurements <= set(known), (measurements - set(known), query)
    allowed = set().union(*(known[m] for m in measurements)) if measurements else set()
    assert fields <= allowed, (fields - allowed, query)
    assert tags <= TAGS, (tags - TAGS, query)
    assert qualities <= allowed_qualities, (qualities - allowed_qualities, query)


def test_every_influxql_query_names_what_the_hub_writes() -> None:
    queries = grafana_queries()
    assert len(queries) > 20
    seen: set[str] = set()
    for q in queries:
        measurements = set(re.findall(r'FROM "(\w+)"', q))
        quoted = set(re.findall(r'"(\w+)"', q)) - measurements
        aliases = set(re.findall(r'AS "(\w+)"', q))
        tags = set(re.findall(r'"(\w+)" (?:=~|!=|=)', q)) | set(re.findall(r'KEY = "(\w+)"', q))
        if "GROUP BY" in q:
            tags |= set(re.findall(r'"(\w+)"', q.split("GROUP BY")[-1]))
        fields = quoted - tags - aliases
        qualities = set(re.findall(r"\"quality\" !?= '(\w+)'", q))
        _check_refs(q, measurements, fields, tags, qualities)
        seen |= measurements
    assert seen == set(schema()[0]) - {"gas"}


def test_every_flux_query_names_what_the_hub_writes() -> None:
    queries = flux_queries()
    assert len(queries) > 20
    seen: set[str] = set()
    for q in queries:
        measurements = set(re.findall(r'r\._measurement == "(\w+)"', q))
        fields = set(re.findall(r'r\._field == "(\w+)"', q))
        columns = set(re.findall(r"\br\.(\w+)", q)) - {"_measurement", "_field", "_time", "_value"}
        listed = {c for group in re.findall(r"(?:columns|rowKey|columnKey): \[([^\]]*)\]", q)
                  for c in re.findall(r'"(\w+)"', group)} - {"_time", "_field", "_value"}
        pivoted = columns - TAGS  # after pivot(columnKey: ["_field"]) a field is a column
        assert pivoted <= fields, (pivoted, q)
        tags = (columns - pivoted) | listed | set(re.findall(r'tag: "(\w+)"', q))
        qualities = set(re.findall(r'r\.quality !?= "(\w+)"', q))
        _check_refs(q, measurements, fields, tags, qualities)
        seen |= measurements
    assert seen == set(schema()[0]) - {"gas"}


def test_influxql_aqi_is_within_one_point_of_protocols_aqi() -> None:
    expression = dashboards.pm25_aqi_influxql("X")
    worst = 0.0
    for tenth in range(6000):
        x = tenth / 10
        value = eval(expression.replace("X", repr(x)), {"abs": abs})
        worst = max(worst, abs(round(value) - aqi.pm25_index(x)))
    assert worst <= 1
    doc = json.loads((DIR / dashboards.GRAFANA_FILE).read_text())
    aqi_panels = [p for p in doc["panels"] if "AQI" in p["title"] and "aqi_pm25" in p["targets"][0]["query"]]
    assert len(aqi_panels) == 2
    for panel in aqi_panels:
        assert dashboards.pm25_aqi_influxql('mean("pm25")') in panel["targets"][0]["query"]
        steps = [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]
        assert steps == [None, 51, 101, 151, 201, 301]
        assert [aqi.category(s or 0) for s in steps] == [name for _, name in aqi.CATEGORIES]


def test_flux_aqi_follows_protocols_aqi() -> None:
    flux = next(q for q in flux_queries() if "pm25_index" in q)
    for c_lo, c_hi, i_lo, _ in aqi.PM25_BREAKPOINTS + aqi.PM10_BREAKPOINTS:
        assert f"if t <= {float(c_hi):.1f} then" in flux
        assert f"y: {float(c_lo):.1f}) - {float(c_lo):.1f}) + {float(i_lo):.1f})" in flux


@pytest.mark.integration
def test_influxql_queries_run_and_return_data(influxd: Influxd, influxd_database: str) -> None:
    now = int(time.time() * 1000) - 120_000
    body, _ = lineproto.encode_bytes(every_reading(now))
    influxd.write(influxd_database, body.decode(), precision="ms")
    empty = []
    for q in grafana_queries():
        sql = (q.replace("$timeFilter", "time > now() - 3d").replace("$__interval", "1m")
               .replace("$site", SITE))
        answer: dict[str, Any] = influxd.query(influxd_database, sql)
        result = answer["results"][0]
        assert "error" not in result, (result["error"], sql)
        if not result.get("series"):
            empty.append(sql)
        elif '"aqi_pm25"' in sql and "time > now() - 1h" in sql:  # the ok pm25 values of the last hour: 1, 2
            values = [row[-1] for series in result["series"] for row in series["values"]]
            assert all(abs(v - aqi.pm25_index(1.5)) <= 1 for v in values), values
    assert empty == [], "\n".join(empty)
