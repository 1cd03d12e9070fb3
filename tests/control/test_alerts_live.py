"""Alerts and districts on a real hub: a provisioned broker, influxd, the hub in-process, its HTTP API.

Devices placed with the provisioning store (`provision.place_board`) report telemetry; the API shows them
with their district, coordinates and last values, and /v1/districts their coverage. Events from a stand-in
for the detectors (hub.detect is built apart) become an alert that an operator acknowledges through the API
and that resolves; InfluxDB holds each transition (`qala_alert`) and the coverage rounds (`qala_coverage`);
a restart keeps the alert. With the real detectors, a reading no sensor can give becomes an alert that
reaches the northbound feed (hub.north) with its district's summary.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from hub.detect.events import CLEAR, FIRE, LEAK, WARNING, Event
from hub.trust import provision
from protocols import aqi
from tests._plugins.trust import SITE
from tests.control.live import TOKEN, api
from tests.firmware.boards import Watcher
from tests.hub.conftest import Publisher, async_wait_until, running_hub, v1_table, write_config

if TYPE_CHECKING:
    from pathlib import Path

    from hub.trust.store import TrustStore
    from simulators.services import Influxd, Mosquitto

pytestmark = [pytest.mark.integration]

READ = "read-token-0123456789abc"


class Detectors:
    enabled = True

    def __init__(self) -> None:
        self.events: list[Event] = []

    def tick(self, _now_ms: int) -> list[Event]:
        events, self.events = self.events, []
        return events


def leak(state: str, ts: int) -> Event:
    return Event(LEAK, state, "dev-0000", "water_flow", WARNING, ts, "water_flow never below 0.4 m3/h at night",
                 {"night_min": 0.4, "limit": 0.05})


async def call(port: int, method: str, path: str, body: dict[str, Any] | None = None,
               token: str = TOKEN) -> tuple[int, dict[str, Any]]:
    return await asyncio.to_thread(api, port, method, path, body, token)


async def test_alerts_and_districts_on_a_real_hub(
    tmp_path: Path, site_store: TrustStore, secure_mosquitto: Mosquitto, influxd: Influxd, influxd_database: str,
) -> None:
    provision.place_board(site_store.root, "dev-0000", "esil", 51.128, 71.43)
    provision.place_board(site_store.root, "dev-0001", "almaty", None, None)
    path = write_config(tmp_path, secure_mosquitto, v1_table(influxd, influxd_database),
                        site={"id": SITE, "require_birth": False},
                        api={"control_token": TOKEN, "read_token": READ, "port": 0},
                        alerts={"summary_interval": 1.0})
    publisher = Publisher(secure_mosquitto)
    try:
        async with running_hub(path) as hub:
            port = hub.api_port
            assert port
            publisher.birth("dev-0000")
            now = int(time.time() * 1000)
            for seq in range(5):
                publisher.telemetry("dev-0000", seq, now - (4 - seq) * 1000, 20.0 + seq)
            publisher.wait()

            async def values_seen() -> bool:
                status, body = await call(port, "GET", "/v1/devices", token=READ)
                return status == 200 and any(d["values"] for d in body["devices"])
            await async_wait_until(lambda: bool(hub.alerting.values.last("dev-0000").get("pm25")), 30,
                                   what="dev-0000's telemetry")
            assert await values_seen()
            status, body = await call(port, "GET", "/v1/devices", token=READ)
            devices = {d["device"]: d for d in body["devices"]}
            assert set(devices) == {"dev-0000"}  # the others never reported: counted in /v1/districts only
            d0 = devices["dev-0000"]
            assert (d0["district"], d0["lat"], d0["lon"], d0["online"]) == ("esil", 51.128, 71.43, True)
            assert d0["values"]["pm25"] == {"value": 24.0, "ts": now, "quality": "ok"}

            status, body = await call(port, "GET", "/v1/districts", token=READ)
            assert status == 200
            districts = {d["district"]: d for d in body["districts"]}
            assert set(districts) == {"", "almaty", "esil"}
            esil = districts["esil"]
            assert (esil["expected"], esil["online"], esil["on_time"], esil["coverage"]) == (1, 1, 1, 1.0)
            assert esil["quantities"]["pm25"] == {"expected": 1, "on_time": 1}
            assert esil["aqi"] == aqi.pm25_index(24.0)
            assert (districts["almaty"]["expected"], districts["almaty"]["on_time"]) == (1, 0)

            detectors = Detectors()
            hub.alerting.detectors = detectors
            detectors.events.append(leak(FIRE, now))
            hub.alerting.tick()
            status, body = await call(port, "GET", "/v1/alerts", token=READ)
            (alert,) = body["alerts"]
            assert (alert["state"], alert["district"], alert["kind"]) == ("firing", "esil", "leak")
            status, acked = await call(port, "POST", f"/v1/alerts/{alert['id']}/ack", {"note": "crew sent"})
            assert (status, acked["state"], acked["acked_by"]) == (200, "acknowledged", "api:control")
            status, body = await call(port, "GET", "/v1/districts", token=READ)
            assert {d["district"]: d["open_alerts"] for d in body["districts"]}["esil"] == 1
    finally:
        publisher.close()

    async with running_hub(path) as hub:  # the acknowledged alert survives a restart
        port = hub.api_port
        assert port
        status, again = await call(port, "GET", f"/v1/alerts/{alert['id']}", token=READ)
        assert (status, again) == (200, acked)
        detectors = Detectors()
        hub.alerting.detectors = detectors
        detectors.events.append(leak(CLEAR, now + 60_000))
        hub.alerting.tick()
        status, body = await call(port, "POST", f"/v1/alerts/{alert['id']}/ack", {})
        assert (status, body["error"]) == (409, f"alert {alert['id']} is resolved: nothing to acknowledge")

        def stored() -> bool:
            rows = influxd.points(influxd_database, 'SELECT * FROM "qala_alert" GROUP BY *')
            return {r["quality"] for r in rows} == {"firing", "acknowledged", "resolved"}
        await async_wait_until(stored, 30, what="the alert's transitions in InfluxDB")
        rows = influxd.points(influxd_database, 'SELECT * FROM "qala_alert" GROUP BY *')
        acked_row = next(r for r in rows if r["quality"] == "acknowledged")
        assert (acked_row["device"], acked_row["sensor"], acked_row["id"], acked_row["district"],
                acked_row["acked_by"], acked_row["note"]) == ("dev-0000", "leak", alert["id"], "esil", "api:control",
                                                              "crew sent")

        def coverage() -> bool:
            rows = influxd.points(influxd_database,
                                  'SELECT * FROM "qala_coverage" WHERE "device" = \'district:esil\' GROUP BY *')
            return any(r["sensor"] == "district" and r.get("expected") == 1 for r in rows)
        await async_wait_until(coverage, 30, what="qala_coverage points of district esil")


async def test_a_detector_fires_an_alert_through_the_hub(
    tmp_path: Path, site_store: TrustStore, secure_mosquitto: Mosquitto, influxd: Influxd, influxd_database: str,
) -> None:
    """The real detectors (hub.detect) ticked by the hub's loop: an impossible pm25 becomes an alert, on the
    API, in InfluxDB and on the northbound feed (with the district summaries)."""
    provision.place_board(site_store.root, "dev-0001", "nura", 51.07, 71.4)
    path = write_config(tmp_path, secure_mosquitto, v1_table(influxd, influxd_database),
                        site={"id": SITE, "require_birth": False},
                        api={"control_token": TOKEN, "port": 0}, detect={"interval": 1.0},
                        alerts={"summary_interval": 1.0})
    publisher = Publisher(secure_mosquitto)
    watcher = Watcher(secure_mosquitto, "watch-north", f"qala/{SITE}/_north/#", clean=True)
    try:
        async with running_hub(path) as hub:
            port = hub.api_port
            assert port
            publisher.birth("dev-0001")
            now = int(time.time() * 1000)
            publisher.telemetry("dev-0001", 0, now - 1000, 20.0)
            publisher.telemetry("dev-0001", 1, now, 2000.0)  # beyond the catalogue's 0..1000 ug/m3
            publisher.wait()

            def fired() -> bool:  # polled in a thread (async_wait_until)
                status, body = api(port, "GET", "/v1/alerts")
                return status == 200 and any(a["kind"] == "out_of_range" for a in body["alerts"])
            await async_wait_until(fired, 30, what="an out_of_range alert")
            _, body = await call(port, "GET", "/v1/alerts")
            alert = next(a for a in body["alerts"] if a["kind"] == "out_of_range")
            assert (alert["device"], alert["quantity"], alert["district"], alert["state"]) == (
                "dev-0001", "pm25", "nura", "firing")

            def stored() -> bool:
                rows = influxd.points(influxd_database, 'SELECT * FROM "qala_alert" GROUP BY *')
                return any(r["id"] == alert["id"] and r["quality"] == "firing" for r in rows)
            await async_wait_until(stored, 30, what="the alert in InfluxDB")

            def fed() -> bool:  # the northbound feed: the alert's document, and the district summaries
                topics = {t for t, _, _ in watcher.snapshot()}
                return {f"qala/{SITE}/_north/alerts/{alert['id']}", f"qala/{SITE}/_north/districts/nura"} <= topics
            await async_wait_until(fed, 30, what="the alert and nura's summary on the northbound feed")
            doc = next(json.loads(p) for t, p, _ in watcher.snapshot() if t.endswith(alert["id"]))
            assert (doc["type"], doc["data"]["id"], doc["data"]["state"]) == ("alert", alert["id"], "firing")
    finally:
        publisher.close()
        watcher.close()
