"""Roll-outs on a real hub: a provisioned broker (TLS, the board ACL with `ota`/`otaack`), influxd, the hub
in-process with its API, and fake boards (tests/ota/fakes.py) logged in with their own board identities
over paho, each answering its `ota` topic with signed reports and chunk requests.

Shows: garbage on a board's `otaack` is counted and dropped (the hub goes on); a roll-out started through
the Python entry (hub.ota.api.start_rollout) reaches every board wave by wave, every byte fetched over MQTT
and checked; InfluxDB holds `qala_rollout`, `qala_ota` and the audit rows (`qala_audit`); `qala fw rollout
status` reads it; a rollback on the first wave halts the roll-out with the other boards untouched; a board
that was offline when its wave started is offered when its birth arrives, also by a hub restarted in between
(the roll-out read back from its file). A real board under micropython: tests/ota/test_real_board.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from hub import cli
from hub.ota.api import read_rollout, start_rollout
from hub.trust import provision
from hub.trust.store import TrustStore
from protocols import ota, payloads, topics
from simulators.services import Mosquitto
from tests._plugins.services import running
from tests._plugins.trust import SITE, provision_site, tls_client
from tests.control.live import TOKEN
from tests.hub.conftest import async_wait_until, running_hub, v1_table, write_config
from tests.ota.fakes import FakeBoard, fake_release

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import paho.mqtt.client as paho

    from simulators.services import Influxd

pytestmark = [pytest.mark.integration]

BOARDS = tuple(f"aq-{i:02d}" for i in range(8))


class LiveBoard:
    """A FakeBoard on the broker with its own login: a retained birth, its `ota` topic answered on `otaack`."""

    def __init__(self, broker: Mosquitto, store: TrustStore, device: str, outcome: str = "healthy") -> None:
        identity = store.board(device)
        assert identity is not None
        self.fake = FakeBoard(device, identity.cmd_key, outcome=outcome, chunk=1024)
        self.broker, self.user, self.password = broker, identity.user, identity.password
        self.client: paho.Client | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        device = self.fake.device
        self.client = tls_client(self.broker, self.user, self.password, client_id=self.user,
                                 on_message=self._message)
        self.client.subscribe(topics.build(SITE, device, ota.OTA), qos=1)
        self.client.publish(topics.build(SITE, device, topics.STATUS), payloads.encode_status(
            "online", int(time.time() * 1000), 1, self.fake.fw, {"sensors": {}}), qos=1, retain=True)

    def _message(self, client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        with self.lock:
            answers = self.fake.handle(bytes(message.payload))
        for answer in answers:
            client.publish(topics.build(SITE, self.fake.device, ota.OTAACK), answer, qos=1)

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()


@pytest.fixture
def store(tmp_path: Path) -> TrustStore:
    made = provision_site(tmp_path / "store", BOARDS)
    for i, device in enumerate(BOARDS):
        provision.place_board(made.root, device, "north" if i < 6 else "south", None, None)
    return TrustStore.load(made.root)  # placed: read again


@pytest.fixture
def broker(tmp_path: Path, store: TrustStore) -> Iterator[Mosquitto]:
    with running(Mosquitto(tmp_path / "mosquitto", store=store.root)) as b:
        yield b


@contextlib.contextmanager
def boards(broker: Mosquitto, store: TrustStore, devices: tuple[str, ...], **outcomes: str) -> Iterator[
        dict[str, LiveBoard]]:
    live = {d: LiveBoard(broker, store, d, outcomes.get(d.replace("-", "_"), "healthy")) for d in devices}
    try:
        for board in live.values():
            board.start()
        yield live
    finally:
        for board in live.values():
            board.stop()


def config(tmp_path: Path, broker: Mosquitto, influxd: Influxd, database: str) -> Path:
    fake_release(tmp_path / "releases", "0.2.0")
    return write_config(tmp_path, broker, v1_table(influxd, database), site={"id": SITE, "require_birth": False},
                        api={"control_token": TOKEN, "port": 0}, ota={"releases": str(tmp_path / "releases"),
                                                                      "tick": 0.2})


async def finished(port: int, rid: str, within: float = 60) -> dict[str, Any]:
    def ended() -> bool:  # run in a thread by async_wait_until
        return read_rollout(port, TOKEN, rid)["state"] in ("done", "halted", "aborted")
    await async_wait_until(ended, within, what=f"roll-out {rid} to end")
    return await asyncio.to_thread(read_rollout, port, TOKEN, rid)


async def test_a_rollout_reaches_every_board_and_is_measured(
    tmp_path: Path, broker: Mosquitto, store: TrustStore, influxd: Influxd, influxd_database: str,
) -> None:
    path = config(tmp_path, broker, influxd, influxd_database)
    with boards(broker, store, BOARDS) as live:
        async with running_hub(path) as hub:
            port = hub.api_port
            assert port
            await async_wait_until(lambda: all(hub._online(d) for d in BOARDS), 30, what="births")
            client = live["aq-07"].client
            assert client is not None
            for garbage in (b"not json", b'{"op":"state","id":"r1"}', b"\xff" * 3000):
                client.publish(topics.build(SITE, "aq-07", ota.OTAACK), garbage, qos=1)
            await async_wait_until(lambda: hub.ota.server.counts["bad_message"] == 3, 30, what="garbage counted")
            started = await asyncio.to_thread(start_rollout, port, TOKEN, "0.2.0", "district:north",
                                              waves=[20, 50, 100])
            assert started["counts"]["targeted"] == 6
            doc = await finished(port, started["id"])
            assert doc["state"] == "done", doc
            assert doc["counts"]["healthy"] == 6
            assert {d: b.fake.fw for d, b in live.items()} == {d: "0.2.0" if i < 6 else "0.1.0"
                                                               for i, d in enumerate(BOARDS)}
            assert [e["event"] for e in doc["events"]] == ["start", "wave", "wave", "wave", "done"]
            out = io.StringIO()
            token_file = tmp_path / "token"
            token_file.write_text(TOKEN + "\n")
            with contextlib.redirect_stdout(out):
                code = await asyncio.to_thread(cli.main, ["fw", "rollout", "status", started["id"], "--api",
                                                          f"http://127.0.0.1:{port}", "--token-file",
                                                          str(token_file)])
            assert code == 0
            assert f"{started['id']} fw 0.2.0 done wave 3/3: 6/6 healthy" in out.getvalue()

        def stored(measurement: str) -> int:
            result = influxd.query(influxd_database, f'SELECT count(*) FROM "{measurement}"')
            return len(result["results"][0].get("series", []))

        for measurement in ("qala_rollout", "qala_ota", "qala_audit"):
            await async_wait_until(lambda m=measurement: stored(m) > 0, 30, what=f"{measurement} in InfluxDB")
        result = influxd.query(influxd_database, "SELECT source, detail FROM qala_audit WHERE quality = 'start'")
        (series,) = result["results"][0]["series"]
        assert series["values"][0][1] == "api:control"


async def test_a_rollback_halts_with_the_rest_untouched(
    tmp_path: Path, broker: Mosquitto, store: TrustStore, influxd: Influxd, influxd_database: str,
) -> None:
    path = config(tmp_path, broker, influxd, influxd_database)
    outcomes = {d.replace("-", "_"): "rolledback" for d in BOARDS}
    with boards(broker, store, BOARDS, **outcomes) as live:
        async with running_hub(path) as hub:
            port = hub.api_port
            assert port
            await async_wait_until(lambda: all(hub._online(d) for d in BOARDS), 30, what="births")
            started = await asyncio.to_thread(start_rollout, port, TOKEN, "0.2.0", "all")
            doc = await finished(port, started["id"])
    assert doc["state"] == "halted"
    assert doc["reason"] == "wave 1: 1 of 1 boards failed, more than 10%"
    (failed,) = [d for d, b in doc["boards"].items() if b["state"] == "rolledback"]
    assert doc["boards"][failed]["reason"] == "raised at start-up: ValueError: broken"
    assert sum(1 for b in live.values() if b.fake.offer is not None) == 1
    assert all(b.fake.fw == "0.1.0" for b in live.values())


async def test_an_offline_board_is_offered_when_it_comes_back(
    tmp_path: Path, broker: Mosquitto, store: TrustStore, influxd: Influxd, influxd_database: str,
) -> None:
    path = config(tmp_path, broker, influxd, influxd_database)
    with boards(broker, store, BOARDS[:2]) as live:
        async with running_hub(path) as hub:
            port = hub.api_port
            assert port
            await async_wait_until(lambda: all(hub._online(d) for d in BOARDS[:2]), 30, what="births")
            started = await asyncio.to_thread(start_rollout, port, TOKEN, "0.2.0", "devices:aq-00,aq-01,aq-02",
                                              waves=[100])
            await async_wait_until(lambda: hub.ota.get(started["id"]).counts()["healthy"] == 2, 30,
                                   what="the two online boards")
            assert hub.ota.get(started["id"]).counts()["offline"] == 1
            with boards(broker, store, BOARDS[2:3]) as late:
                await async_wait_until(lambda: hub.ota.get(started["id"]).counts()["healthy"] == 3, 30,
                                       what="the board back online")
                assert late["aq-02"].fake.fw == "0.2.0"
            assert all(b.fake.fw == "0.2.0" for b in live.values())


async def test_a_restarted_hub_carries_the_rollout_on(
    tmp_path: Path, broker: Mosquitto, store: TrustStore, influxd: Influxd, influxd_database: str,
) -> None:
    path = config(tmp_path, broker, influxd, influxd_database)
    with boards(broker, store, BOARDS[:3]) as live:
        async with running_hub(path) as hub:
            port = hub.api_port
            assert port
            await async_wait_until(lambda: all(hub._online(d) for d in BOARDS[:3]), 30, what="births")
            started = await asyncio.to_thread(start_rollout, port, TOKEN, "0.2.0", "devices:aq-00,aq-01,aq-02,aq-03",
                                              waves=[100])
            await async_wait_until(lambda: hub.ota.get(started["id"]).counts()["healthy"] == 3, 30,
                                   what="the online boards")
            assert hub.ota.get(started["id"]).counts()["offline"] == 1
        async with running_hub(path) as hub:  # a new hub process would read the same files
            port = hub.api_port
            assert port
            doc = await asyncio.to_thread(read_rollout, port, TOKEN, started["id"])
            assert (doc["counts"]["healthy"], doc["counts"]["offline"]) == (3, 1)
            with boards(broker, store, BOARDS[3:4]) as late:
                await async_wait_until(lambda: hub.ota.get(started["id"]).counts()["healthy"] == 4, 30,
                                       what="aq-03, back after the restart")
                assert late["aq-03"].fake.fw == "0.2.0"
    assert all(b.fake.fw == "0.2.0" for b in live.values())
