"""An asyncio MQTT 3.1.1 client for MicroPython that never blocks the event loop.

Packets come from protocols.mqtt_codec; this module owns only the connection: connect with a timeout,
keepalive pings, QoS 0 and 1 publish with PUBACK tracking, subscribe, the last will, a persistent session,
reconnection with exponential backoff and jitter, and a maximum incoming packet size. Method names follow
umqtt.simple where they fit (set_last_will, set_callback, connect, disconnect, ping, publish, subscribe).

With `ssl` the broker must present a certificate that chains to the CA file `ca` and names `server_hostname`
(default: the host dialled); anything else fails the connect with the reason (`tls_context`, docs/firmware.md).
Without it every connect logs a warning: plain MQTT is for a lab bench only.

`run(on_connect)` is the supervisor: it connects, calls `on_connect(client, session_present)`, and when the
connection fails for any reason (refused, closed, garbage, a missing PINGRESP or PUBACK) logs the reason and
reconnects after a backoff delay. `publish(..., qos=1)` returns once the broker acknowledged the message,
however many reconnections that takes: unacknowledged messages are kept with their packet id and sent
again with DUP after each reconnect (MQTT 3.1.1 section 4.4). A PUBACK that times out on a live connection
counts as a dead connection. MicroPython only (uses time.ticks_ms).

`client_for(mqtt, site, device)`: the board's client from its config's mqtt section, with its last will (the
running board, safe mode and update mode each make theirs with it; protocols.status and topics are imported
there, by them).
"""

import asyncio
import gc
import os
import time

from firmware import backoff, log
from protocols import mqtt_codec as mc

try:  # MicroPython has no builtin TimeoutError, and asyncio.TimeoutError is not reachable from the package
    from asyncio.core import TimeoutError as _Timeout
except ImportError:  # CPython
    _Timeout = TimeoutError


class MQTTError(Exception):
    pass


def _rand16():
    b = os.urandom(2)  # not `random`: unseeded on some ports, which would put boards in lockstep
    return b[0] << 8 | b[1]


def tls_context(ca):
    """A client SSLContext that requires a broker certificate chaining to the CA(s) in the file `ca`.

    The file holds PEM certificates (one or more, e.g. the old and the new CA during a rotation) or one DER
    certificate. This port's mbedtls parses DER only, so each PEM block is decoded here; the file's bytes are
    dropped once loaded. Raises MQTTError naming the file when it is missing or holds no valid certificate.
    """
    import binascii
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        with open(ca, "rb") as f:
            data = f.read()
    except (OSError, TypeError) as exc:
        raise MQTTError("mqtt.ca: cannot read %s: %s" % (ca, log.why(exc))) from None
    n = 0
    try:
        if data[:1] == b"\x30":  # an ASN.1 SEQUENCE: one DER certificate
            ctx.load_verify_locations(cadata=data)
            n = 1
        else:
            at = data.find(b"-----BEGIN CERTIFICATE-----")
            end = data.find(b"-----END CERTIFICATE-----", at)
            while at >= 0 and end > at:
                ctx.load_verify_locations(cadata=binascii.a2b_base64(memoryview(data)[at + 27:end]))
                n += 1
                at = data.find(b"-----BEGIN CERTIFICATE-----", end)
                end = data.find(b"-----END CERTIFICATE-----", at)
    except ValueError as exc:  # bad base64, or mbedtls: "invalid cert"
        raise MQTTError("mqtt.ca: %s: certificate %d is not valid: %s" % (ca, n + 1, log.why(exc))) from None
    if not n:
        raise MQTTError("mqtt.ca: %s holds no certificate (PEM -----BEGIN CERTIFICATE----- or DER)" % ca)
    return ctx


class MQTTClient:
    def __init__(self, client_id, server, port=1883, user=None, password=None, keepalive=60, ssl=False,
                 clean_session=False, max_packet=2048, timeout=10, ca=None, server_hostname=None):
        self.client_id = client_id
        # the brokers, (host, port) pairs tried in turn, the one in use first: each failed connect or lost
        # connection moves on to the next (failover between the nodes of a cluster; the backoff, the session's
        # messages awaiting their PUBACK and the board's sequence numbers carry on). One list, no attribute
        # for the one in use: each attribute name is interned on the board.
        self.server = server if isinstance(server, list) else [(server, port)]
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.ssl = ssl
        self.ca = ca  # with ssl: the file of the CA(s) the broker's certificate must chain to
        self.server_hostname = server_hostname  # the name the certificate must carry; default: server
        self.clean = clean_session
        self.max_packet = max_packet
        self.timeout = timeout  # seconds for connecting, for a PUBACK or SUBACK, for draining a write
        self.will = None
        self.cb = None
        self.can_connect = None  # optional callable: False while there is no link (Wi-Fi down)
        self.on_error = None  # optional callable(exc): a connect that failed (the board counts MemoryErrors)
        self.reconnects = 0  # connections lost after being up
        self._r = self._w = None
        self._up = asyncio.Event()
        self._dead = asyncio.Event()  # set when the current connection must be torn down
        self._why = None
        self._pid = 0
        self._pending = {}  # pid -> [order, packet, Event, topic, sent]: QoS 1 messages awaiting PUBACK
        self._order = 0
        self._last_rx = 0

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.will = (topic, msg, retain, qos)

    def set_callback(self, f):
        """f(topic: str, msg: bytes, retained: bool) for each incoming PUBLISH."""
        self.cb = f

    def isconnected(self):
        return self._up.is_set()

    async def connect(self):
        """One attempt: open the socket, CONNECT, wait for CONNACK. Returns session_present; raises on failure."""
        gc.collect()  # the socket, TLS and stream buffers want a few KB in one piece: garbage first
        ctx = None
        if self.ssl:
            ctx = tls_context(self.ca)
        else:
            log.warn("mqtt: PLAIN connection to %s:%d, no TLS: lab bench only", *self.server[0])
        t = self.timeout
        host, port = self.server[0]
        self._r, self._w = await asyncio.wait_for(
            asyncio.open_connection(host, port, ctx, self.server_hostname or host), t)
        del ctx
        try:
            self._w.write(mc.encode_connect(self.client_id, self.keepalive, self.clean, self.user, self.pswd,
                                            self.will))
            try:  # the TLS handshake, and the broker certificate's checks, happen on this first write
                await asyncio.wait_for(self._w.drain(), t)
            except ValueError as exc:  # mbedtls: "\nThe certificate is not correctly signed by the trusted CA\n"
                if not self.ssl:
                    raise
                raise MQTTError("TLS: broker %s refused: %s" % (self.server_hostname or host,
                                                                str(exc).strip())) from None
            kind, value = mc.parse(*await asyncio.wait_for(self._read_packet(), t))
            if kind != mc.CONNACK:
                raise mc.MQTTProtocolError("expected CONNACK, got type %d" % kind)
            if value[1]:
                raise MQTTError("connection refused, CONNACK code %d" % value[1])
        except BaseException:
            self._close()
            raise
        self._last_rx = time.ticks_ms()
        return value[0]

    async def disconnect(self):
        await self._send(mc.DISCONNECT_PACKET)
        self._kill("disconnect requested")

    async def ping(self):
        await self._send(mc.PINGREQ_PACKET)

    async def publish(self, topic, msg, retain=False, qos=0):
        """QoS 0: sent if connected (True), else dropped (False). QoS 1: returns True once acknowledged."""
        if not qos:
            return self._up.is_set() and await self._send(mc.encode_publish(topic, msg, 0, retain))
        pid, ev = self.publish_nowait(topic, msg, retain, True)
        while pid in self._pending:
            try:
                await asyncio.wait_for(ev.wait(), self.timeout)
            except _Timeout:
                if self._up.is_set():
                    self._kill("no PUBACK for packet %d in %d s" % (pid, self.timeout))
        return True

    def publish_nowait(self, topic, msg, retain=False, keep=False):
        """Queue a QoS 1 message, send it if connected; returns (pid, Event set on its PUBACK).

        Unless `keep`, an older unacknowledged message to the same topic is forgotten (status messages:
        only the latest matters).
        """
        if not keep:
            for old in list(self._pending):
                if self._pending[old][3] == topic:
                    del self._pending[old]
        pid = self._next_pid()
        ev = asyncio.Event()
        pkt = mc.encode_publish(topic, msg, 1, retain, False, pid)
        self._order += 1
        up = self._up.is_set()
        self._pending[pid] = [self._order, pkt, ev, topic, up]
        if up:
            asyncio.create_task(self._send(pkt, self._w))  # noqa: RUF006 - MicroPython keeps running tasks alive
        return pid, ev

    async def subscribe(self, topic, qos=0):
        """Returns once the broker answered with SUBACK; the connection is dropped if it does not. A clean
        session subscribes at QoS 0: it keeps nothing for the board anyway, and RabbitMQ would keep a QoS 1
        subscription's queue durable on one node, unreachable from the others while that node is down."""
        self._suback = ev = asyncio.Event()
        await self._send(mc.encode_subscribe(self._next_pid(), topic, 0 if self.clean else qos))
        try:
            await asyncio.wait_for(ev.wait(), self.timeout)
        except _Timeout:
            self._kill("no SUBACK")
            raise MQTTError("no SUBACK") from None

    async def run(self, on_connect=None):
        """Connect, call on_connect(client, session_present), watch the connection; again when it fails."""
        attempt = 0
        turn = False  # a connect failed or a connection was lost: the next broker of the list, if any
        while True:
            if self.can_connect is not None and not self.can_connect():
                await asyncio.sleep(1)
                continue
            if turn:
                self.server.append(self.server.pop(0))
            turn = True
            try:
                session = await self.connect()
            except Exception as exc:
                if self.on_error is not None:
                    self.on_error(exc)
                wait = backoff.delay_ms(attempt, _rand16())
                attempt += 1
                log.warn("mqtt: connect to %s:%d failed: %s; retry in %d ms", self.server[0][0], self.server[0][1],
                         log.why(exc), wait)
                await asyncio.sleep_ms(wait)
                continue
            log.info("mqtt: connected to %s:%d (session present: %s)", self.server[0][0], self.server[0][1], session)
            attempt = 0
            self._dead.clear()
            self._why = None
            tasks = (asyncio.create_task(self._reader()), asyncio.create_task(self._pinger()))
            self._up.set()
            await self._resend()
            if on_connect is not None:
                try:
                    await on_connect(self, session)
                except Exception as exc:
                    log.error("mqtt: on_connect failed: %s", log.why(exc))
            await self._dead.wait()
            self._up.clear()
            for t in tasks:
                t.cancel()
            self._close()
            self.reconnects += 1
            wait = backoff.delay_ms(0, _rand16())
            log.warn("mqtt: connection lost: %s; reconnecting in %d ms", self._why, wait)
            await asyncio.sleep_ms(wait)

    def _next_pid(self):
        while True:
            self._pid = self._pid % 0xFFFF + 1
            if self._pid not in self._pending:
                return self._pid

    def _kill(self, why):
        if self._why is None:
            self._why = why
        self._dead.set()
        self._up.clear()

    def _close(self):
        w = self._w
        self._r = self._w = None
        if w is not None:
            try:
                w.close()
            except Exception as exc:
                log.debug("mqtt: close: %s", log.why(exc))

    async def _send(self, pkt, w=None):
        """Write one packet; on failure mark the connection dead and return False.

        With `w`, only on that connection: a send queued before a reconnect must not go out on the next one,
        where _resend already repeats it.
        """
        if w is None:
            w = self._w
        if w is None or w is not self._w:
            return False
        try:
            w.write(pkt)
            await asyncio.wait_for(w.drain(), self.timeout)
        except Exception as exc:
            self._kill("send failed: %s" % log.why(exc))
            return False
        return True

    async def _resend(self):
        """After a reconnect: every unacknowledged QoS 1 message, oldest first, DUP if it was sent before."""
        for item in sorted(self._pending.values(), key=lambda item: item[0]):
            pkt = item[1]
            if item[4]:
                pkt = bytes((pkt[0] | 0x08,)) + pkt[1:]
            item[4] = True
            if not await self._send(pkt):
                return

    async def _read_packet(self):
        r = self._r
        head = await r.read(1)
        n = 0
        shift = 0
        while head:
            b = await r.read(1)
            if not b:
                break
            n |= (b[0] & 0x7F) << shift
            if not b[0] & 0x80:
                if n > self.max_packet:
                    raise mc.MQTTProtocolError("packet of %d bytes over max_packet" % n)
                try:
                    return head[0], (await r.readexactly(n) if n else b"")
                except EOFError:
                    break
            shift += 7
            if shift > 21:
                raise mc.MQTTProtocolError("length over 4 bytes")
        raise EOFError("broker closed the connection")

    async def _reader(self):
        try:
            while True:
                first, body = await self._read_packet()
                self._last_rx = time.ticks_ms()
                kind, value = mc.parse(first, body)
                if kind == mc.PUBACK:
                    item = self._pending.pop(value, None)
                    if item is None:
                        log.warn("mqtt: PUBACK for unknown packet id %d ignored", value)
                    else:
                        item[2].set()
                elif kind == mc.PUBLISH:
                    if value[2]:
                        await self._send(mc.encode_puback(value[5]))
                    if self.cb is not None:
                        self.cb(value[0], value[1], value[3])
                elif kind == mc.SUBACK:
                    self._suback.set()
                elif kind == mc.CONNACK:
                    raise mc.MQTTProtocolError("CONNACK on an open connection")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._kill(log.why(exc))

    async def _pinger(self):
        while True:
            await asyncio.sleep_ms(self.keepalive * 500)
            if time.ticks_diff(time.ticks_ms(), self._last_rx) > self.keepalive * 1500:
                self._kill("no packet from the broker for %d s" % (self.keepalive * 3 // 2))
                return
            await self._send(mc.PINGREQ_PACKET)


def client_for(mqtt, site, device):
    """The board's MQTT client: persistent session (clean with mqtt.clean), last will `offline` retained on its
    status topic."""
    from protocols import status, topics

    will = status.encode_status(status.OFFLINE)
    c = MQTTClient("qala-%s-%s" % (site, device), mqtt["host"], mqtt["port"], mqtt["user"], mqtt["password"],
                   mqtt["keepalive"], mqtt["tls"], mqtt["clean"], mqtt["max_packet"], 10, mqtt["ca"],
                   mqtt["server_hostname"])
    c.set_last_will(topics.build(site, device, topics.STATUS), will, True, 1)
    return c
