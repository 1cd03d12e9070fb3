"""The secure RabbitMQ cluster (simulators/rabbitmq.py, tests/_plugins/cluster.py), tried as a board, a hub and a
stranger: the policy of hub/trust/rabbit.py loaded into three real nodes of rabbitmq-server 3.10.

- a board logs in over TLS on every node and publishes its own telemetry; a hub reads it over AMQPS from a
  quorum queue bound to amq.topic with `qala.<site>.*.telemetry`;
- a board that publishes another board's telemetry, subscribes to another's cmd, or uses another's client id
  and subscribes is disconnected: the 3.10 plugin answers an access_refused with closing the connection (no
  PUBACK, no SUBACK), and nothing it sent arrives;
- unknown users, wrong passwords, anonymous clients and guest are refused; plain MQTT and plain AMQP get
  no answer but a TLS alert or a reset;
- the hub's cmd, published over AMQP, reaches the board's MQTT subscription on another node;
- a board added to the store logs in after reload_definitions; a revoked one no longer does;
- a SIGKILLed node started again on its data rejoins the cluster by itself, and boards log in on it.

One cluster for the session (about 20 s to start); each test uses its own boards and queue names.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq
import pytest

from hub.trust import provision, rabbit
from hub.trust.store import TrustStore
from tests._plugins.cluster import CLUSTER_SITE as SITE
from tests._plugins.trust import ConnectRefused, tls_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    import paho.mqtt.client as paho

    from simulators.rabbitmq import RabbitCluster

pytestmark = pytest.mark.integration


@dataclass
class Node:
    """What tls_client needs of a broker: one node's MQTT listener and the CA to verify it with."""

    host: str
    port: int
    ca_file: Path


def node(cluster: RabbitCluster, index: int) -> Node:
    assert cluster.store is not None
    return Node("127.0.0.1", cluster.nodes[index].mqtt_port, cluster.store.ca_file)


class Board:
    """A board's MQTT session on one node (its own login and, unless told otherwise, the firmware's client id):
    what it receives and whether the broker closed the connection."""

    def __init__(self, cluster: RabbitCluster, index: int, device: str, *, client_id: str | None = None) -> None:
        assert cluster.store is not None
        identity = cluster.store.board(device)
        assert identity is not None
        self.device = device
        self.received: list[tuple[str, bytes]] = []
        self.closed = threading.Event()
        self.subacks: list[list[str]] = []
        self.client = tls_client(node(cluster, index), identity.user, identity.password,
                                 client_id=client_id or rabbit.board_client_id(SITE, device),
                                 on_message=lambda _c, _u, m: self.received.append((m.topic, m.payload)))
        self.client.on_disconnect = lambda *_args: self.closed.set()
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p=None: self.subacks.append([str(c) for c in codes])

    def topic(self, kind: str, device: str | None = None) -> str:
        return f"qala/{SITE}/{device or self.device}/{kind}"

    def publish(self, kind: str, payload: bytes, device: str | None = None) -> paho.MQTTMessageInfo:
        return self.client.publish(self.topic(kind, device), payload, qos=1)

    def subscribe(self, kind: str, device: str | None = None) -> None:
        self.client.subscribe(self.topic(kind, device), qos=1)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def boards(rabbit_cluster: RabbitCluster) -> Iterator[Any]:
    """boards(node index, device, client_id=None) -> a connected Board; all closed after the test."""
    made: list[Board] = []

    def make(index: int, device: str, **options: Any) -> Board:
        board = Board(rabbit_cluster, index, device, **options)
        made.append(board)
        return board

    yield make
    for board in made:
        board.close()


def wait(check: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def hub_connection(cluster: RabbitCluster, index: int, name: str = "main") -> aio_pika.abc.AbstractConnection:
    """The hub identity `name` over AMQPS to node `index`, verifying the broker with the store's CA."""
    assert cluster.store is not None
    user, password = cluster.store.hub(name)
    context = ssl.create_default_context(cafile=str(cluster.store.ca_file))
    return await aio_pika.connect(host="127.0.0.1", port=cluster.nodes[index].amqp_port, login=user,
                                  password=password, ssl=True, ssl_context=context, timeout=10)


async def drain(queue: aio_pika.abc.AbstractQueue, want: int, seconds: float = 10.0) -> list[tuple[str, bytes]]:
    """Up to `want` messages from queue within `seconds`, each acked: (routing key, body)."""
    got: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + seconds
    while len(got) < want and time.monotonic() < deadline:
        message = await queue.get(fail=False, timeout=5)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        await message.ack()
        got.append((message.routing_key or "", message.body))
    return got


@contextlib.asynccontextmanager
async def telemetry_queue(cluster: RabbitCluster, index: int, name: str) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """The hub `main` on node `index` with a quorum queue `name` bound to every board's telemetry."""
    async with await hub_connection(cluster, index) as connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        exchange = await channel.get_exchange("amq.topic", ensure=False)
        await queue.bind(exchange, routing_key=f"qala.{SITE}.*.telemetry")
        yield queue


async def test_boards_publish_on_every_node_and_a_hub_reads_a_quorum_queue(rabbit_cluster: RabbitCluster,
                                                                           boards: Any) -> None:
    queue_name = f"qala.{SITE}.telemetry.a"
    async with telemetry_queue(rabbit_cluster, 0, queue_name) as queue:
        sent = []
        for index, device in enumerate(("c01", "c02", "c03")):
            board = boards(index, device)
            board.publish("telemetry", f"from node {index}".encode()).wait_for_publish(10)
            sent.append((f"qala.{SITE}.{device}.telemetry", f"from node {index}".encode()))
        assert sorted(await drain(queue, 3)) == sorted(sent)
    info = rabbit_cluster.queue_info(queue_name)
    assert sorted(info["members"]) == sorted(n.nodename for n in rabbit_cluster.nodes)
    assert info["messages"] == 0
    assert rabbit_cluster.leader(queue_name) in range(3)


async def test_a_board_is_disconnected_for_another_boards_topics(rabbit_cluster: RabbitCluster,
                                                                 boards: Any) -> None:
    async with telemetry_queue(rabbit_cluster, 1, f"qala.{SITE}.telemetry.b") as queue:
        forger = boards(0, "c04")
        info = forger.publish("telemetry", b"forged", device="c05")
        assert forger.closed.wait(10), "the broker should close a connection that publishes a foreign topic"
        assert not info.is_published()  # no PUBACK
        spy = boards(1, "c04")
        spy.subscribe("cmd", device="c05")
        assert spy.closed.wait(10), "the broker should close a connection that subscribes to a foreign cmd"
        assert spy.subacks == []
        thief = boards(2, "c04", client_id=rabbit.board_client_id(SITE, "c05"))  # c05's session queues
        thief.subscribe("cmd")
        assert thief.closed.wait(10)
        honest = boards(2, "c05")
        honest.publish("telemetry", b"real").wait_for_publish(10)
        assert await drain(queue, 2, seconds=3) == [(f"qala.{SITE}.c05.telemetry", b"real")]


@pytest.mark.parametrize(("user", "password"), [("nobody", "x"), (f"{SITE}/c06", "wrong"), (None, None),
                                                ("guest", "guest")])
def test_strangers_are_refused(rabbit_cluster: RabbitCluster, user: str | None, password: str | None) -> None:
    with pytest.raises(ConnectRefused, match="Bad user name or password"):
        tls_client(node(rabbit_cluster, 1), user, password, client_id="stranger")


def test_plain_mqtt_gets_no_connack(rabbit_cluster: RabbitCluster) -> None:
    client_id = b"plain"
    variable = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
    with socket.create_connection(("127.0.0.1", rabbit_cluster.nodes[0].mqtt_port), timeout=5) as sock:
        sock.sendall(bytes([0x10, len(variable)]) + variable)
        answer = sock.recv(16)
    assert answer[:1] != b"\x20"  # no CONNACK: a TLS alert record (0x15) or nothing
    assert answer[:1] in (b"", b"\x15")


async def test_plain_amqp_and_guest_are_refused(rabbit_cluster: RabbitCluster) -> None:
    assert rabbit_cluster.store is not None
    user, password = rabbit_cluster.store.hub("main")
    port = rabbit_cluster.nodes[2].amqp_port
    with pytest.raises(aiormq.exceptions.AMQPConnectionError):
        await aio_pika.connect(host="127.0.0.1", port=port, login=user, password=password, timeout=5)
    context = ssl.create_default_context(cafile=str(rabbit_cluster.store.ca_file))
    with pytest.raises(aiormq.exceptions.ProbableAuthenticationError):
        await aio_pika.connect(host="127.0.0.1", port=port, login="guest", password="guest", ssl=True,
                               ssl_context=context, timeout=5)


async def test_the_hubs_cmd_over_amqp_reaches_the_boards_mqtt_subscription(rabbit_cluster: RabbitCluster,
                                                                           boards: Any) -> None:
    board = boards(2, "c07")
    board.subscribe("cmd")
    assert wait(lambda: board.subacks == [["Granted QoS 1"]])
    connection = await hub_connection(rabbit_cluster, 0, "h2")
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange("amq.topic", ensure=False)
        await exchange.publish(aio_pika.Message(b'{"set": 1}'), routing_key=f"qala.{SITE}.c07.cmd")
        assert wait(lambda: board.received == [(f"qala/{SITE}/c07/cmd", b'{"set": 1}')])
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):  # another site's cmd (publisher confirms)
            await exchange.publish(aio_pika.Message(b"x"), routing_key="qala.elsewhere.c07.cmd")


def test_reload_definitions_adds_and_removes_boards(rabbit_cluster: RabbitCluster, boards: Any) -> None:
    assert rabbit_cluster.store is not None
    root = rabbit_cluster.store.root
    provision.add_boards(root, ["c99"])
    provision.revoke_board(root, "c12")
    revoked = rabbit_cluster.store.board("c12")
    assert revoked is not None
    rabbit_cluster.reload_definitions(TrustStore.load(root))
    boards(0, "c99").publish("telemetry", b"new").wait_for_publish(10)
    with pytest.raises(ConnectRefused, match="Bad user name or password"):
        tls_client(node(rabbit_cluster, 0), revoked.user, revoked.password, client_id="c12")


def test_a_killed_node_restarts_and_rejoins_by_itself(rabbit_cluster: RabbitCluster, boards: Any) -> None:
    rabbit_cluster.kill(1)
    killed = rabbit_cluster.nodes[1].nodename
    assert wait(lambda: killed not in rabbit_cluster.running_nodes(), 30)
    rabbit_cluster.restart(1)
    assert sorted(rabbit_cluster.running_nodes()) == sorted(n.nodename for n in rabbit_cluster.nodes)
    boards(1, "c08").publish("telemetry", b"back").wait_for_publish(10)


def test_qala_fw_deploy_can_watch_a_board_through_a_node(rabbit_cluster: RabbitCluster) -> None:
    """`qala fw deploy --store` waits for the board's birth with the store's `tools` login; on RabbitMQ a user
    may only have its own session queues, so the watcher's client id is its username (hub.tools.fw). No board
    is reset here: the wait subscribes (else "did not accept a subscription") and then times out."""
    from hub.tools.fw import FwError, wait_for_birth  # noqa: PLC0415

    store = rabbit_cluster.store
    assert store is not None
    user, password = store.hub("tools")
    with pytest.raises(FwError, match="no birth message from c12"):
        wait_for_birth("127.0.0.1", rabbit_cluster.nodes[1].mqtt_port, SITE, "c12", 2.0, user=user,
                       password=password, tls=True, ca_file=str(store.ca_file))
