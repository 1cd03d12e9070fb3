"""The MQTT adapter: paho-mqtt's network thread with manual acknowledgement, handed into asyncio.

Why paho and not aiomqtt: aiomqtt 2.5.1 acknowledges a QoS 1 message as it arrives and has no manual
acknowledgement, so a hub killed between the PUBACK and its spool write would lose the message. paho-mqtt
2.x has `manual_ack=True` and `ack(mid, qos)`: this module acknowledges only what the service has spooled.

- paho runs its own network thread (`loop_start`); `ack` and `disconnect` from the asyncio thread only
  queue a packet and wake that thread (paho's threaded mode), so the socket has one writer.
- Persistent session: MQTT 3.1.1, clean session off, a fixed client id, QoS 1 subscriptions renewed on
  every connect. The broker keeps what the hub has not acknowledged while the hub is down or slow.
- Incoming messages go into a deque; the event loop is woken with one `call_soon_threadsafe` per burst,
  not per message. The service drains the deque in batches (`drain`).
- Reconnect with jittered exponential backoff (hub.backoff) for ever: paho's own fixed doubling is turned
  off (`reconnect_delay_set(0, 0)`) and the disconnect callbacks sleep our delay in the network thread,
  interruptibly. A broker restart never stops the hub (telegraf#13031).
- Every connect starts a new `generation`; acknowledgements for messages of an earlier connection are
  dropped (the broker redelivers those), so a packet id reused by the broker is never acknowledged early.
- `close_intake()` stops handing messages over (those arriving later stay unacknowledged, so the broker
  keeps them for the next session); `stop()` then disconnects after the queued acknowledgements.

- TLS (`mqtt.tls`): `ssl.create_default_context(cafile=mqtt.ca_file)`, so CERT_REQUIRED and check_hostname:
  the broker's certificate must chain to that CA and name `mqtt.host`. A refused certificate is logged once
  per outage as one ERROR line naming the failed check (`connect_failure`), never as a traceback. The records
  are decrypted from memory (hub.ingest.tlsbio: one system call for many records, not two per record).

`publish` sends the control service's commands (QoS 1, never retained) on the same connection.

Imports paho, hub.backoff, hub.ingest.tlsbio and hub.config; knows nothing of payloads, spool or InfluxDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from hub.backoff import Backoff
from hub.ingest.tlsbio import BioContext, BioSocket

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from hub.config import MqttConfig

log = logging.getLogger(__name__)

_PUBACK = struct.Struct(">BBH")
"""MQTT 3.1.1 PUBACK: type 4 (0x40), remaining length 2, packet id."""


class _Client(paho.Client):
    """paho's client with buffered reads and without the topic matcher on every message.

    paho 2.2 reads a packet with one `recv` for its first byte, one per remaining-length byte and one for the
    rest, and goes back to `select` after each packet: four or five system calls per message. Here `_sock_recv`
    serves those reads from one `recv(65536)`, and `loop_read` keeps parsing while buffered bytes remain (a
    whole packet sitting in the buffer would otherwise wait for the next `select`). The buffer belongs to
    one socket: after a reconnect, bytes of the old connection are never handed out.

    `_handle_on_message` calls `on_message` directly: the hub registers no per-topic callbacks, and paho's
    matcher walk cost more than the rest of the hand-over.
    """

    _BUFSIZE = 65536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0
        self._rsock: object = None
        self.on_qos1_publish: Callable[[bytes, int, bytes], None] | None = None
        """(topic, packet id, payload) of each QoS 1 PUBLISH, instead of on_message (see _packet_read)."""
        self.connect_error: OSError | None = None
        """Why the last connect attempt failed: paho's loop swallows it before calling on_connect_fail."""

    def reconnect(self) -> MQTTErrorCode:
        self.connect_error = None
        try:
            return super().reconnect()
        except OSError as exc:  # ssl.SSLError and socket errors; paho's loop catches OSError only
            self.connect_error = exc
            raise

    def _fill(self) -> bytes:
        """Up to _BUFSIZE bytes from the socket: BlockingIOError when nothing is there, b"" when it closed.

        Over TLS one `recv` gives one TLS record, and mosquitto writes a record per message: the records
        already there are read too (the socket is non-blocking), or TLS would cost a `select` per message.
        """
        buf = super()._sock_recv(self._BUFSIZE)
        if not buf or not isinstance(self._sock, BioSocket | ssl.SSLSocket):
            return buf
        parts = [buf]
        total = len(buf)
        while total < self._BUFSIZE:
            try:
                more = super()._sock_recv(self._BUFSIZE - total)
            except BlockingIOError:
                break
            if not more:
                break  # closed: these bytes first, the next read reports it
            parts.append(more)
            total += len(more)
        return b"".join(parts) if len(parts) > 1 else buf

    def _sock_recv(self, bufsize: int) -> bytes:
        buf = self._rbuf
        pos = self._rpos
        if pos >= len(buf) or self._rsock is not self._sock:
            buf = self._fill()  # raises BlockingIOError when nothing is there
            if not buf:
                return buf  # connection closed
            self._rsock = self._sock
            pos = 0
        end = pos + bufsize
        chunk = buf[pos:end]
        self._rbuf = buf
        self._rpos = pos + len(chunk)
        return chunk

    def _packet_read(self) -> Any:
        """Hand every whole QoS 1 PUBLISH at the front of the buffer to `on_qos1_publish`, else paho's read.

        Only between packets (paho holds no partial one) and only for MQTT 3.1.1 PUBLISH at QoS 1: topic,
        packet id and payload are sliced straight out of the buffer, without paho's per-packet state dict,
        MQTTMessage and debug-log formatting. Anything else (an incomplete packet, PUBACK, SUBACK, PINGRESP,
        QoS 0) goes through paho unchanged, which keeps the stream in order.
        """
        deliver = self.on_qos1_publish
        if deliver is None or self._in_packet["command"] != 0 or self._rsock is not self._sock:
            return super()._packet_read()
        buf = self._rbuf
        pos = self._rpos
        size = len(buf)
        handled = 0
        while pos + 4 <= size and buf[pos] & 0xF6 == 0x32:  # PUBLISH (0x3_), QoS 1; DUP and RETAIN may be set
            length = 0
            shift = 0
            i = pos + 1
            while True:  # remaining length: 1..4 bytes of 7 bits
                if i >= size or i > pos + 4:
                    length = -1
                    break
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                shift += 7
                i += 1
                if not byte & 0x80:
                    break
            if length < 0 or i + length > size or length < 4:
                break
            end = i + length
            topic_len = (buf[i] << 8) | buf[i + 1]
            mid_at = i + 2 + topic_len
            if mid_at + 2 > end:
                break  # malformed: paho reports it
            deliver(buf[i + 2 : mid_at], (buf[mid_at] << 8) | buf[mid_at + 1], buf[mid_at + 2 : end])
            pos = end
            handled += 1
        if not handled:
            return super()._packet_read()
        self._rpos = pos
        with self._msgtime_mutex:
            self._last_bytes_received = time.monotonic()
        return paho.MQTT_ERR_SUCCESS

    def loop_read(self, max_packets: int = 1) -> Any:
        rc = super().loop_read(max_packets)
        while rc == paho.MQTT_ERR_SUCCESS and self._sock is not None and self._rsock is self._sock \
                and self._rpos < len(self._rbuf):
            rc = super().loop_read(max_packets)
        return rc

    def queue_raw(self, packets: bytes) -> None:
        """Queue whole control packets (here: a batch of PUBACKs) as one write, as `ack` would one by one.

        `ack(mid, 1)` queues a 4-byte packet, wakes paho's thread through its socket pair and costs one `send`
        each; a batch's acknowledgements in one buffer cost one of each. paho treats a queued PUBACK as bytes to
        write and keeps no state for it, so this is exactly the same bytes on the wire, in the same order.
        """
        self._packet_queue(paho.PUBACK, packets, 0, 0)

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                on_message(self, self._userdata, message)


def connect_failure(exc: BaseException | None, ca_file: str | None) -> str:
    """One line naming why a connect failed, e.g. the TLS check that refused the broker's certificate."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS: broker certificate refused: {exc.verify_message} "
                f"(trusted: {ca_file or 'the system CAs'}, mqtt.ca_file)")
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return "unknown cause"


class Message(NamedTuple):
    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes


_new_message: Callable[[type[Message], tuple[object, ...]], Message] = tuple.__new__
"""Message(...) without the NamedTuple's Python-level __new__ (about half the cost; one per message)."""


class MqttSource:
    def __init__(
        self,
        config: MqttConfig,
        subscriptions: Iterable[str],
        on_connect: Callable[[], None] | None = None,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        """`will`: (topic, payload) the broker publishes, retained, when this connection dies."""
        self.config = config
        self.subscriptions = [(topic, 1) for topic in subscriptions]
        self.queue: deque[Message] = deque()
        self.generation = 0
        self.connected = False
        self.subscribed = threading.Event()
        """Set once the broker acknowledged the subscriptions of the first connection."""
        self._on_connect_hook = on_connect
        self._gen_lock = threading.Lock()
        self._stop = threading.Event()
        self._intake = True
        self._outage_logged = False
        self._backoff = Backoff(config.reconnect_min, config.reconnect_max)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_pending = False
        self.wakeup = asyncio.Event()
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            clean_session=False,
            protocol=paho.MQTTv311,
            manual_ack=True,
        )
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        if config.tls:  # verified (CERT_REQUIRED, check_hostname); records read from memory (hub.ingest.tlsbio)
            # paho calls only the context's wrap_socket (and reads check_hostname): a BioContext stands in for it
            context = BioContext(ssl.create_default_context(cafile=config.ca_file))
            client.tls_set_context(cast("ssl.SSLContext", context))
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        client.reconnect_delay_set(0, 0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        client.on_qos1_publish = self._on_qos1_publish
        client.on_subscribe = self._on_subscribe
        self._client = client

    # ------------------------------------------------------------------------------ asyncio side

    def start(self) -> None:
        """Start connecting in paho's thread; call from the running event loop."""
        self._loop = asyncio.get_running_loop()
        log.info("mqtt: connecting host=%s port=%d client_id=%s", self.config.host, self.config.port,
                 self.config.client_id)
        self._client.connect_async(self.config.host, self.config.port, self.config.keepalive)
        self._client.loop_start()

    def drain(self, limit: int) -> list[Message]:
        """Take up to `limit` received messages, oldest first; clears the wake-up flag."""
        self.wakeup.clear()
        self._wake_pending = False
        queue = self.queue
        n = min(limit, len(queue))
        return [queue.popleft() for _ in range(n)]

    def ack(self, messages: Iterable[Message]) -> int:
        """Acknowledge QoS 1 messages of the current connection, in order; returns how many were sent."""
        packet = bytearray()
        puback = _PUBACK.pack
        with self._gen_lock:
            generation = self.generation
            for m in messages:
                if m.qos == 1 and m.generation == generation:
                    packet += puback(0x40, 2, m.mid)
            if packet:
                self._client.queue_raw(bytes(packet))
        return len(packet) // _PUBACK.size

    def publish(self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False) -> None:
        """Queue an outgoing message; paho sends it, and resends QoS 1 after a reconnect. Commands are never
        retained; the hub's liveness is."""
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def close_intake(self) -> None:
        """Stop handing over new messages; they stay unacknowledged at the broker."""
        self._intake = False

    def stop(self) -> None:
        """Disconnect (queued acknowledgements go out first) and join paho's thread. Blocking, brief."""
        self._intake = False
        self._stop.set()
        self._client.disconnect()
        self._client.loop_stop()
        self.connected = False

    # ---------------------------------------------------------------------------- network thread

    def _wake(self) -> None:
        self.wakeup.set()

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        if not self._intake:
            return
        self.queue.append(Message(self.generation, message.mid, message.qos, message.topic, bytes(message.payload)))
        if not self._wake_pending and self._loop is not None:
            self._wake_pending = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: the hub is exiting
                self._loop.call_soon_threadsafe(self._wake)

    def _on_qos1_publish(self, topic: bytes, mid: int, payload: bytes) -> None:
        if not self._intake:
            return
        # surrogateescape: a topic that is not UTF-8 (mosquitto refuses those) reaches the parser, which rejects it
        self.queue.append(_new_message(Message, (self.generation, mid, 1, topic.decode("utf-8", "surrogateescape"),
                                                 payload)))
        if not self._wake_pending and self._loop is not None:
            self._wake_pending = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: the hub is exiting
                self._loop.call_soon_threadsafe(self._wake)

    def _on_connect(self, client: paho.Client, _userdata: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("mqtt: connection refused host=%s reason=%s", self.config.host, reason)
            return
        with self._gen_lock:
            self.generation += 1
        self.connected = True
        self._backoff.reset()
        self._outage_logged = False
        client.subscribe(self.subscriptions)
        log.info("mqtt: connected host=%s session_present=%s generation=%d tls=%s", self.config.host,
                 flags.session_present, self.generation, self.config.tls)
        if not self.config.tls:
            log.warning("mqtt: plain MQTT (mqtt.tls = false): the login and every message cross the network "
                        "unencrypted; a lab bench only host=%s", self.config.host)
        if self._on_connect_hook is not None:
            self._on_connect_hook()

    def _on_subscribe(self, _client: paho.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("mqtt: subscription refused topics=%s reasons=%s", self.subscriptions, failed)
            return
        log.info("mqtt: subscribed topics=%s", ",".join(topic for topic, _ in self.subscriptions))
        self.subscribed.set()

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected = False
        if self._stop.is_set():
            return
        self._lost(f"disconnected reason={reason}")

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        exc = self._client.connect_error
        if isinstance(exc, ssl.SSLCertVerificationError) and not self._outage_logged:
            # not an outage that heals: the broker is not the one the CA and the host name promise
            log.error("mqtt: connect failed: %s host=%s port=%d, retrying with backoff",
                      connect_failure(exc, self.config.ca_file), self.config.host, self.config.port)
            self._outage_logged = True
        self._lost(f"connect failed: {connect_failure(exc, self.config.ca_file)}")

    def _lost(self, what: str) -> None:
        delay = self._backoff.next()
        if not self._outage_logged:
            log.warning("mqtt: %s host=%s port=%d, reconnecting with backoff", what, self.config.host,
                        self.config.port)
            self._outage_logged = True
        else:
            log.debug("mqtt: %s, retry in %.1f s", what, delay)
        self._stop.wait(delay)
