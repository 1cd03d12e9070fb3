"""The cluster adapter: the hub as one of several competing consumers of a RabbitMQ cluster, over AMQP 0-9-1
with aio-pika (docs/scale.md).

Boards speak MQTT to any node of the cluster; RabbitMQ's MQTT plugin publishes each message to `amq.topic`
with the topic as routing key, `/` and `.` swapped (`qala/ast-01/aq-0001/telemetry` is
`qala.ast-01.aq-0001.telemetry`). This module declares, at every connect (idempotent):

- `qala.{site}.telemetry`: one quorum queue (replicated over the cluster's nodes) bound with
  `qala.{site}.*.telemetry`. Every hub of the site consumes it: RabbitMQ hands each message to one of them, and
  redelivers what a hub took and never acknowledged when its connection dies. A board's PUBACK comes once a
  majority of the queue's members stored the message, so the board may forget it then: in a cluster that
  PUBACK is the confirmation (hub.confirm is off, docs/protocol.md).
- `qala.{site}.hub.{hub}`: this hub's own quorum queue, bound with the site's `status`, `ack` and `otaack`
  routing keys: every hub sees every birth and every ack (a command is finished by the hub that sent it; the
  others count the ack as another hub's, hub.control.service), and they wait in the queue while the hub is down.

The service's side is hub.ingest.mqtt's (hub.broker.Broker): `drain` hands over received messages in delivery
order, `ack` acknowledges a spooled batch with one `multiple` ack of its last delivery tag (one channel carries
both queues, so a batch is always everything delivered up to that tag), `publish` sends commands, OTA chunks
and the hub's liveness to `amq.topic` (boards subscribed over MQTT get them) with publisher confirms, QoS 1
kept and sent again after a reconnect, QoS 0 dropped while disconnected. What it cannot do: retained messages
(the 3.10 plugin keeps those per node, for MQTT publishers only) and a will: boards learn that a hub is alive
from its heartbeats, and that it died from their absence (protocols/liveness.py).

Connections: the nodes of `cluster.nodes` in turn, the first that answers; TLS verified against the site CA
(`mqtt.ca_file`) naming the node's host; the hub's broker login; AMQP heartbeats every `cluster.heartbeat`
seconds. Two connections to that node: one only consumes and acknowledges, one only publishes, so that
RabbitMQ's flow control or an alarm, which stop reading a publishing connection, never hold back the
acknowledgements. Deliveries come through the consuming channel's aiormq channel (aio-pika's own transport,
`get_underlay_channel`), without aio-pika's per-message wrapper. A lost connection starts a new generation
(acknowledgements for the old one are dropped: RabbitMQ redelivers those messages) and a reconnect with
jittered backoff, for ever.

Imports aio-pika (and its aiormq), hub.backoff, hub.config and hub.ingest.message; knows nothing of payloads,
spool or InfluxDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import aio_pika
import aiormq.exceptions
from aio_pika.abc import DeliveryMode

from hub.backoff import Backoff
from hub.ingest.message import Inbox, Message

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Iterable

    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
    from aiormq.abc import DeliveredMessage
    from pamqp.commands import Basic

    from hub.config import ClusterConfig, MqttConfig

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
"""Seconds for TCP, TLS and AMQP's handshake together."""
EXCHANGE = "amq.topic"
"""Where RabbitMQ's MQTT plugin publishes what boards send, and where MQTT subscriptions are bound."""
PUBLISH_BATCH = 100
"""Messages published at once, each awaiting its own confirm, before the next ones."""
_SWAP = str.maketrans("./", "/.")


def routing_key(topic: str) -> str:
    """The AMQP routing key of an MQTT topic, as RabbitMQ's MQTT plugin makes it: `/` and `.` swapped."""
    return topic.translate(_SWAP)


def topic_of(key: str) -> str:
    """The MQTT topic of a routing key (the swap undone)."""
    return key.translate(_SWAP)


def telemetry_queue(site: str) -> str:
    return f"qala.{site}.telemetry"


def hub_queue(site: str, hub: str) -> str:
    return f"qala.{site}.hub.{hub}"


def connect_failure(exc: BaseException) -> str:  # noqa: PLR0911 - one answer per cause
    """One line naming why a connect to a node failed."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: node certificate refused: {exc.verify_message} (trusted: mqtt.ca_file / the store's CA)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError | aiormq.exceptions.AuthenticationError):
        return "login refused (the hub's broker user: is the cluster's user list imported? docs/scale.md)"
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    if isinstance(exc, aiormq.exceptions.ChannelAccessRefused):
        return f"access refused: {exc} (the hub's broker user needs the site's queues, docs/scale.md)"
    if isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed):
        return f"a queue exists with other settings: {exc} (delete it, or give this hub its own name)"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def connect_kwargs(cluster: ClusterConfig, login: MqttConfig, node: tuple[str, int], context: ssl.SSLContext | None,
                   name: str) -> dict[str, Any]:
    """`aio_pika.connect`'s arguments for one node: the cluster's vhost and heartbeat, the hub's broker login, TLS
    with `context` (None: plain), `name` shown as the connection's name in RabbitMQ's tools."""
    kwargs: dict[str, Any] = {
        "host": node[0], "port": node[1], "virtualhost": cluster.vhost, "timeout": CONNECT_TIMEOUT,
        "heartbeat": cluster.heartbeat, "client_properties": {"connection_name": name},
    }
    if login.username is not None:
        kwargs |= {"login": login.username, "password": login.password or ""}
    if context is not None:
        kwargs |= {"ssl": True, "ssl_context": context}
    return kwargs


async def keep_connecting(
    session: Callable[[], Awaitable[None]],
    recover: Callable[[], Awaitable[None]],
    backoff: Backoff,
    stop: asyncio.Event,
    logger: logging.Logger,
    what: str,
) -> None:
    """Run `session` (one connection, from connect to loss) again and again until `stop` is set. A bug of ours
    (any exception out of a session) must not end the connecting for good: it is logged, `recover` cleans up,
    and the next session comes after a backoff delay."""
    while not stop.is_set():
        try:
            await session()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s: unexpected error, reconnecting", what)
            await recover()
            await asyncio.sleep(backoff.next())


async def cancelled(task: asyncio.Task[None] | None) -> None:
    """Cancel a connection's task (None: there is none) and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def close_quietly(connection: AbstractConnection | None) -> None:
    """Close a connection (None, or closed already: nothing to do) within 5 s; a failure to close is no news:
    the connection is being given up."""
    if connection is not None and not connection.is_closed:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.close(), 5.0)


class AmqpSource(Inbox):
    """The hub's broker when [cluster] is given: the same surface as hub.ingest.mqtt.MqttSource."""

    def __init__(
        self,
        cluster: ClusterConfig,
        login: MqttConfig,
        site: str,
        hub: str,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self.cluster = cluster
        self.login = login
        self.site = site
        self.hub = hub
        super().__init__()
        self.generation = 0
        self.connected = False
        self.intake = True
        self.subscribed = threading.Event()
        """Set once the first connection consumes both queues (tests wait on it in a thread)."""
        self.node: tuple[str, int] | None = None
        """The node this hub is connected to (None while it is not)."""
        self.bindings: dict[str, tuple[str, ...]] = {
            telemetry_queue(site): (f"qala.{site}.*.telemetry",),
            hub_queue(site, hub): tuple(f"qala.{site}.*.{kind}" for kind in ("status", "ack", "otaack")),
        }
        self._on_connect_hook = on_connect
        self._ssl = ssl.create_default_context(cafile=login.ca_file) if login.tls else None
        self._backoff = Backoff(login.reconnect_min, login.reconnect_max)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next = 0
        """Index in cluster.nodes of the node to try next."""
        self._outage_logged = False
        self._connections: list[AbstractConnection] = []
        """The consuming connection, then the publishing one, while connected."""
        self._acker: Any = None
        """The consuming channel's aiormq channel (acks by delivery tag), None while disconnected."""
        self._exchange: AbstractExchange | None = None
        self._outbox: deque[tuple[str, bytes, int]] = deque()
        """QoS 1 messages to publish, oldest first; kept across reconnects until confirmed."""
        self._sending = asyncio.Event()
        self._acks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------------------ the service's side

    def start(self) -> None:
        # aiormq logs a lost connection with a traceback at WARNING; this adapter says it in one line itself
        logging.getLogger("aiormq.connection").setLevel(logging.ERROR)
        nodes = ", ".join(f"{h}:{p}" for h, p in self.cluster.nodes)
        log.info("cluster: connecting nodes=%s hub=%s tls=%s", nodes, self.hub, self._ssl is not None)
        self._task = asyncio.create_task(self._run(), name="qala-hub.cluster")

    def ack(self, messages: Iterable[Message]) -> int:
        """Acknowledge a drained batch (everything delivered up to its last tag) of the current connection."""
        acker = self._acker
        if acker is None:
            return 0
        generation = self.generation
        tags = [m.mid for m in messages if m.generation == generation]
        if not tags:
            return 0
        task = asyncio.create_task(self._ack(acker, max(tags)))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)
        return len(tags)

    @staticmethod
    async def _ack(acker: Any, tag: int) -> None:
        try:
            await acker.basic_ack(tag, multiple=True)
        except (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError, ConnectionError) as exc:
            # the channel is gone: RabbitMQ redelivers these messages (to this hub or another); duplicates
            # are the same points in InfluxDB
            log.info("cluster: acknowledgement lost with the connection, messages come again error=%s", exc)

    def publish(self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False) -> None:  # noqa: ARG002 - retain: no AMQP equivalent
        """Publish to `amq.topic` (boards subscribed over MQTT receive it). QoS 1 is kept until the cluster
        confirms it, across reconnects; QoS 0 is dropped while disconnected. `retain` cannot be honoured:
        RabbitMQ 3.10 retains only what MQTT clients publish (docs/scale.md)."""
        if qos == 0 and not self.connected:
            return
        self._outbox.append((topic, payload, qos))
        self._sending.set()

    def close_intake(self) -> None:
        """Stop handing over new messages; they stay unacknowledged, and are redelivered after the stop."""
        self.intake = False

    async def stop(self) -> None:
        """Let the acknowledgements go, then close the connection (unacknowledged messages go back to the queue)."""
        self.intake = False
        self._stop.set()
        if self._acks:
            await asyncio.wait(set(self._acks), timeout=5.0)
        await cancelled(self._task)
        await self._close()

    # ------------------------------------------------------------------------------- the connection

    async def _run(self) -> None:
        await keep_connecting(self._session, self._close, self._backoff, self._stop, log, "cluster")

    async def _session(self) -> None:
        node = self.cluster.nodes[self._next % len(self.cluster.nodes)]
        self._next += 1
        lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        try:
            await self._connect(node, lost)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure to connect is reported the same way
            await self._close()
            self._failed(node, exc)
            await asyncio.sleep(self._backoff.next())
            return
        self._backoff.reset()
        self._outage_logged = False
        sender = asyncio.create_task(self._sender(), name="qala-hub.cluster-publish")
        try:
            why = await lost
        finally:
            await cancelled(sender)
        await self._close()
        if not self._stop.is_set():
            log.warning("cluster: connection to %s:%d lost (%s); messages not yet acknowledged come again, to this "
                        "hub or another", node[0], node[1], why)
            await asyncio.sleep(self._backoff.next())

    def _failed(self, node: tuple[str, int], exc: BaseException) -> None:
        why = connect_failure(exc)
        refused = isinstance(exc, aiormq.exceptions.ProbableAuthenticationError | aiormq.exceptions.AuthenticationError
                             | ssl.SSLCertVerificationError | aiormq.exceptions.ChannelAccessRefused)
        if refused or not self._outage_logged:
            log.log(logging.ERROR if refused else logging.WARNING,
                    "cluster: cannot connect to %s:%d: %s; trying the next node", node[0], node[1], why)
            self._outage_logged = True
        else:
            log.info("cluster: cannot connect to %s:%d: %s", node[0], node[1], why)

    async def _connect(self, node: tuple[str, int], lost: asyncio.Future[str]) -> None:
        """Two connections to the node: one that only consumes and acknowledges, one that only publishes. RabbitMQ
        throttles or blocks a connection that publishes (flow control, a memory or disk alarm) by no longer
        reading its socket; on a shared connection that would hold back the acknowledgements, and with them
        every delivery (RabbitMQ's flow-control guide advises connections of their own)."""
        host, port = node

        def closed(_sender: object, exc: BaseException | None = None) -> None:
            if not lost.done():
                lost.set_result(connect_failure(exc) if exc is not None else "closed")

        async with asyncio.timeout(CONNECT_TIMEOUT * 2):
            for role in ("consume", "publish"):
                kwargs = connect_kwargs(self.cluster, self.login, node, self._ssl, f"{self.login.client_id} {role}")
                connection = await aio_pika.connect(**kwargs)
                self._connections.append(connection)
                connection.close_callbacks.add(closed)
            consume = await self._connections[0].channel(publisher_confirms=False)
            consume.close_callbacks.add(closed)
            await consume.set_qos(prefetch_count=self.cluster.prefetch)
            publish = await self._connections[1].channel(publisher_confirms=True)
            publish.close_callbacks.add(closed)
            self._exchange = await publish.get_exchange(EXCHANGE, ensure=False)
            await self._declare(consume)
            self.generation += 1
            # deliveries straight from aio-pika's AMQP channel (aiormq, public API): no IncomingMessage and no
            # second task per message
            self._acker = acker = await consume.get_underlay_channel()
            self.node = node
            self.connected = True
            received = self._receiver(self.generation)
            for name in self.bindings:
                await acker.basic_consume(name, received, no_ack=False)
            self.subscribed.set()
        log.info("cluster: connected node=%s:%d generation=%d", host, port, self.generation)
        if self._on_connect_hook is not None:
            self._on_connect_hook()

    async def _declare(self, channel: AbstractChannel) -> None:
        """The site's telemetry queue and this hub's own queue, both quorum queues, and their bindings."""
        exchange = await channel.get_exchange(EXCHANGE, ensure=False)
        assert exchange.name == EXCHANGE
        for name, keys in self.bindings.items():
            queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
            for key in keys:
                await queue.bind(EXCHANGE, routing_key=key)

    def _receiver(self, generation: int) -> Callable[[DeliveredMessage], Coroutine[Any, Any, None]]:
        queue = self.queue
        wakeup = self.wakeup
        new = Message._make

        async def received(message: DeliveredMessage) -> None:
            if not self.intake or generation != self.generation:
                return  # never acknowledged: RabbitMQ redelivers it after this connection
            delivery = cast("Basic.Deliver", message.delivery)  # a consumer gets Basic.Deliver frames only
            queue.append(new((generation, delivery.delivery_tag, 1, topic_of(delivery.routing_key or ""),
                              message.body)))
            wakeup.set()

        return received

    async def _sender(self) -> None:
        """Publish what waits in the outbox, in order, each message confirmed by the cluster before it leaves
        the outbox (a batch at a time)."""
        outbox = self._outbox
        while True:
            await self._sending.wait()
            self._sending.clear()
            while outbox and self._exchange is not None:
                batch = [outbox[i] for i in range(min(PUBLISH_BATCH, len(outbox)))]
                exchange = self._exchange
                results = await asyncio.gather(
                    *(exchange.publish(
                        aio_pika.Message(payload, delivery_mode=DeliveryMode.PERSISTENT if qos else
                                         DeliveryMode.NOT_PERSISTENT),
                        routing_key(topic)) for topic, payload, qos in batch),
                    return_exceptions=True)
                failed = next((r for r in results if isinstance(r, BaseException)), None)
                if failed is not None:
                    log.info("cluster: publish not confirmed, sent again after a reconnect error=%s", failed)
                    return  # the channel is gone; the session ends through its close callback
                for _ in batch:
                    outbox.popleft()

    async def _close(self) -> None:
        self.connected = False
        self._acker = None
        self._exchange = None
        self.node = None
        # QoS 0 messages are not kept across a reconnect
        kept = [m for m in self._outbox if m[2]]
        self._outbox.clear()
        self._outbox.extend(kept)
        connections, self._connections = self._connections, []
        for connection in connections:
            await close_quietly(connection)

