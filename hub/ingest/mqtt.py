"""The MQTT adapter: the hub's one MQTT 3.1.1 connection on asyncio, its packets from protocols.mqtt_codec.

Why its own client: aiomqtt 2.5.1 acknowledges a QoS 1 message as it arrives and has no manual
acknowledgement, so a hub killed between the PUBACK and its spool write would lose the message. paho-mqtt 2.x
has manual acknowledgement, but at its public API it reads a packet with four or five system calls and
wakes its thread once per PUBACK: 12,800 messages/s at 65 us of CPU each, against 30,400 at 23 us for the hub
reading in bulk (docs/performance.md, *One MQTT codec*), and reading in bulk meant overriding paho's private
methods, which any paho release could break. The packets themselves are the board's codec
(protocols/mqtt_codec.py, the same byte vectors under CPython and MicroPython); this module owns only the
connection.

- One asyncio connection (`loop.create_connection`), read in large chunks: up to 256 KiB a read, TLS records
  decrypted from memory by asyncio's SSL protocol. Whole packets are found with `packet_at` and decoded by
  `parse` straight from the chunk; a packet cut by the chunk's end waits for the bytes it still needs.
- Persistent session: clean session off, a fixed client id, QoS 1 subscriptions renewed on every connect. The
  broker keeps what the hub has not acknowledged while the hub is down or slow.
- Incoming messages go into a deque and `wakeup` is set once per read, not per message. The service drains
  the deque in batches (`drain`) and acknowledges a batch after its spool fsync (`ack`: one write for all of
  its PUBACKs). Every connect starts a new `generation`; acknowledgements for messages of an earlier
  connection are dropped (the broker redelivers those), so a packet id the broker reuses is never
  acknowledged early. A CONNACK and the messages behind it in one read are handled in order: the messages
  already belong to the new generation.
- Reconnect with jittered exponential backoff (hub.backoff) for ever: a broker restart never stops the hub
  (telegraf#13031). Keepalive: a PINGREQ once nothing was sent or received for `keepalive` seconds; no
  PINGRESP within another `keepalive` drops the connection, which is then made again.
- `publish` sends the control service's commands, the hub's liveness and the boards' confirmations on the
  same connection; what one turn of the event loop writes (a batch's PUBACKs, a round of confirmations to
  hundreds of boards) leaves in one write. QoS 1 messages are kept until their PUBACK (at most MAX_INFLIGHT in
  flight, the rest queued, as paho did) and sent again, marked DUP, after a reconnect; a QoS 0 message while
  disconnected is dropped. The will (`will`) is QoS 1 and retained.
- `close_intake()` stops handing messages over (those arriving later stay unacknowledged, so the broker keeps
  them for the next session); `stop()` then sends DISCONNECT after the queued acknowledgements and closes.

- TLS (`mqtt.tls`): `ssl.create_default_context(cafile=mqtt.ca_file)`, so CERT_REQUIRED and check_hostname: the
  broker's certificate must chain to that CA and name `mqtt.host`. A refused certificate is logged once per
  outage as one ERROR line naming the failed check (`connect_failure`), never as a traceback.

Everything runs on the event loop's thread; nothing here blocks. Imports protocols.mqtt_codec, hub.backoff,
hub.ingest.message and hub.config; knows nothing of payloads, spool or InfluxDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, cast

from hub.backoff import Backoff
from hub.ingest.message import Inbox, Message
from protocols.mqtt_codec import (
    CONNACK,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PINGRESP,
    PUBACK,
    PUBLISH,
    SUBACK,
    MQTTProtocolError,
    encode_connect,
    encode_puback,
    encode_publish,
    encode_subscribe,
    packet_at,
    parse,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from hub.config import MqttConfig

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
"""Seconds for TCP, the TLS handshake and the broker's CONNACK together."""
CLOSE_TIMEOUT = 5.0
"""Seconds `stop` waits for the broker to take what is queued and close, before it cuts the connection."""
MAX_INFLIGHT = 20
"""Outgoing QoS 1 messages awaiting their PUBACK at once (paho's default); later ones wait their turn."""
REFUSED = {1: "unacceptable protocol version", 2: "client id rejected", 3: "server unavailable",
           4: "bad user name or password", 5: "not authorised"}
"""CONNACK return codes (MQTT 3.1.1 section 3.2.2.3)."""


def connect_failure(exc: BaseException | None, ca_file: str | None) -> str:
    """One line naming why a connect failed, e.g. the TLS check that refused the broker's certificate."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS: broker certificate refused: {exc.verify_message} "
                f"(trusted: {ca_file or 'the system CAs'}, mqtt.ca_file)")
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, MQTTProtocolError):
        return f"protocol error: {exc}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return "unknown cause"


_new_message: Callable[[type[Message], tuple[object, ...]], Message] = tuple.__new__
"""Message(...) without the NamedTuple's Python-level __new__ (about half the cost; one per message)."""

_Publish = tuple[str, bytes, int, bool, bool, int]
"""What `parse` gives for a PUBLISH: topic, payload, qos, retain, dup, packet id."""


def _dup(packet: bytes) -> bytes:
    """The PUBLISH packet marked as a retransmission (MQTT 3.1.1 section 3.3.1.1)."""
    return bytes((packet[0] | 0x08,)) + packet[1:]


class _Refused(Exception):  # noqa: N818 - a CONNACK's refusal, not an error of ours
    def __init__(self, code: int) -> None:
        super().__init__(REFUSED.get(code, f"return code {code}"))
        self.code = code


class _Connection(asyncio.Protocol):
    """One network connection: bytes in, packets to the source; PUBACKs and publishes out."""

    def __init__(self, source: MqttSource) -> None:
        self.source = source
        self.transport: asyncio.Transport | None = None
        self.generation = 0
        """The source's generation once the broker accepted this connection (0 before)."""
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes] = []
        """Packets written in this turn of the event loop, not yet handed to the transport."""
        self.connack: asyncio.Future[bool] = self._loop.create_future()
        """session_present once accepted; _Refused, or why the connection ended before a CONNACK."""
        self.closed = asyncio.Event()
        self.why: str | None = None
        """Why the connection ended: the first reason given wins."""
        self.subscribing: dict[int, str] = {}
        """Packet id -> topic of SUBSCRIBEs the broker has not answered yet."""
        self.refused: list[str] = []
        self.last_in = self.last_out = time.monotonic()
        self.ping_sent = 0.0
        self._parts: list[bytes] = []
        """A packet cut by a read's end, in the pieces read so far."""
        self._have = 0
        self._need = 0

    # -- asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.end(f"connection lost: {connect_failure(exc, None)}")
        else:
            self.end("closed by the broker")
        self.source.lost(self)
        self.closed.set()

    def data_received(self, data: bytes) -> None:
        self.last_in = time.monotonic()
        if self._parts:
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            data = b"".join(self._parts)
            self._parts = []
        try:
            pos, need = self._packets(data)
        except MQTTProtocolError as exc:
            self.abort(f"protocol error: {exc}")
            return
        if pos < len(data) and not self.closing():
            self._parts = [data[pos:]]
            self._have = len(data) - pos
            self._need = need - pos

    def _packets(self, data: bytes) -> tuple[int, int]:
        """Hand over every whole packet of data; returns where the first incomplete one starts and the
        index the data must reach before it is whole (one more byte while its length is incomplete)."""
        source = self.source
        queue = source.queue
        intake = source.intake
        generation = self.generation
        size = len(data)
        pos = 0
        taken = len(queue)
        try:
            while True:
                found = packet_at(data, pos)
                if found is None:
                    return pos, size + 1
                first, start, end = found
                if end > size:
                    return pos, end
                kind, value = parse(first, data[start:end])
                pos = end
                if kind == PUBLISH:
                    if intake:
                        fields: _Publish = value  # type: ignore[assignment]  # what parse gives for a PUBLISH
                        topic, payload, qos, _retain, _again, mid = fields
                        queue.append(_new_message(Message, (generation, mid, qos, topic, payload)))
                    continue
                source.control(self, kind, value)
                if self.closing():
                    return pos, size + 1
                intake = source.intake
                generation = self.generation
        finally:
            if len(queue) > taken:
                source.wakeup.set()

    # -- the source's side

    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def write(self, data: bytes) -> None:
        """Send data; what is written in one turn of the event loop leaves in one write (`flush`)."""
        if self.transport is None or self.transport.is_closing():
            return
        if not self._out:
            self._loop.call_soon(self.flush)
        self._out.append(data)
        self.last_out = time.monotonic()

    def flush(self) -> None:
        """Write what was queued, joined: a round of the boards' confirmations (a PUBLISH to each of hundreds
        of boards) is one write and a few TLS records instead of one record and one system call each."""
        out = self._out
        if not out:
            return
        self._out = []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def end(self, why: str) -> None:
        if self.why is None:
            self.why = why
        if not self.connack.done():
            self.connack.set_exception(ConnectionError(why))

    def abort(self, why: str) -> None:
        """Drop the connection at once (a protocol error, a dead broker)."""
        self.end(why)
        if self.transport is not None:
            self.transport.abort()


class MqttSource(Inbox):
    def __init__(
        self,
        config: MqttConfig,
        subscriptions: Iterable[str],
        on_connect: Callable[[], None] | None = None,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        """`will`: (topic, payload) the broker publishes, retained, when this connection dies."""
        self.config = config
        self.subscriptions = list(subscriptions)
        super().__init__()
        self.generation = 0
        self.connected = False
        self.intake = True
        """Messages are handed over (`close_intake` ends it: later ones stay unacknowledged at the broker)."""
        self.subscribed = threading.Event()
        """Set once the broker acknowledged the subscriptions of the first connection (tests wait in a thread)."""
        self._on_connect_hook = on_connect
        self._will = None if will is None else (will[0], will[1], True, 1)
        # verified: CERT_REQUIRED and check_hostname against mqtt.host
        self._ssl = ssl.create_default_context(cafile=config.ca_file) if config.tls else None
        self._conn: _Connection | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._outage_logged = False
        self._backoff = Backoff(config.reconnect_min, config.reconnect_max)
        self._pid = 0
        self._inflight: dict[int, bytes] = {}
        """Packet id -> the PUBLISH to send (again, DUP once sent) after a reconnect: QoS 1 messages awaiting
        their PUBACK, oldest first."""
        self._outbox: deque[tuple[str, bytes, bool]] = deque()
        """QoS 1 messages waiting for room among the in-flight ones."""

    # ------------------------------------------------------------------------------ the service's side

    def start(self) -> None:
        """Start connecting; call from the running event loop."""
        log.info("mqtt: connecting host=%s port=%d client_id=%s", self.config.host, self.config.port,
                 self.config.client_id)
        self._task = asyncio.create_task(self._run(), name="qala-hub.mqtt")

    def ack(self, messages: Iterable[Message]) -> int:
        """Acknowledge QoS 1 messages of the current connection, in order, in one write; returns how many."""
        conn = self._conn
        if conn is None or not self.connected:
            return 0
        generation = self.generation
        packets = [encode_puback(m.mid) for m in messages if m.qos == 1 and m.generation == generation]
        if packets:
            conn.write(b"".join(packets))
        return len(packets)

    def publish(self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False) -> None:
        """Send a message: QoS 1 is kept until the broker acknowledges it, across reconnects; QoS 0 is dropped
        while disconnected. Commands are never retained; the hub's liveness and confirmations are."""
        if qos == 0:
            if self.connected and self._conn is not None:
                self._conn.write(encode_publish(topic, payload, 0, retain))
            return
        self._outbox.append((topic, payload, retain))
        self._send_queued()

    def close_intake(self) -> None:
        """Stop handing over new messages; they stay unacknowledged at the broker."""
        self.intake = False

    async def stop(self) -> None:
        """Disconnect (what is queued, acknowledgements first, goes out before the DISCONNECT) and end the
        connection's task."""
        self.intake = False
        self._stop.set()
        conn = self._conn
        if conn is not None and conn.transport is not None and not conn.closed.is_set():
            conn.end("stopping")
            conn.write(DISCONNECT_PACKET)
            conn.flush()
            conn.transport.close()  # sends what is buffered first
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await conn.closed.wait()
            except TimeoutError:
                conn.abort("the broker did not close in time")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.connected = False

    # ------------------------------------------------------------------------------- the connection

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug of ours must not end the hub's intake for good: log it, connect again
                log.exception("mqtt: unexpected error, reconnecting")
                self.connected = False
                if self._conn is not None:
                    self._conn.abort("unexpected error")
                await self._pause()

    async def _session(self) -> None:
        """One connection: connect, keep it alive until it ends, then wait the backoff delay."""
        try:
            conn = await self._connect()
        except (_Refused, OSError, MQTTProtocolError) as exc:
            if not self._stop.is_set():  # else stop() ended the attempt: nothing to report
                self._connect_failed(exc)
                await self._pause()
            return
        keepalive = asyncio.create_task(self._keepalive(conn), name="qala-hub.mqtt-keepalive")
        try:
            await conn.closed.wait()
        finally:
            keepalive.cancel()
            if not conn.closed.is_set() and conn.transport is not None:
                conn.transport.abort()
        if self._stop.is_set():
            return
        self._lost(f"disconnected: {conn.why}")
        await self._pause()

    def _connect_failed(self, exc: Exception) -> None:
        """Say why a connect failed: a refusal at every attempt, a refused certificate once per outage, the rest
        as the outage's one warning."""
        config = self.config
        if isinstance(exc, _Refused):
            log.error("mqtt: connection refused host=%s reason=%s", config.host, exc)
            self._lost(f"connection refused: {exc}")
            return
        if isinstance(exc, ssl.SSLCertVerificationError) and not self._outage_logged:
            # not an outage that heals: the broker is not the one the CA and the host name promise
            log.error("mqtt: connect failed: %s host=%s port=%d, retrying with backoff",
                      connect_failure(exc, config.ca_file), config.host, config.port)
            self._outage_logged = True
        self._lost(f"connect failed: {connect_failure(exc, config.ca_file)}")

    async def _connect(self) -> _Connection:
        """TCP, TLS and CONNECT; returns once the broker accepted. The CONNACK is handled where it is read
        (`control`), so messages behind it in the same read are already of the new connection."""
        config = self.config
        loop = asyncio.get_running_loop()
        conn = _Connection(self)
        self._conn = conn
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.create_connection(lambda: conn, config.host, config.port, ssl=self._ssl)
                conn.write(encode_connect(config.client_id, config.keepalive, clean=False, user=config.username,
                                          password=config.password, will=self._will))
                await conn.connack
        except TimeoutError:
            conn.connack.cancel()
            conn.abort("connect timed out")
            raise TimeoutError(f"no connection and CONNACK within {CONNECT_TIMEOUT:g} s") from None
        except BaseException:
            conn.connack.cancel()  # an outcome nobody reads must not be left in it
            conn.abort("connect failed")
            raise
        return conn

    async def _keepalive(self, conn: _Connection) -> None:
        """A PINGREQ once the connection was quiet (either way) for `keepalive` seconds; no PINGRESP within
        another `keepalive`: the broker is gone, the connection is dropped (and made again)."""
        keepalive = self.config.keepalive
        while True:
            now = time.monotonic()
            if conn.ping_sent:
                due = conn.ping_sent + keepalive
                if now >= due:
                    conn.abort(f"no PINGRESP within {keepalive} s")
                    return
            else:
                due = min(conn.last_in, conn.last_out) + keepalive
                if now >= due:
                    conn.ping_sent = now
                    conn.write(PINGREQ_PACKET)
                    due = now + keepalive
            await asyncio.sleep(due - now)

    def control(self, conn: _Connection, kind: int, value: object) -> None:
        """A packet other than PUBLISH, as it is read."""
        if kind == PUBACK:
            if self._inflight.pop(cast("int", value), None) is not None:
                self._send_queued()
        elif kind == PINGRESP:
            conn.ping_sent = 0.0
        elif kind == SUBACK:
            self._suback(conn, *cast("tuple[int, list[int]]", value))
        elif kind == CONNACK:
            if conn.connack.done():
                conn.abort("protocol error: CONNACK on an open connection")
                return
            session_present, code = cast("tuple[bool, int]", value)
            if code:
                conn.connack.set_exception(_Refused(code))
                conn.abort(f"connection refused: {REFUSED.get(code, code)}")
                return
            self._accepted(conn, session_present)
            conn.connack.set_result(session_present)
        # UNSUBACK: the hub never unsubscribes

    def _accepted(self, conn: _Connection, session_present: bool) -> None:
        self.generation += 1
        conn.generation = self.generation
        self.connected = True
        self._backoff.reset()
        self._outage_logged = False
        for topic in self.subscriptions:
            pid = self._next_pid(conn)
            conn.subscribing[pid] = topic
            conn.write(encode_subscribe(pid, topic, 1))
        log.info("mqtt: connected host=%s session_present=%s generation=%d tls=%s", self.config.host,
                 session_present, self.generation, self.config.tls)
        if not self.config.tls:
            log.warning("mqtt: plain MQTT (mqtt.tls = false): the login and every message cross the network "
                        "unencrypted; a lab bench only host=%s", self.config.host)
        inflight = self._inflight
        for pid, packet in inflight.items():  # unacknowledged QoS 1 messages first, DUP if sent before
            conn.write(packet)
            inflight[pid] = _dup(packet)
        if self._on_connect_hook is not None:
            try:
                self._on_connect_hook()
            except Exception:
                log.exception("mqtt: the on-connect hook failed")

    def _suback(self, conn: _Connection, pid: int, granted: list[int]) -> None:
        topic = conn.subscribing.pop(pid, None)
        if topic is None:
            return
        if any(code & 0x80 for code in granted):
            conn.refused.append(topic)
        if conn.subscribing:
            return
        if conn.refused:
            log.error("mqtt: subscription refused topics=%s", ",".join(conn.refused))
            return
        log.info("mqtt: subscribed topics=%s", ",".join(self.subscriptions))
        self.subscribed.set()

    def lost(self, conn: _Connection) -> None:
        """The connection ended (called by the connection)."""
        if conn is self._conn:
            self.connected = False

    def _send_queued(self) -> None:
        outbox = self._outbox
        inflight = self._inflight
        conn = self._conn if self.connected else None
        while outbox and len(inflight) < MAX_INFLIGHT:
            topic, payload, retain = outbox.popleft()
            pid = self._next_pid(conn)
            packet = encode_publish(topic, payload, 1, retain, pid=pid)
            if conn is not None:
                conn.write(packet)
                packet = _dup(packet)
            inflight[pid] = packet

    def _next_pid(self, conn: _Connection | None) -> int:
        """A packet id no message or subscription in flight holds."""
        while True:
            self._pid = self._pid % 0xFFFF + 1
            if self._pid not in self._inflight and (conn is None or self._pid not in conn.subscribing):
                return self._pid

    def _lost(self, what: str) -> None:
        if not self._outage_logged:
            log.warning("mqtt: %s host=%s port=%d, reconnecting with backoff", what, self.config.host,
                        self.config.port)
            self._outage_logged = True
        else:
            log.debug("mqtt: %s", what)

    async def _pause(self) -> None:
        """The backoff delay before the next attempt; a stop ends it."""
        delay = self._backoff.next()
        log.debug("mqtt: retry in %.1f s", delay)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stop.wait()
