"""The server launchers (simulators/services.py) and their fixtures (tests/_plugins/services.py) work.

Real mosquitto, influxd and victoria-metrics, on free loopback ports; clients are paho-mqtt, urllib and
influxdb-client, as the hub uses them. The brokers are the provisioned ones the fixtures start (TLS, logins,
ACL): the clients log in as test observers of the session store (tests/_plugins/trust.py).
"""

from __future__ import annotations

import queue
import uuid
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

from simulators.services import (
    SITE_MOSQUITTO_CONFIG,
    Influxd,
    Mosquitto,
    Service,
    ServiceError,
    ServiceUnavailable,
    VictoriaMetrics,
)
from tests._plugins.trust import SITE, login

if TYPE_CHECKING:
    from pathlib import Path

    from tests._plugins.services import ServiceFactory

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
PUBLISHER = "obs-16"
TELEMETRY = f"qala/{SITE}/+/telemetry"
B01 = f"qala/{SITE}/b-01"


class Subscriber:
    """A paho client that queues what it receives; clean_session=False keeps its session in the broker."""

    def __init__(self, broker: Mosquitto, identity: str, *, clean_session: bool = True) -> None:
        """identity: the observer login, which is also the session's client id on a provisioned broker."""
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected: queue.Queue[bool] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=identity, clean_session=clean_session)
        login(self.client, broker, identity)
        self.client.on_message = lambda _client, _userdata, message: self.messages.put(message)
        self.client.on_connect = lambda _c, _u, flags, _rc, _p: self.connected.put(flags.session_present)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.session_present = self.connected.get(timeout=TIMEOUT)

    def subscribe(self, topic: str) -> None:
        subscribed: queue.Queue[int] = queue.Queue()
        self.client.on_subscribe = lambda _c, _u, mid, _codes, _p: subscribed.put(mid)
        _, mid = self.client.subscribe(topic, qos=1)
        assert subscribed.get(timeout=TIMEOUT) == mid

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(broker: Mosquitto, topic: str, payload: bytes) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    login(client, broker, PUBLISHER)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT)
    finally:
        client.disconnect()
        client.loop_stop()


def test_mosquitto_qos1_round_trip(mosquitto: Mosquitto) -> None:
    assert mosquitto.host == "127.0.0.1"
    assert mosquitto.url == f"mqtts://127.0.0.1:{mosquitto.port}"
    subscriber = Subscriber(mosquitto, "obs-1")
    try:
        subscriber.subscribe(TELEMETRY)
        publish(mosquitto, f"{B01}/telemetry", b'{"seq":1}')
        message = subscriber.messages.get(timeout=TIMEOUT)
    finally:
        subscriber.close()
    assert (message.topic, message.payload, message.qos) == (f"{B01}/telemetry", b'{"seq":1}', 1)


def test_mosquitto_restart_keeps_persistent_session_and_queued_message(mosquitto: Mosquitto) -> None:
    hub = Subscriber(mosquitto, "obs-2", clean_session=False)
    hub.subscribe(TELEMETRY)
    hub.close()
    publish(mosquitto, f"{B01}/telemetry", b"queued while the hub was away")
    port, pid = mosquitto.port, mosquitto.pid

    assert mosquitto.stop() == 0
    assert not mosquitto.running
    assert (mosquitto.persistence_dir / "mosquitto.db").exists()
    mosquitto.start()
    assert mosquitto.port == port
    assert mosquitto.pid != pid

    hub = Subscriber(mosquitto, "obs-2", clean_session=False)
    try:
        message = hub.messages.get(timeout=TIMEOUT)
    finally:
        hub.close()
    assert hub.session_present
    assert message.payload == b"queued while the hub was away"


def test_mosquitto_kill_then_start_again(mosquitto: Mosquitto) -> None:
    assert mosquitto.kill() == -9
    assert not mosquitto.running
    mosquitto.start()
    publish(mosquitto, f"{B01}/status", b"online")


def test_mosquitto_config_is_the_site_config_plus_extra_lines(
    mosquitto_factory: ServiceFactory[Mosquitto],
) -> None:
    broker = mosquitto_factory(extra_config=["max_inflight_messages 500"])
    config = broker.config_path.read_text()
    assert f"listener {broker.port} 127.0.0.1" in config
    assert SITE_MOSQUITTO_CONFIG.read_text().strip() in config
    assert config.rstrip().endswith("max_inflight_messages 500")
    for line in ("max_queued_messages 1000000", "max_inflight_messages 5000", "persistence true"):
        assert line in SITE_MOSQUITTO_CONFIG.read_text().splitlines()


def test_extra_config_overrides_a_site_limit(mosquitto_factory: ServiceFactory[Mosquitto]) -> None:
    # A later number wins in mosquitto.conf; with a 5-message queue, an offline session keeps only 5.
    broker = mosquitto_factory(extra_config=["max_queued_messages 5"])
    hub = Subscriber(broker, "obs-3", clean_session=False)
    hub.subscribe(TELEMETRY)
    hub.close()
    for seq in range(8):
        publish(broker, f"{B01}/telemetry", str(seq).encode())
    hub = Subscriber(broker, "obs-3", clean_session=False)
    try:
        received = [hub.messages.get(timeout=TIMEOUT).payload for _ in range(5)]
        with pytest.raises(queue.Empty):
            hub.messages.get(timeout=0.3)
    finally:
        hub.close()
    assert received == [b"0", b"1", b"2", b"3", b"4"]


def test_failed_start_reports_the_servers_last_log_lines(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, extra_config=["no_such_option 1"])
    with pytest.raises(ServiceError, match=r"(?s)exited with code \d+ while starting.*no_such_option"):
        broker.start()
    assert not broker.running


def test_influxd_write_then_query_returns_the_point(influxd: Influxd, influxd_database: str) -> None:
    influxd.write(influxd_database, "air,site=s1,device=b-01 temperature=21.5,seq=7i 1700000000000000000")
    answer = influxd.query(influxd_database, "SELECT * FROM air")
    series = answer["results"][0]["series"][0]
    assert series["name"] == "air"
    assert dict(zip(series["columns"], series["values"][0], strict=True)) == {
        "time": 1700000000000000000,
        "device": "b-01",
        "seq": 7,
        "site": "s1",
        "temperature": 21.5,
    }


def test_influxd_restart_keeps_data(influxd_factory: ServiceFactory[Influxd]) -> None:
    server = influxd_factory()
    server.create_database("qala")
    server.write("qala", "air,site=s1 co2=612 1700000000000000000")
    server.stop()
    server.start()
    assert server.points("qala", "SELECT co2 FROM air") == [{"time": 1700000000000000000, "co2": 612}]


def test_victoria_metrics_accepts_influxdb_client_v2_writes(victoria_metrics: VictoriaMetrics) -> None:
    measurement = f"qala_test_{uuid.uuid4().hex[:8]}"
    with InfluxDBClient(url=victoria_metrics.url, token="x", org="x") as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket="b", record=f"{measurement},site=s1,device=b-01 co2=612.5 1700000000000000000"
        )
    series = victoria_metrics.export(f'{{__name__="{measurement}_co2"}}')
    assert series == [
        {
            "metric": {"__name__": f"{measurement}_co2", "site": "s1", "device": "b-01"},
            "values": [612.5],
            "timestamps": [1700000000000],
        }
    ]


@pytest.mark.parametrize("kind", [Mosquitto, Influxd, VictoriaMetrics])
def test_missing_binary_names_the_debian_package(kind: type[Service], tmp_path: Path) -> None:
    service = kind(tmp_path, binary="qala-no-such-binary")
    with pytest.raises(ServiceUnavailable) as caught:
        service.start()
    assert str(caught.value).startswith("qala-no-such-binary not found on PATH")
    assert str(caught.value).endswith(f"install the Debian package '{kind.package}' (scripts/setup does)")
    assert not service.running


def test_missing_binary_fails_the_fixture_never_skips(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(pytester.path))
    pytester.makepyfile(test_needs_influxd="def test_it(influxd):\n    pass\n")
    result = pytester.runpytest("-p", "tests._plugins.services", "-p", "no:hypothesispytest", "-p", "no:asyncio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*influxd not found on PATH: install the Debian package 'influxdb' (scripts/setup does)*"]
    )
    result.stdout.no_fnmatch_line("*skipped*")
