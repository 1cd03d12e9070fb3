"""District coverage: expected, online, on time (learned intervals), per quantity, AQI, consumption, open
alerts; and the qala_coverage points."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING

from hub.alerting import site_places
from hub.coverage import LastValues, Place, coverage_readings, device_view, summaries
from hub.modbus import config as modbus_config
from hub.model import COVERAGE, Reading
from hub.registry import Registry
from hub.sinks.lineproto import encode
from hub.trust.store import DeviceEntry
from protocols import aqi, payloads

if TYPE_CHECKING:
    from pathlib import Path

T0 = 1_795_553_687_000
S = 1000


def feed(values: LastValues, device: str, every_s: float, until: int, sensor: str = "s1",
         **quantities: float) -> None:
    """A device's sensor reporting `quantities` every `every_s` seconds for the 10 intervals up to `until`."""
    for i in range(10, -1, -1):
        ts = until - int(i * every_s * S)
        values.sample(device, sensor, ts, [(q, v, "ok") for q, v in quantities.items()])


def test_learned_interval_and_outliers() -> None:
    values = LastValues()
    feed(values, "a1", 10, T0, pm25=12.0)
    assert values.devices["a1"]["s1"][2] == 10 * S
    values.sample("a1", "s1", T0 + 3600 * S, [("pm25", 13.0, "ok")])  # an hour's outage
    assert values.devices["a1"]["s1"][2] == 10 * S + (40 * S - 10 * S) / 8  # counted as 4 intervals at most
    values.sample("a1", "s1", T0, [("pm25", 1.0, "ok")])  # late: older than what it has, value kept
    assert values.last("a1") == {"pm25": (13.0, T0 + 3600 * S)}


def test_bounded_devices() -> None:
    values = LastValues(max_devices=2)
    for name in ("a", "b", "c"):
        values.sample(name, "s1", T0, [("pm25", 1.0, "ok")])
    assert set(values.devices) == {"a", "b"}


def test_modbus_readings_feed_it_too() -> None:
    values = LastValues()
    values.observe([Reading("energy", "s", "m1", "meter", "ok", "power_active", 1500.0, T0),
                    Reading("qala_device_status", "s", "m1", "status", "ok", "state", "online", T0)])
    assert values.last("m1") == {"power_active": (1500.0, T0)}


def test_district_documents() -> None:
    values = LastValues()
    now = T0
    feed(values, "air-1", 10, now - 5 * S, pm25=40.0)  # on time (aqi 112)
    feed(values, "air-2", 10, now - 100 * S, pm25=300.0)  # late: 100 s > 3 x 10 s; its AQI is not current
    feed(values, "w1", 60, now, water_flow=1.5)
    feed(values, "m1", 1, now - 5 * S, power_active=2000.0)  # Modbus, polled every 10 s (configured)
    feed(values, "h1", 60, now, heat_power=120.0, aqi=30.0)
    site = {
        "air-1": Place("esil", 51.1, 71.4, online=True, quantities=frozenset({"pm25", "temperature"})),
        "air-2": Place("esil", online=True, quantities=frozenset({"pm25"})),
        "air-3": Place("esil", quantities=frozenset({"pm25"})),  # never seen
        "w1": Place("almaty", online=True),
        "m1": Place("almaty", online=True, interval_s=10),
        "h1": Place(None, online=True),
    }
    docs = summaries(site, values, {"air-2": 2, "w1": 1}, now)
    assert [d["district"] for d in docs] == ["", "almaty", "esil"]
    nowhere, almaty, esil = docs
    assert esil == {
        "district": "esil", "expected": 3, "online": 2, "on_time": 1, "coverage": 0.3333,
        "quantities": {"pm25": {"expected": 3, "on_time": 1}, "temperature": {"expected": 1, "on_time": 0}},
        "aqi": 112.0, "open_alerts": 2, "consumption": {"water_m3_h": None, "energy_kw": None, "heat_kw": None},
    }
    assert almaty["on_time"] == 2
    assert almaty["consumption"] == {"water_m3_h": 1.5, "energy_kw": 2.0, "heat_kw": None}
    assert almaty["open_alerts"] == 1
    assert nowhere["aqi"] == 30.0
    assert nowhere["consumption"]["heat_kw"] == 120.0
    # a device never heard of falls back on the default interval
    later = summaries({"w1": Place("almaty")}, values, {}, now + 170 * S, default_interval_s=1)
    assert later[0]["on_time"] == 1  # learned 60 s x 3 = 180 s


def test_an_implausible_reading_counts_as_reporting_but_not_as_air_quality() -> None:
    """A PM sensor reading 5000 ug/m3 (quality `range`: an out_of_range alert) must not put its district at AQI
    500 on the operator page and the northbound summary; it is still a device reporting on time."""
    values = LastValues()
    feed(values, "air-1", 10, T0, pm25=12.0)
    values.sample("air-2", "s1", T0, [("pm25", 5000.0, "range"), ("co2", 600.0, "ok")])
    site = {"air-1": Place(district="esil", quantities=frozenset({"pm25"})),
            "air-2": Place(district="esil", quantities=frozenset({"pm25"}))}
    (esil,) = summaries(site, values, {}, T0)
    assert esil["aqi"] == float(aqi.aqi(pm25=12.0)) < 100  # air-1's 12 ug/m3 alone
    assert esil["on_time"] == 2
    assert esil["quantities"]["pm25"] == {"expected": 2, "on_time": 2}
    assert values.last("air-2")["pm25"] == (5000.0, T0)  # the device view still shows what it reads


def test_coverage_points_and_device_view() -> None:
    doc = {"district": "esil", "expected": 3, "online": 2, "on_time": 1, "coverage": 0.3333,
           "quantities": {"pm25": {"expected": 3, "on_time": 1}}, "aqi": 112.0, "open_alerts": 2,
           "consumption": {"water_m3_h": None, "energy_kw": 2.0, "heat_kw": None}}
    points = coverage_readings("astana", [doc], T0)
    assert {(r.measurement, r.device, r.sensor) for r in points} == {(COVERAGE, "district:esil", "district"),
                                                                     (COVERAGE, "district:esil", "pm25")}
    fields = {(r.sensor, r.field): r.value for r in points}
    assert fields == {("district", "expected"): 3.0, ("district", "online"): 2.0, ("district", "on_time"): 1.0,
                      ("district", "coverage"): 0.3333, ("district", "open_alerts"): 2.0, ("district", "aqi"): 112.0,
                      ("district", "energy_kw"): 2.0, ("pm25", "expected"): 3.0, ("pm25", "on_time"): 1.0}
    first = encode(points)[0]
    assert first.startswith("qala_coverage,device=district:esil,quality=ok,sensor=district,site=astana ")
    view = device_view("air-1", Place("esil", 51.1, 71.4, online=True, last_seen=T0),
                       {"pm25": (12.0, T0, 10_000.0, "ok"), "pm10": (5000.0, T0, 10_000.0, "range")})
    assert view == {"device": "air-1", "transport": "mqtt", "district": "esil", "lat": 51.1, "lon": 71.4,
                    "online": True, "last_seen": T0,
                    "values": {"pm10": {"value": 5000.0, "ts": T0, "quality": "range"},
                               "pm25": {"value": 12.0, "ts": T0, "quality": "ok"}}}


def test_the_devices_a_site_expects(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.json")
    caps = {"sensors": {"air1": {"driver": "sim", "q": ["pm25", "co2"]}}, "actuators": {}}
    registry.update("b1", payloads.decode_status(payloads.encode_status("online", T0, 1, "1.0", caps)), T0)
    registry.update("b2", payloads.decode_status(payloads.encode_status("offline")), T0)
    modbus = modbus_config.parse({
        "buses": {"plant": {"transport": "tcp", "host": "127.0.0.1"}},
        "devices": {"m1": {"bus": "plant", "unit": 1, "profile": "sdm120", "interval": 5.0, "district": "nura",
                           "lat": 51.07, "lon": 71.4}}})
    values = LastValues()
    values.observe([Reading("energy", "s", "m1", "meter", "ok", "voltage", 230.0, T0)])
    # plain mode (no store): the registry's devices; Modbus devices from the config
    places = site_places(None, registry, modbus.devices, {"m1": True}.get, values)
    assert places["b1"] == Place(None, None, None, online=True, last_seen=T0, quantities=frozenset({"pm25", "co2"}))
    assert places["b2"].online is False
    m1 = places["m1"]
    assert (m1.district, m1.lat, m1.lon, m1.online, m1.last_seen, m1.interval_s, m1.transport) == (
        "nura", 51.07, 71.4, True, T0, 5.0, "modbus")
    assert "voltage" in m1.quantities
    # with a store: its provisioned devices and their places, known to the registry or not
    store = SimpleNamespace(devices=lambda: frozenset({"b1", "b9"}),
                            entry=lambda d: DeviceEntry(1, "esil", 51.1, 71.4) if d == "b1" else DeviceEntry(1))
    places = site_places(store, registry, (), lambda _d: None, values)
    assert set(places) == {"b1", "b9"}
    assert (places["b1"].district, places["b1"].lat, places["b1"].online) == ("esil", 51.1, True)
    assert (places["b9"].district, places["b9"].online, places["b9"].last_seen) == (None, False, None)


def test_health_and_setpoints_are_not_coverage() -> None:
    values = LastValues()
    feed(values, "a1", 10, T0 - 200 * S, pm25=10.0)  # its sensor went quiet 200 s ago
    feed(values, "a1", 10, T0, "sys", uptime=100.0, heap_free=5000.0)  # the board itself still reports
    values.sample("a1", "fan1", T0 - 3600 * S, [("setpoint", 20.0, "ok")])  # setpoints: only on change
    values.sample("h1", "sys", T0, [("uptime", 5.0, "ok")])  # a board with nothing but health
    (doc,) = summaries({"a1": Place("esil", online=True), "h1": Place("esil", online=True)}, values, {}, T0)
    assert doc["quantities"] == {"pm25": {"expected": 1, "on_time": 0}}
    assert doc["on_time"] == 1  # h1 alive; a1's pm25 is late, its health does not make it on time
