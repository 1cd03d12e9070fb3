"""hub.ingest.mqtt against a scripted broker in the same event loop: the exact packets the hub sends, what it
makes of what a broker sends, however the bytes are cut, and what it does when the connection goes wrong.

The broker here is a TCP (or TLS) server that records every packet the hub writes and writes raw bytes the test
gives it, byte vectors written out from MQTT 3.1.1. The hub against a real mosquitto is in test_integration.py
(restart, SIGKILL, exactly once) and below for a broker of another site.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import TYPE_CHECKING

import pytest

from hub.config import MqttConfig
from hub.ingest import mqtt
from hub.ingest.mqtt import MqttSource
from hub.trust import tls
from protocols import mqtt_codec as mc
from tests._plugins.trust import provision_site
from tests.hub.conftest import write_config

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from simulators.services import Mosquitto
    from tests._plugins.services import ServiceFactory

TOPICS = ["qala/s/+/telemetry", "qala/s/+/status", "qala/s/+/ack"]
CONNACK = b"\x20\x02\x00\x00"
CONNACK_SESSION = b"\x20\x02\x01\x00"
PINGRESP = b"\xd0\x00"


def suback(pid: int, code: int = 1) -> bytes:
    return bytes((0x90, 3, pid >> 8, pid & 0xFF, code))


class Broker:
    """One client connection at a time; `packets` holds (first byte, body) of everything the client sent."""

    def __init__(self) -> None:
        self.packets: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.connections = 0
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, context: ssl.SSLContext | None = None) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writer = writer
        self.connected.set()
        buf = b""
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while data := await reader.read(65536):
                buf += data
                pos = 0
                while (found := mc.packet_at(buf, pos)) is not None and found[2] <= len(buf):
                    first, start, pos = found
                    await self.packets.put((first, buf[start:pos]))
                buf = buf[pos:]
        await self.packets.put((0, b"closed"))

    async def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def next(self, timeout: float = 5) -> tuple[int, bytes]:  # noqa: ASYNC109 - a test's deadline
        async with asyncio.timeout(timeout):
            return await self.packets.get()

    async def hang_up(self) -> None:
        assert self.writer is not None
        self.connected.clear()
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()

    async def accept(self, connack: bytes = CONNACK) -> list[int]:
        """Take the CONNECT, answer `connack`, take the three SUBSCRIBEs; returns their packet ids."""
        first, _ = await self.next()
        assert first == 0x10
        await self.send(connack)
        pids = []
        for _ in TOPICS:
            first, body = await self.next()
            assert first == 0x82
            pids.append(int.from_bytes(body[:2], "big"))
        return pids

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self._server is not None:
            self._server.close()


def config(port: int, **overrides: object) -> MqttConfig:
    values: dict[str, object] = {"host": "127.0.0.1", "port": port, "client_id": "hub/s/main", "keepalive": 30,
                                 "reconnect_min": 0.05, "reconnect_max": 0.1} | overrides
    return MqttConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    b = Broker()
    await b.start()
    yield b
    await b.close()


@contextlib.asynccontextmanager
async def source(port: int, **overrides: object) -> AsyncIterator[MqttSource]:
    hooks: list[int] = []
    src = MqttSource(config(port, **overrides), TOPICS, on_connect=lambda: hooks.append(1),
                     will=("qala/s/_hub/main", b'{"state":"offline"}'))
    src.start()
    try:
        yield src
    finally:
        await src.stop()


async def until(predicate: object, timeout: float = 5) -> None:  # noqa: ASYNC109 - a test's deadline
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110 - polls the source's state
            await asyncio.sleep(0.01)


def publish(topic: str, payload: bytes, pid: int, qos: int = 1) -> bytes:
    return mc.encode_publish(topic, payload, qos, pid=pid)


async def test_connect_subscribe_and_take_what_follows_the_connack(broker: Broker) -> None:
    async with source(broker.port, username="hub-main", password="pw") as src:
        first, body = await broker.next()
        will = ("qala/s/_hub/main", b'{"state":"offline"}', True, 1)
        expected = mc.encode_connect("hub/s/main", 30, clean=False, user="hub-main", password="pw", will=will)
        assert bytes((first,)) + mc.encode_length(len(body)) + body == expected
        # a persistent session: the queued messages follow the CONNACK in the same write
        queued = publish("qala/s/d1/telemetry", b"a", 7) + publish("qala/s/d2/status", b"b", 8)
        await broker.send(CONNACK_SESSION + queued)
        subscribes = [await broker.next() for _ in TOPICS]
        assert [first for first, _ in subscribes] == [0x82] * 3
        assert [body[2:] for _, body in subscribes] == [mc.encode_subscribe(1, t, 1)[4:] for t in TOPICS]  # QoS 1
        await until(lambda: len(src.queue) == 2)
        assert src.connected
        assert list(src.drain(10)) == [mqtt.Message(1, 7, 1, "qala/s/d1/telemetry", b"a"),
                                       mqtt.Message(1, 8, 1, "qala/s/d2/status", b"b")]
        assert not src.subscribed.is_set()
        for _, body in subscribes:
            await broker.send(suback(int.from_bytes(body[:2], "big")))
        await until(src.subscribed.is_set)


async def test_packets_cut_anywhere_and_packed_together(broker: Broker) -> None:
    async with source(broker.port) as src:
        await broker.accept()
        stream = b"".join(publish(f"qala/s/d{i}/telemetry", b"x" * (50 * i), i + 1, qos=i % 2) for i in range(6))
        for i in range(len(stream)):  # one byte at a time: every cut a packet can have
            await broker.send(stream[i : i + 1])
        await broker.send(stream + stream)  # many packets in one read
        await until(lambda: len(src.queue) == 18)
        got = src.drain(100)
        assert [(m.topic, len(m.payload), m.qos, m.mid) for m in got[:6]] == [
            (f"qala/s/d{i}/telemetry", 50 * i, i % 2, (i + 1) if i % 2 else 0) for i in range(6)]
        assert got[:6] == got[6:12] == got[12:]
        big = publish("qala/s/d9/telemetry", b"y" * 300_000, 9)  # longer than one read
        await broker.send(big[:100_000])
        await broker.send(big[100_000:])
        await until(lambda: len(src.queue) == 1)
        assert src.drain(1)[0].payload == b"y" * 300_000


async def test_acknowledged_in_one_write_and_never_across_a_reconnect(broker: Broker) -> None:
    async with source(broker.port) as src:
        await broker.accept()
        await broker.send(b"".join(publish("qala/s/d/telemetry", b"%d" % i, 100 + i) for i in range(3)))
        await until(lambda: len(src.queue) == 3)
        old = src.drain(10)
        await broker.hang_up()
        assert (await broker.next())[1] == b"closed"
        await until(lambda: not src.connected)
        assert src.ack(old) == 0  # not connected: nothing is written
        await broker.connected.wait()
        await broker.accept()
        await until(lambda: src.connected)
        assert src.generation == 2
        # the broker redelivers and reuses packet id 100 for another message: the old one's ack must not go out
        await broker.send(publish("qala/s/d/telemetry", b"new", 100) + publish("qala/s/d/status", b"s", 5, qos=0))
        await until(lambda: len(src.queue) == 2)
        new = src.drain(10)
        assert src.ack(old + new) == 1
        assert await broker.next() == (0x40, b"\x00\x64")
        await broker.send(b"".join(publish("qala/s/d/telemetry", b"", pid) for pid in (1, 2, 65535)))
        await until(lambda: len(src.queue) == 3)
        assert src.ack(src.drain(10)) == 3
        # the three PUBACKs leave in one write, so the broker reads them as one chunk here
        assert [await broker.next() for _ in range(3)] == [(0x40, b"\x00\x01"), (0x40, b"\x00\x02"),
                                                           (0x40, b"\xff\xff")]


async def test_publishes_are_kept_until_acknowledged_and_sent_again_with_dup(broker: Broker) -> None:
    async with source(broker.port) as src:
        src.publish("qala/s/_hub/main", b"online", retain=True)  # before the connection: sent once it is up
        src.publish("qala/s/d/conf", b"dropped", qos=0)  # QoS 0 while disconnected: dropped
        await broker.accept()
        first, body = await broker.next()
        assert (first, body[2:18], body[18:20], body[20:]) == (0x33, b"qala/s/_hub/main", b"\x00\x01", b"online")
        src.publish("qala/s/d/cmd", b"c1")
        first, body = await broker.next()
        assert first == 0x32
        pid = int.from_bytes(body[14:16], "big")
        src.publish("qala/s/d/conf", b"q0", qos=0, retain=True)
        assert await broker.next() == (0x31, b"\x00\x0dqala/s/d/confq0")
        await broker.send(bytes((0x40, 2)) + pid.to_bytes(2, "big"))  # the command is acknowledged, not the liveness
        await asyncio.sleep(0.1)
        await broker.hang_up()
        await broker.next()  # closed
        await broker.connected.wait()
        await broker.accept()
        first, body = await broker.next()  # only the liveness is sent again, marked as a retransmission
        assert (first, body[2:18], body[20:]) == (0x3B, b"qala/s/_hub/main", b"online")


async def test_no_pingresp_drops_the_connection_and_connects_again(broker: Broker) -> None:
    async with source(broker.port, keepalive=1) as src:
        await broker.accept()
        await until(lambda: src.connected)
        assert await broker.next(timeout=3) == (0xC0, b"")  # quiet for a keepalive: PINGREQ
        await broker.send(PINGRESP)
        assert await broker.next(timeout=3) == (0xC0, b"")
        # no answer this time: the broker is taken for dead within another keepalive
        assert await broker.next(timeout=3) == (0, b"closed")
        await broker.connected.wait()
        await broker.accept()
        await until(lambda: src.connected and src.generation == 2)


async def test_a_refused_login_is_said_and_tried_again(broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hub.ingest.mqtt")
    async with source(broker.port) as src:
        await broker.next()
        await broker.send(b"\x20\x02\x00\x05")
        assert await broker.next() == (0, b"closed")
        await broker.accept()
        await until(lambda: src.connected)
        assert src.generation == 1
    said = [r.getMessage() for r in caplog.records]
    assert any("connection refused host=127.0.0.1 reason=not authorised" in line for line in said), said


async def test_garbage_from_the_broker_drops_the_connection(broker: Broker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hub.ingest.mqtt")
    async with source(broker.port) as src:
        await broker.accept()
        await broker.send(publish("qala/s/d/telemetry", b"ok", 3) + b"\xf0\x00")  # type 15 is no MQTT 3.1.1 packet
        assert await broker.next() == (0, b"closed")
        assert [m.payload for m in src.drain(10)] == [b"ok"]  # taken, but never acknowledged: redelivered
        await broker.connected.wait()
        await broker.accept()
        await until(lambda: src.connected)
    said = [r.getMessage() for r in caplog.records]
    assert any("disconnected: protocol error: unexpected packet type 15" in line for line in said), said


async def test_closed_intake_leaves_messages_at_the_broker_and_stop_says_goodbye(broker: Broker) -> None:
    async with source(broker.port) as src:
        await broker.accept()
        await broker.send(publish("qala/s/d/telemetry", b"1", 1))
        await until(lambda: len(src.queue) == 1)
        taken = src.drain(10)
        src.close_intake()
        await broker.send(publish("qala/s/d/telemetry", b"2", 2))
        await asyncio.sleep(0.1)
        assert not src.queue
        src.ack(taken)
        await src.stop()
        assert [await broker.next() for _ in range(3)] == [(0x40, b"\x00\x01"), (0xE0, b""), (0, b"closed")]
        assert not src.connected


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_key = tls.make_ca("site CA")
    cert, key = tls.make_server_cert(ca, ca_key, ["localhost"], ["127.0.0.1"])
    named, named_key = tls.make_server_cert(ca, ca_key, ["broker.example"])
    other, _ = tls.make_ca("another CA")
    files = {"ca": ca, "cert": cert, "key": key, "named": named, "named_key": named_key, "other": other}
    for name, data in files.items():
        (folder / f"{name}.pem").write_bytes(data)
    return {name: folder / f"{name}.pem" for name in files}


@pytest.mark.parametrize(("ca", "cert", "reason"), [
    ("ca", "cert", None),
    ("other", "cert", "unable to get local issuer certificate"),  # another CA's broker
    ("ca", "named", "IP address mismatch"),  # the site's CA, but a certificate for another host
])
async def test_tls_verifies_the_broker_against_the_site_ca(
    pki: dict[str, Path], ca: str, cert: str, reason: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki[cert], pki["key" if cert == "cert" else "named_key"])
    b = Broker()
    port = await b.start(context)
    caplog.set_level(logging.ERROR, logger="hub.ingest.mqtt")
    try:
        async with source(port, tls=True, ca_file=str(pki[ca])) as src:
            if reason is None:
                await b.accept()
                await until(lambda: src.connected)
            else:
                await asyncio.sleep(1)  # several attempts, with backoff
                assert not src.connected
    finally:
        await b.close()
    refused = [r.getMessage() for r in caplog.records if "broker certificate refused" in r.getMessage()]
    if reason is None:
        assert refused == []
    else:
        assert len(refused) == 1, refused  # once per outage, not per retry
        assert reason in refused[0]
        assert f"trusted: {pki[ca]}" in refused[0]


@pytest.mark.integration
async def test_the_hub_refuses_a_broker_of_another_site(
    tmp_path: Path, mosquitto_factory: ServiceFactory[Mosquitto], caplog: pytest.LogCaptureFixture
) -> None:
    """The hub trusts its own store's CA: a broker whose certificate another site's CA made is refused."""
    ours = provision_site(tmp_path / "ours", ["t1"])
    theirs = provision_site(tmp_path / "theirs", ["t1"])
    broker = mosquitto_factory(store=theirs.root)
    config_file = write_config(tmp_path, broker, {"api": "v1", "url": "http://127.0.0.1:9", "database": "x"})
    config_file.write_text(config_file.read_text().replace(str(theirs.root), str(ours.root)))
    caplog.set_level(logging.ERROR, logger="hub.ingest.mqtt")
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(8):
            await _run_until_refused(config_file, caplog)
    refused = [r.getMessage() for r in caplog.records if "broker certificate refused" in r.getMessage()]
    assert refused, [r.getMessage() for r in caplog.records]
    assert "self-signed certificate in certificate chain" in refused[0]  # not our CA
    assert f"trusted: {ours.ca_file}" in refused[0]
    assert len(refused) == 1  # once per outage, not per retry


async def _run_until_refused(config_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    from hub import config as hub_config  # noqa: PLC0415
    from hub.service import Hub  # noqa: PLC0415

    hub = Hub(hub_config.load(config_file))
    task = asyncio.create_task(hub.run())
    try:
        while not any("broker certificate refused" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # polling the captured log: it has no event to wait on
        await asyncio.sleep(2)  # retries with backoff meanwhile
        assert not hub.broker.connected
    finally:
        hub.request_stop()
        await asyncio.wait_for(task, 30)


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False


async def test_what_is_written_in_one_turn_of_the_loop_leaves_in_one_write() -> None:
    conn = mqtt._Connection(MqttSource(config(1883), TOPICS))
    transport = _Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    for board in range(300):  # a confirmation round: a retained conf to each board
        conn.write(mc.encode_publish(f"qala/s/b{board:03d}/conf", b'{"boot":1,"seq":9}', 0, retain=True))
    conn.write(mc.encode_puback(7))
    assert transport.writes == []
    await asyncio.sleep(0)
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"\x31")
    assert transport.writes[0].endswith(b"\x40\x02\x00\x07")
    conn.write(b"\xc0\x00")
    conn.flush()  # at once, as stop() does before the DISCONNECT
    assert transport.writes[1:] == [b"\xc0\x00"]
    await asyncio.sleep(0)
    assert len(transport.writes) == 2  # the scheduled flush found nothing left
