"""The hub against real servers: mosquitto (Qala's site config), influxd 1.6.7 (v1) and victoria-metrics (v2).

Every test publishes with paho at QoS 1 and board timestamps, and reads back what the database stored.
"Exactly once" over v1: influxd overwrites a point with the same series and timestamp, so the stored set
is compared with the published one (count and values). Over v2 the test reads VictoriaMetrics' raw samples
(/api/v1/export, no deduplication flag): there a second write of a reading would show as a second sample,
so it checks that the hub wrote each reading once, not only that the database holds it once.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING

import pytest

from hub.config import load
from protocols import payloads, topics
from tests._plugins.trust import provision_site
from tests.hub.conftest import (
    SITE,
    T0,
    Background,
    HubProcess,
    Publisher,
    async_wait_until,
    device_name,
    expected_pm25,
    influx_count,
    influx_pm25,
    publish_fleet,
    running_hub,
    v1_table,
    v2_table,
    vm_samples,
    wait_until,
    write_config,
)

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.services import Influxd, Mosquitto, VictoriaMetrics
    from tests._plugins.services import ServiceFactory

pytestmark = pytest.mark.integration

DEVICES = 100
READINGS = 100
OUTAGE = float(os.environ.get("QALA_TEST_OUTAGE_SECONDS", "30"))


def _count_is(influxd: Influxd, database: str, expected: int) -> bool | int:
    n = influx_count(influxd, database)
    return n == expected or n


async def test_v1_100_devices_x_100_readings_exactly_once(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influxd_database: str, publisher: Publisher
) -> None:
    path = write_config(tmp_path, mosquitto, v1_table(influxd, influxd_database))
    async with running_hub(path) as hub:
        started = time.monotonic()
        await asyncio.to_thread(publish_fleet, publisher, DEVICES, READINGS)
        await async_wait_until(lambda: _count_is(influxd, influxd_database, DEVICES * READINGS), 60,
                               what="10,000 readings in influxd")
        elapsed = time.monotonic() - started
    assert influx_pm25(influxd, influxd_database) == expected_pm25(DEVICES, READINGS)
    assert hub.metrics.rejects == dict.fromkeys(hub.metrics.rejects, 0)
    assert hub.tracker.gaps == 0
    assert hub.tracker.duplicates == 0
    assert hub.spool.used_bytes == 0
    status = influxd.points(influxd_database, 'SELECT count("online") FROM "qala_device_status"')
    assert status[0]["count"] == DEVICES
    hub_rows = influxd.points(influxd_database, 'SELECT last("messages_in") FROM "qala_hub"')
    assert hub_rows[0]["last"] == DEVICES * (READINGS + 1)  # the final snapshot, taken at shutdown
    print(f"v1: {DEVICES * READINGS} readings published and stored in {elapsed:.1f} s")


async def test_v2_100_devices_x_100_readings_exactly_once(
    tmp_path: Path, mosquitto_factory: ServiceFactory[Mosquitto], victoria_metrics: VictoriaMetrics
) -> None:
    site = f"v2-{int(time.time() * 1000) % 10**9}"  # VictoriaMetrics is shared by the session: a site of our own
    store = provision_site(tmp_path / "store", [device_name(i) for i in range(DEVICES)], site=site)
    mosquitto = mosquitto_factory(store=store.root)  # the site's own provisioned broker
    publisher = Publisher(mosquitto)
    path = write_config(tmp_path, mosquitto, v2_table(victoria_metrics), site={"id": site})
    match = f'{{__name__="air_pm25",site="{site}"}}'
    expected = sorted((d, ts, v) for d, ts, v in expected_pm25(DEVICES, READINGS))

    def stored() -> bool | int:
        n = len(vm_samples(victoria_metrics, match))
        return n == DEVICES * READINGS or n

    async with running_hub(path) as hub:
        await asyncio.to_thread(publish_fleet, publisher, DEVICES, READINGS, 0, True, site)  # noqa: FBT003
        await async_wait_until(stored, 60, interval=0.5, what="10,000 samples in victoria-metrics")
        await asyncio.sleep(1.0)  # anything written twice would arrive by now
    publisher.close()
    samples = vm_samples(victoria_metrics, match)
    assert samples == expected  # raw samples: no reading written twice
    assert hub.metrics.points_written >= DEVICES * READINGS
    assert hub.spool.used_bytes == 0


GARBAGE_PAYLOADS = [
    b"not json",
    b"\xff\xfe\x00",
    b"{}",
    b"[1,2,3]",
    b'{"v":1,"seq":1,"ts":1795553687000,"boot":1,"s":"air1","r":{"pm25":NaN}}',
    b'{"v":1,"seq":1,"ts":1795553687000,"boot":1,"s":"air1","r":{"bogus":1}}',
    b'{"v":1,"seq":1,"ts":1000,"boot":1,"s":"air1","r":{"pm25":1}}',
    b'{"v":2,"seq":1,"ts":1795553687000,"boot":1,"s":"air1","r":{"pm25":1}}',
    b'{"v":1,"seq":"1","ts":1795553687000,"boot":1,"s":"air1","r":{"pm25":1}}',
    b'{"v":1,"seq":1,"ts":1795553687000,"boot":1,"s":"air1","r":{}}',
    b'{"v":1,"seq":1,"ts":1795553687000,"boot":1,"s":"air1","r":{"pm25":true}}',
    b'{"v":1,"seq":1,"ts":1795553687000,"boot":1,"s":"air1","r":{"pm25":1},"x":1}',
    b"{" * 5000,
    b"",
]


async def test_1000_garbage_messages_interleaved_with_good_ones(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influxd_database: str, publisher: Publisher
) -> None:
    """250 undecodable payloads, 250 bad topics, 250 unprovisioned devices, 250 out-of-range readings.

    Out-of-range readings are stored with quality=range (never dropped) and counted. Unprovisioned ids are
    counted and dropped. 100 messages for another site are published too: the broker never delivers them
    (its ACL gives this site's logins only this site's topics), so they are neither stored nor counted.
    """
    devices, readings = 20, 100
    path = write_config(tmp_path, mosquitto, v1_table(influxd, influxd_database))

    def publish() -> None:
        for i in range(devices):
            publisher.birth(device_name(i))
        n = 0
        for k in range(readings):
            for i in range(devices):
                publisher.telemetry(device_name(i), k, T0 + k * 1000 + i, i + k / 1000)
            for j in range(10):  # 10 garbage messages after every 20 good ones
                dev = device_name(j % devices)
                kind = n % 4
                if kind == 0:
                    publisher.publish(topics.build(SITE, dev, "telemetry"), GARBAGE_PAYLOADS[n % len(GARBAGE_PAYLOADS)])
                elif kind == 1:
                    publisher.publish(f"qala/{SITE}/bad dev {n}/telemetry", b"{}")
                elif kind == 2:
                    body = payloads.encode_telemetry(n, T0 + n, 1, "air1", [("pm25", 1.0)])
                    publisher.publish(topics.build(SITE, f"ghost-{n}", "telemetry"), body)
                else:
                    body = payloads.encode_telemetry(10_000 + n, T0 + 500 + n, 1, "air1", [("co2", 50_000.0)])
                    publisher.publish(topics.build(SITE, dev, "telemetry"), body)
                n += 1
            if k % 10 == 0:
                body = payloads.encode_telemetry(k, T0 + k, 1, "air1", [("pm25", 1.0)])
                publisher.publish(topics.build("other-site", "dev-0000", "telemetry"), body)
            publisher.wait()

    async with running_hub(path) as hub:
        await asyncio.to_thread(publish)
        await async_wait_until(lambda: _count_is(influxd, influxd_database, devices * readings), 60,
                               what="the good readings")
        await async_wait_until(lambda: hub.metrics.messages_in >= devices * (readings + 1) + 1000, 30,
                               what="every message counted")
        rejects = dict(hub.metrics.rejects)
    assert influx_pm25(influxd, influxd_database) == expected_pm25(devices, readings)
    assert rejects == {"bad_payload": 250, "bad_topic": 250, "unknown_device": 0, "out_of_range": 250,
                       "other_site": 0}
    assert hub.metrics.unprovisioned["telemetry"] == 250  # the ghost-n ids: not in the store
    ranged = influxd.points(influxd_database, "SELECT count(\"co2\") FROM \"air\" WHERE \"quality\" = 'range'")
    assert ranged[0]["count"] == 250
    other = influxd.points(influxd_database, "SELECT count(\"pm25\") FROM \"air\" WHERE \"site\" = 'other-site'")
    assert other == []


def _stream(pub: Publisher, devices: int, readings: int, pause: float) -> None:
    for k in range(readings):
        for i in range(devices):
            pub.telemetry(device_name(i), k, T0 + k * 1000 + i, i + k / 1000)
        pub.wait()
        time.sleep(pause)


def test_hub_killed_with_sigkill_while_readings_flow(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influxd_database: str, publisher: Publisher,
    hub_processes: list[HubProcess],
) -> None:
    """The broker's persistent session keeps what the hub had not acknowledged; the spool what it had."""
    devices, readings = 20, 200
    path = write_config(tmp_path, mosquitto, v1_table(influxd, influxd_database))
    for i in range(devices):
        publisher.birth(device_name(i))
    publisher.wait()
    hub = HubProcess(path)
    hub_processes.append(hub)
    hub.start()
    wait_until(lambda: "mqtt: subscribed" in hub.log(), 20, what="the hub to subscribe")
    flow = Background(_stream, publisher, devices, readings, 0.02)
    wait_until(lambda: influx_count(influxd, influxd_database) > 500, 30, what="readings arriving")
    hub.kill()
    stored_at_kill = influx_count(influxd, influxd_database)
    time.sleep(1.0)
    again = HubProcess(path)
    hub_processes.append(again)
    again.start()
    flow.join()
    wait_until(lambda: _count_is(influxd, influxd_database, devices * readings), 60, what="every reading")
    assert stored_at_kill < devices * readings, "the kill came too late to test anything"
    assert influx_pm25(influxd, influxd_database) == expected_pm25(devices, readings)
    assert again.terminate() == 0
    assert "Traceback" not in again.log()


@pytest.mark.slow
async def test_influxdb_down_for_30_seconds_while_readings_flow(
    tmp_path: Path, mosquitto: Mosquitto, influxd_factory: ServiceFactory[Influxd], publisher: Publisher
) -> None:
    influxd = influxd_factory()
    database = "outage"
    influxd.create_database(database)
    devices, readings = 10, 350  # about 38 s of readings, 10 messages every 0.1 s
    path = write_config(tmp_path, mosquitto, v1_table(influxd, database), influxdb={"retry_max": 3.0})
    for i in range(devices):
        publisher.birth(device_name(i))
    async with running_hub(path) as hub:
        flow = Background(_stream, publisher, devices, readings, 0.1)
        await async_wait_until(lambda: influx_count(influxd, database) > 100, 20, what="readings arriving")
        await asyncio.to_thread(influxd.stop)
        await asyncio.sleep(OUTAGE)
        assert hub.spool.used_bytes > 0
        assert hub.metrics.write_retries > 0
        await asyncio.to_thread(influxd.start)
        await asyncio.to_thread(flow.join)
        try:
            await async_wait_until(lambda: _count_is(influxd, database, devices * readings), 60, what="every reading")
        finally:
            missing = sorted(set(expected_pm25(devices, readings)) - set(influx_pm25(influxd, database)))
            print("missing:", missing[:20], "metrics:", vars(hub.metrics))
        assert hub.metrics.dead_letter_batches == 0
    assert influx_pm25(influxd, database) == expected_pm25(devices, readings)


def test_sigterm_spools_everything_taken_and_the_next_start_sends_it_first(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influxd_database: str, publisher: Publisher,
    hub_processes: list[HubProcess],
) -> None:
    """With InfluxDB unreachable, the hub acknowledges into the spool; SIGTERM exits 0 with the data on disk."""
    devices, readings = 10, 50
    closed = write_config(tmp_path, mosquitto, {"api": "v1", "url": "http://127.0.0.1:9", "database": "x"},
                          hub={"shutdown_timeout": 1.0})
    hub = HubProcess(closed)
    hub_processes.append(hub)
    hub.start()
    wait_until(lambda: "mqtt: subscribed" in hub.log(), 20, what="the hub to subscribe")
    publish_fleet(publisher, devices, readings)
    state = load(closed).spool.path
    spooled = lambda: sum(p.stat().st_size for p in (state / "segments").iterdir())  # noqa: E731
    wait_until(lambda: spooled() > devices * readings * 60, 20, what="the readings in the spool")
    time.sleep(0.5)
    assert hub.terminate() == 0
    assert "data still spooled" in hub.log()
    # the same state directory, now with a reachable database
    path = write_config(tmp_path, mosquitto, v1_table(influxd, influxd_database))
    again = HubProcess(path)
    hub_processes.append(again)
    again.start()
    wait_until(lambda: _count_is(influxd, influxd_database, devices * readings), 30, what="the spooled readings")
    assert influx_pm25(influxd, influxd_database) == expected_pm25(devices, readings)
    assert "sending the spooled backlog first" in again.log()
    assert again.terminate() == 0


async def test_broker_restart_does_not_stop_the_hub(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd, influxd_database: str
) -> None:
    path = write_config(tmp_path, mosquitto, v1_table(influxd, influxd_database))
    async with running_hub(path) as hub:
        pub = Publisher(mosquitto, "pub-1")
        await asyncio.to_thread(publish_fleet, pub, 5, 20)
        await asyncio.to_thread(pub.close)
        await async_wait_until(lambda: _count_is(influxd, influxd_database, 100), 30, what="first readings")
        await asyncio.to_thread(mosquitto.restart)
        await async_wait_until(lambda: hub.broker.connected, 30, what="the hub to reconnect")
        pub = Publisher(mosquitto, "pub-2")
        await asyncio.to_thread(publish_fleet, pub, 5, 20, 20, False)  # noqa: FBT003
        await asyncio.to_thread(pub.close)
        await async_wait_until(lambda: _count_is(influxd, influxd_database, 200), 30, what="readings after restart")
        assert hub.metrics.mqtt_connects >= 2
    assert influx_pm25(influxd, influxd_database) == expected_pm25(5, 40)
