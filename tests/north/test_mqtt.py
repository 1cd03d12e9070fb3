"""The northbound feed over MQTT through a real, provisioned mosquitto (TLS, passwords, the store's ACL): the
hub's own connection (hub.ingest.mqtt.MqttSource) publishes, an integrator login (`qala provision integrator`)
reads. Open alerts and district summaries are retained for a consumer that connects later; a resolved alert
is published and its retained copy cleared; the integrator reads the feed and nothing else, and may publish
nothing; a board may not write the feed."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from hub import north
from hub.config import MqttConfig, NorthConfig
from hub.ingest.mqtt import MqttSource
from hub.trust import provision
from hub.trust.store import TrustStore
from protocols import topics
from simulators.services import Mosquitto
from tests._plugins.services import running
from tests._plugins.trust import SITE, provision_site, tls_client
from tests.north import samples

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

    import paho.mqtt.client as paho

pytestmark = pytest.mark.integration

FEED = f"qala/{SITE}/_north/#"
BOARD = "dev-0000"


class Inbox:
    """on_message for tls_client: (topic, payload, retain) of every message, thread-safe."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()

    def __call__(self, _client: Any, _userdata: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.items.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def got(self) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return list(self.items)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a deadline
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def subscribe(client: paho.Client, topic: str) -> list[int]:
    """SUBSCRIBE at QoS 1; the SUBACK's codes."""
    done = threading.Event()
    codes: list[int] = []

    def on_subscribe(_c: Any, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        codes.extend(int(r.value) for r in reasons)
        done.set()

    client.on_subscribe = on_subscribe
    client.subscribe(topic, qos=1)
    assert await asyncio.to_thread(done.wait, 10), "no SUBACK"
    return codes


@pytest.fixture
def store(tmp_path: Path) -> TrustStore:
    """Site SITE: hub main, an observer with the hub's role, one board, integrators sc and sc2."""
    root = tmp_path / "store"
    provision_site(root, (BOARD,), hubs=("obs-1",))
    provision.add_integrator(root, "sc")
    provision.add_integrator(root, "sc2")
    return TrustStore.load(root)


@pytest.fixture
def broker(tmp_path: Path, store: TrustStore) -> Iterator[Mosquitto]:
    with running(Mosquitto(tmp_path / "mosquitto", store=store.root)) as started:
        yield started


@pytest.fixture
def clients(broker: Mosquitto) -> Iterator[Callable[..., Any]]:
    """connect(user, password, on_message=...) -> a paho client of the broker (made in a thread)."""
    made: list[paho.Client] = []

    async def connect(user: str, password: str, on_message: Any = None) -> paho.Client:
        client = await asyncio.to_thread(tls_client, broker, user, password, on_message=on_message)
        made.append(client)
        return client

    yield connect
    for client in made:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
async def feed(broker: Mosquitto, store: TrustStore) -> AsyncIterator[north.Northbound]:
    """The feed on the hub's own MQTT connection (its login `main`), running."""
    user, password = store.hub()
    config = MqttConfig(host=broker.host, port=broker.port, client_id=user, username=user, password=password,
                        tls=True, ca_file=str(broker.ca_file), reconnect_min=0.05, reconnect_max=0.5)
    source = MqttSource(config, [])
    source.start()
    await until(lambda: source.connected)
    northbound = north.Northbound(NorthConfig(), SITE, source.publish, connected=lambda: source.connected)
    task = asyncio.create_task(northbound.run())
    yield northbound
    await northbound.close()
    await task
    await source.stop()


async def test_open_alerts_and_summaries_wait_retained_and_a_resolved_alert_is_cleared(
    feed: north.Northbound, store: TrustStore, clients: Callable[..., Any]
) -> None:
    live_inbox = Inbox()
    live = await clients(*store.integrator("sc"), on_message=live_inbox)
    assert await subscribe(live, FEED) == [1]
    a, b = samples.alert(id="a-00000000000a"), samples.alert(id="a-00000000000b")
    feed.alert(a)
    feed.alert(b)
    feed.summary(samples.district("Old Town"))
    feed.summary(samples.district(""))
    await until(lambda: len(live_inbox.got()) == 4)
    feed.alert(samples.alert("resolved", id="a-00000000000a"))
    await until(lambda: len(live_inbox.got()) == 6)
    topic_a = f"qala/{SITE}/_north/alerts/a-00000000000a"
    resolved, cleared = live_inbox.got()[4:]
    assert (resolved[0], json.loads(resolved[1])["data"]["state"]) == (topic_a, "resolved")
    assert cleared[:2] == (topic_a, b"")
    for _, payload, _ in live_inbox.got():
        if payload:
            assert json.loads(payload)["site"] == SITE

    late_inbox = Inbox()  # a consumer that connects now: what is open, and each district's latest summary
    late = await clients(*store.integrator("sc2"), on_message=late_inbox)
    assert await subscribe(late, FEED) == [1]
    await until(lambda: len(late_inbox.got()) == 3)
    await asyncio.sleep(0.5)  # nothing else comes
    got = {topic: (json.loads(payload), retain) for topic, payload, retain in late_inbox.got()}
    assert set(got) == {f"qala/{SITE}/_north/alerts/a-00000000000b", f"qala/{SITE}/_north/districts/Old%20Town",
                        f"qala/{SITE}/_north/districts/_none"}
    assert all(retain for _, retain in got.values())
    assert got[f"qala/{SITE}/_north/alerts/a-00000000000b"][0]["data"] == b
    assert got[f"qala/{SITE}/_north/districts/_none"][0]["data"]["district"] == ""
    assert feed.fields()["north_mqtt_published"] == 6  # 2 alerts, 2 summaries, resolved + clear


async def test_the_integrator_reads_the_feed_only_and_writes_nothing_and_no_board_writes_the_feed(
    feed: north.Northbound, store: TrustStore, clients: Callable[..., Any]
) -> None:
    observer_inbox = Inbox()  # the hub's role: sees the whole site
    observer = await clients(*store.hub("obs-1"), on_message=observer_inbox)
    assert await subscribe(observer, f"qala/{SITE}/#") == [1]
    spy_inbox = Inbox()
    spy = await clients(*store.integrator("sc"), on_message=spy_inbox)
    for wide in (f"qala/{SITE}/#", "#", topics.build(SITE, BOARD, topics.TELEMETRY)):
        await subscribe(spy, wide)  # granted or not: the broker checks reads per message
    board_identity = store.board(BOARD)
    assert board_identity is not None
    board = await clients(board_identity.user, board_identity.password)

    forged = f"qala/{SITE}/_north/alerts/a-f0f0f0f0f0f0"
    for topic in (forged, topics.build(SITE, BOARD, topics.TELEMETRY), topics.build(SITE, BOARD, topics.CMD)):
        await asyncio.to_thread(lambda t=topic: spy.publish(t, b"from the integrator", qos=1).wait_for_publish(10))
    await asyncio.to_thread(lambda: board.publish(f"qala/{SITE}/_north/alerts/a-b0b0b0b0b0b0", b"from a board",
                                                  qos=1).wait_for_publish(10))
    await asyncio.to_thread(lambda: board.publish(topics.build(SITE, BOARD, topics.TELEMETRY), b"telemetry",
                                                  qos=1).wait_for_publish(10))
    await asyncio.to_thread(lambda: observer.publish(topics.build(SITE, BOARD, topics.CMD), b"a command",
                                                     qos=1).wait_for_publish(10))
    feed.alert(samples.alert())
    alert_topic = f"qala/{SITE}/_north/alerts/a-0123456789ab"
    await until(lambda: any(t == alert_topic for t, _, _ in observer_inbox.got()))
    await until(lambda: len(spy_inbox.got()) >= 1)
    await asyncio.sleep(0.5)  # anything else would have arrived by now
    assert [(t, p) for t, p, _ in observer_inbox.got()] == [
        (topics.build(SITE, BOARD, topics.TELEMETRY), b"telemetry"),
        (topics.build(SITE, BOARD, topics.CMD), b"a command"),
        (alert_topic, observer_inbox.got()[-1][1]),
    ]  # nothing the integrator published, nothing the board put in the feed
    assert [t for t, _, _ in spy_inbox.got()] == [alert_topic]  # no telemetry, no command: the feed only
