"""Engine choice for issue 15: a three-node RabbitMQ cluster and a three-node NATS cluster on this machine, the
same MQTT 3.1.1 QoS 1 telemetry load into each, one node SIGKILLed mid-run. Figures for docs/scale.md.

    .venv/bin/python bench/engines.py                          # both engines, about 4 minutes
    .venv/bin/python bench/engines.py --engines nats --json out.json
    .venv/bin/python bench/engines.py --no-probes --publish-s 5 --mixed-s 15 --kill-at 6

Per engine, in a temporary folder (each node its own ports, data and log folders, all on 127.0.0.1):

- RabbitMQ (Debian's rabbitmq-server 3.10), simulators/rabbitmq.py's RabbitCluster in its plain mode (anonymous
  MQTT, guest): an epmd of our own on a free port, three nodes `rabbitN@localhost`
  (RABBITMQ_NODENAME, RABBITMQ_NODE_PORT, RABBITMQ_DIST_PORT, one Erlang cookie in a HOME of our own), the
  `rabbitmq_mqtt` plugin, nodes 2 and 3 `join_cluster` node 1 (rabbitmqctl stop_app / join_cluster / start_app).
  The plugin publishes MQTT messages to `amq.topic` with the topic as routing key (`/` -> `.`); a quorum queue
  `qala.telemetry` over the three nodes is bound with `qala.*.*.telemetry`. It is declared through node 3, so
  its leader starts there.
- NATS (Debian's nats-server 2.9): three servers with cluster routes to each other, JetStream (store dirs of
  their own), an MQTT listener each (`stream_replicas: 3` for the MQTT sessions' own streams), a stream `QALA`
  over `qala.>` (MQTT topic `qala/s/d/telemetry` is subject `qala.s.d.telemetry`) with 3 replicas, file storage,
  work-queue retention, and a durable pull consumer `hub` with explicit acks.

Then, per engine:

0. probes (unless --no-probes): what the MQTT side does with retained messages (on the same and another node,
   exact and wildcard filters), last will, a persistent session (clean session false) resumed on another node,
   and one client id on two nodes. paho-mqtt clients, a few seconds each.
1. publish: --publishers processes of --connections raw MQTT connections each (pre-encoded PUBLISH packets,
   QoS 1, a window of --window unacknowledged per connection), spread over the three nodes, each for --devices
   boards (`qala/bench/bNNNN/telemetry`, about 150-byte JSON payloads, seq per board), nobody consuming,
   --publish-s seconds: PUBACKed msg/s and the servers' CPU per message (utime + stime of each server process tree from
   /proc/PID/stat).
2. deliver: one consumer process with the engine's own client (aio-pika: manual ack, prefetch --prefetch, one
   `multiple` ack per --batch messages; nats-py: pull consumer, fetch --batch, explicit ack of each message
   before the next fetch) drains the backlog with no publisher running: msg/s and CPU per message.
3. mixed + kill: publishers and the consumer together for --mixed-s seconds; at --kill-at the node leading the
   queue (RabbitMQ) or the stream (NATS) is SIGKILLed. The consumer is connected to another node. Publishers
   on the killed node reconnect to the next node in their list and send again what was not acknowledged.
   Reported: rates before the kill, the longest PUBACK gap of publishers on the surviving nodes, how long the
   moved publishers took from the kill to their first PUBACK, the consumer's longest gap, and, counted per
   board and seq at the consumer, every PUBACKed message that never arrived (lost) and the duplicates.

Every process started here is stopped by its PID (also on Ctrl-C): the servers with SIGTERM (SIGKILL after 30 s),
the workers by joining them. The load generator's CPU is reported too: it shares the cores with the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import queue
import socket
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from protocols.mqtt_codec import encode_length  # noqa: E402
from simulators.rabbitmq import (  # noqa: E402
    RabbitCluster,
    RabbitNode,
    port_open,
    rss_mb,
    run_parallel,
    tree_cpu,
)
from simulators.services import Service, ServiceError, _http_status, free_port  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from multiprocessing.synchronize import Event

    from aio_pika.abc import AbstractIncomingMessage

HOST = "127.0.0.1"
SITE = "bench"
QUEUE = "qala.telemetry"  # RabbitMQ quorum queue
BINDING = "qala.*.*.telemetry"
STREAM = "QALA"  # NATS stream
MQTT_MSGS = "$MQTT_msgs"  # nats-server's own stream of MQTT QoS 1 messages (the nats-msgs variant reads it)
MQTT_MSGS_PREFIX = "$MQTT.msgs."
DURABLE = "hub"
BUCKET = 0.01  # seconds per timeline bucket
CTX = multiprocessing.get_context("spawn")


# ------------------------------------------------------------------------------------------ RabbitMQ

class Cluster:
    """Three nodes of one engine; subclasses start and join them."""

    engine: str  # its name in the results
    leads = "queue"  # what the node killed mid-run leads
    nodes: list[Any]

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.timings: dict[str, float] = {}
        self.notes: list[str] = []

    @property
    def mqtt_ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes if n.running]

    def cpu(self) -> float:
        return tree_cpu(self.pids())

    def rss_mb(self) -> float:
        return sum(rss_mb(pid) for pid in self.pids())

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill(self, index: int) -> None:
        self.nodes[index].kill()  # SIGKILL by PID, reaped

    def leader(self) -> int:
        """Index of the node that leads the telemetry queue or stream."""
        raise NotImplementedError

    def depth(self) -> dict[str, Any]:
        """What the telemetry queue or stream still holds, asked of a running node."""
        raise NotImplementedError

    def consumer_target(self, avoid: int) -> dict[str, Any]:
        raise NotImplementedError


class RabbitBench(Cluster):
    """simulators/rabbitmq.py's cluster in its plain mode (anonymous MQTT, guest over AMQP: a lab bench), with
    the telemetry quorum queue declared through node 3, so that its leader starts there."""

    engine = "rabbitmq"
    leads = "quorum queue"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.cluster = RabbitCluster(workdir)
        self.nodes: list[RabbitNode] = self.cluster.nodes

    def start(self) -> None:
        t0 = time.monotonic()
        self.cluster.start()
        self.timings.update({k: v for k, v in self.cluster.timings.items() if k != "total_s"})
        t2 = time.monotonic()
        asyncio.run(self._declare())
        self.timings["queue_declared_s"] = time.monotonic() - t2
        self.timings["total_s"] = time.monotonic() - t0

    async def _declare(self) -> None:
        import aio_pika  # noqa: PLC0415 - only this engine needs it

        # declared through node 3: a quorum queue's first leader is the declaring node
        connection = await aio_pika.connect(f"amqp://guest:guest@{HOST}:{self.nodes[2].amqp_port}/")
        async with connection:
            channel = await connection.channel()
            q = await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
            await q.bind("amq.topic", routing_key=BINDING)

    def leader(self) -> int:
        members = self.cluster.queue_info(QUEUE)["members"]
        if len(members) != 3:
            self.notes.append(f"queue members: {members}")
        return self.cluster.leader(QUEUE)

    def depth(self) -> dict[str, Any]:
        return self.cluster.queue_info(QUEUE)

    def consumer_target(self, avoid: int) -> dict[str, Any]:
        node = next(n for i, n in enumerate(self.nodes) if i != avoid)
        return {"engine": self.engine, "amqp_port": node.amqp_port, "node": node.index}

    def stop(self) -> None:
        self.cluster.stop()


# ------------------------------------------------------------------------------------------ NATS

class NatsNode(Service):
    """One nats-server with cluster routes, JetStream and an MQTT listener; `port` is the MQTT port."""

    name = "nats-server"
    package = "nats-server"
    search_dirs = ("/usr/sbin", "/usr/bin")

    def __init__(self, workdir: Path, index: int) -> None:
        super().__init__(workdir, start_timeout=60)
        self.index = index
        self.client_port = free_port()
        self.cluster_port = free_port()
        self.http_port = free_port()
        self.routes: list[int] = []

    def _prepare(self, executable: str) -> list[str]:
        routes = ", ".join(f"nats-route://{HOST}:{p}" for p in self.routes)
        conf = self.workdir / "nats.conf"
        conf.write_text(
            f"server_name: n{self.index + 1}\n"
            f"listen: {HOST}:{self.client_port}\n"
            f"http: {HOST}:{self.http_port}\n"
            f'jetstream {{\n  store_dir: "{self.workdir / "js"}"\n  max_memory_store: 1GB\n'
            "  max_file_store: 20GB\n}\n"
            f"cluster {{\n  name: qala\n  listen: {HOST}:{self.cluster_port}\n  routes: [{routes}]\n}}\n"
            f"mqtt {{\n  listen: {HOST}:{self.port}\n  stream_replicas: 3\n}}\n"
        )
        return [executable, "-c", str(conf)]

    def _ready(self) -> bool:
        # /healthz answers 200 once JetStream is up and the meta group current (the three must all be up)
        return _http_status(f"http://{HOST}:{self.http_port}/healthz") == 200 and port_open(self.port)


class NatsCluster(Cluster):
    """`nats`: MQTT into a stream QALA over `qala.>`. `nats-msgs`: no stream of ours; the hub's durable consumer
    reads nats-server's own `$MQTT_msgs` (interest retention: a message stays until our consumer acks it), the
    stream a QoS 1 PUBLISH is stored in before its PUBACK."""

    engine = "nats"

    def __init__(self, workdir: Path, *, msgs: bool = False) -> None:
        super().__init__(workdir)
        self.msgs = msgs
        self.stream = MQTT_MSGS if msgs else STREAM
        self.leads = f"{self.stream} stream"
        if msgs:
            self.engine = "nats-msgs"
        self.nodes: list[NatsNode] = [NatsNode(workdir / f"n{i + 1}", i) for i in range(3)]
        for node in self.nodes:
            node.routes = [n.cluster_port for n in self.nodes if n is not node]

    def urls(self, indexes: list[int] | None = None) -> list[str]:
        return [f"nats://{HOST}:{n.client_port}" for n in self.nodes
                if indexes is None or n.index in indexes]

    def start(self) -> None:
        t0 = time.monotonic()
        run_parallel([n.start for n in self.nodes])
        self.timings["nodes_booted_s"] = time.monotonic() - t0
        t1 = time.monotonic()
        asyncio.run(self._declare())
        self.timings["stream_declared_s"] = time.monotonic() - t1
        self.timings["total_s"] = time.monotonic() - t0

    async def _declare(self) -> None:
        import nats  # noqa: PLC0415 - only this engine needs it
        from nats.js import api  # noqa: PLC0415

        nc = await nats.connect(servers=self.urls())
        try:
            js = nc.jetstream()
            deadline = time.monotonic() + 30
            while True:  # the meta leader may still be being elected
                try:
                    if self.msgs:  # the server creates its MQTT streams at the account's first MQTT connection
                        with socket.create_connection((HOST, self.nodes[0].port), timeout=10) as sock:
                            sock.sendall(connect_packet("bench-setup"))
                            sock.recv(4)
                        await js.stream_info(MQTT_MSGS)
                    else:
                        await js.add_stream(api.StreamConfig(
                            name=STREAM, subjects=["qala.>"], num_replicas=3, storage=api.StorageType.FILE,
                            retention=api.RetentionPolicy.WORK_QUEUE))
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            await js.add_consumer(self.stream, api.ConsumerConfig(
                durable_name=DURABLE, ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=100_000, ack_wait=30,
                filter_subject=f"{MQTT_MSGS_PREFIX}qala.*.*.telemetry" if self.msgs else None))
        finally:
            await nc.close()

    def _info(self) -> tuple[str | None, str | None]:
        async def info() -> tuple[str | None, str | None]:
            import nats  # noqa: PLC0415

            nc = await nats.connect(servers=self.urls([n.index for n in self.nodes if n.running]))
            try:
                js = nc.jetstream()
                s = await js.stream_info(self.stream)
                c = await js.consumer_info(self.stream, DURABLE)
                return (s.cluster.leader if s.cluster else None, c.cluster.leader if c.cluster else None)
            finally:
                await nc.close()

        return asyncio.run(info())

    def depth(self) -> dict[str, Any]:
        async def info() -> dict[str, Any]:
            import nats  # noqa: PLC0415

            nc = await nats.connect(servers=self.urls([n.index for n in self.nodes if n.running]))
            try:
                js = nc.jetstream()
                s = await js.stream_info(self.stream)
                c = await js.consumer_info(self.stream, DURABLE)
                return {"stream_messages": s.state.messages, "consumer_pending": c.num_pending,
                        "consumer_ack_pending": c.num_ack_pending, "redelivered": c.num_redelivered,
                        "stream_leader": s.cluster.leader if s.cluster else None,
                        "consumer_leader": c.cluster.leader if c.cluster else None}
            finally:
                await nc.close()

        return asyncio.run(info())

    def leader(self) -> int:
        stream_leader, consumer_leader = self._info()
        self.notes.append(f"stream leader {stream_leader}, consumer leader {consumer_leader}")
        return next(i for i, n in enumerate(self.nodes) if f"n{n.index + 1}" == stream_leader)

    def consumer_target(self, avoid: int) -> dict[str, Any]:
        others = [n.index for n in self.nodes if n.index != avoid]
        return {"engine": self.engine, "urls": self.urls(others[:1]), "node": others[0], "stream": self.stream}


# ------------------------------------------------------------------------------------------ MQTT bytes

def _str(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def connect_packet(client_id: str) -> bytes:
    variable = b"\x00\x04MQTT\x04\x02\x00\x3c" + _str(client_id.encode())  # clean session, keepalive 60 s
    return b"\x10" + encode_length(len(variable)) + variable


def device_name(board: int) -> str:
    return f"b{board:04d}"


def body_tail(board: int) -> bytes:
    """The part of a board's payload after seq and ts; the whole payload is about 150 bytes."""
    k = board
    return (b',"boot":1,"s":"env1","r":{"pm1":%d.%d,"pm25":%d.%d,"pm10":%d.%d,"co2":%d,"temperature":%d.%d,'
            b'"humidity":%d.%d}}' % (k % 50, k % 10, k % 70, k % 7, k % 90, k % 3, 400 + k % 600, 10 + k % 20,
                                      k % 10, 30 + k % 50, k % 9))


# ------------------------------------------------------------------------------------------ publisher

@dataclass
class PubSpec:
    index: int
    ports: list[int]  # MQTT ports of the three nodes
    first: int  # node to connect to first; on a lost connection, the next in the list
    devices: int
    window: int
    base: float  # time.monotonic() that timelines count from (CLOCK_MONOTONIC: the same in every process)
    grace: float  # seconds to wait for outstanding PUBACKs after stop


class RawPublisher:
    """One MQTT connection publishing QoS 1 for `devices` boards; failover to the next node; records acks."""

    CHUNK = 100

    def __init__(self, spec: PubSpec) -> None:
        self.spec = spec
        first = spec.index * spec.devices
        self.topics = [_str(f"qala/{SITE}/{device_name(first + k)}/telemetry".encode()) for k in range(spec.devices)]
        self.tails = [body_tail(first + k) for k in range(spec.devices)]
        self.ts0 = int(time.time() * 1000)
        self.outstanding: dict[int, int] = {}  # packet id -> message index
        self.acked = bytearray()  # per message index: 1 once PUBACKed
        self.buckets: dict[int, int] = {}  # timeline of PUBACKs
        self.cond = threading.Condition()
        self.next_mid = 0
        self.broken = False
        self.node = spec.first
        self.sock: socket.socket | None = None
        self.reader: threading.Thread | None = None
        self.current: dict[str, Any] = {}  # the connection now: node, when connected, its first PUBACK
        self.failovers: list[dict[str, Any]] = []
        self.refused: list[str] = []

    def packet(self, i: int, mid: int) -> bytes:
        k = i % self.spec.devices
        seq = i // self.spec.devices
        body = b'{"v":1,"seq":%d,"ts":%d%s' % (seq, self.ts0 + seq * 1000, self.tails[k])
        variable = self.topics[k] + mid.to_bytes(2, "big")
        return b"\x32" + encode_length(len(variable) + len(body)) + variable + body

    def mid(self) -> int:
        while True:
            self.next_mid = self.next_mid % 65535 + 1
            if self.next_mid not in self.outstanding:
                return self.next_mid

    def connect(self, deadline: float) -> bool:
        """Connect to self.node, or the next ones in turn, until one accepts or the deadline passes."""
        while time.monotonic() < deadline:
            port = self.spec.ports[self.node]
            try:
                sock = socket.create_connection((HOST, port), timeout=2)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(connect_packet(f"bench-pub-{self.spec.index}"))
                connack = b""
                while len(connack) < 4:
                    data = sock.recv(4 - len(connack))
                    if not data:
                        raise ConnectionError("closed before CONNACK")
                    connack += data
                if connack[3] != 0:
                    sock.close()
                    raise ConnectionError(f"CONNACK return code {connack[3]}")
                sock.settimeout(None)
            except OSError as exc:
                self.refused.append(f"{time.monotonic() - self.spec.base:.2f}s node {self.node}: {exc}")
                self.node = (self.node + 1) % len(self.spec.ports)
                time.sleep(0.1)
                continue
            self.sock = sock
            self.broken = False
            record: dict[str, Any] = {"node": self.node}
            self.reader = threading.Thread(target=self._read, args=(sock, record), daemon=True)
            self.reader.start()
            self.current = record
            return True
        return False

    def _read(self, sock: socket.socket, record: dict[str, Any]) -> None:
        pending = b""
        base, spec_bucket = self.spec.base, BUCKET
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                pending += data
                n = len(pending) // 4  # PUBACK: 0x40 0x02 mid mid; nothing else comes to a publisher
                now = time.monotonic()
                if "first_ack" not in record:
                    record["first_ack"] = now - base
                with self.cond:
                    out, acked = self.outstanding, self.acked
                    for j in range(n):
                        i = out.pop(int.from_bytes(pending[4 * j + 2:4 * j + 4], "big"), None)
                        if i is not None:
                            acked[i] = 1
                    b = int((now - base) / spec_bucket)
                    self.buckets[b] = self.buckets.get(b, 0) + n
                    self.cond.notify_all()
                pending = pending[4 * n:]
                if len(data) < 4096:
                    time.sleep(0.005)  # let PUBACKs gather: one wake-up per many, the generator stays cheap
        except OSError:
            pass
        with self.cond:
            self.broken = True
            self.cond.notify_all()

    def failover(self, deadline: float) -> bool:
        t_fail = time.monotonic() - self.spec.base
        assert self.sock is not None
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader if it still waits in recv()
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.reader is not None:
            self.reader.join()
        self.node = (self.node + 1) % len(self.spec.ports)
        if not self.connect(deadline):
            return False
        with self.cond:
            again = sorted(self.outstanding.values())
            self.outstanding.clear()
            parts = []
            for i in again:
                mid = self.mid()
                self.outstanding[mid] = i
                parts.append(self.packet(i, mid))
        self.current.update(lost_at=t_fail, connected=time.monotonic() - self.spec.base, resent=len(again))
        self.failovers.append(self.current)
        self._send(b"".join(parts))
        return True

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except OSError:
            with self.cond:
                self.broken = True

    def _next_chunk(self, i: int, stop: Event) -> bytes | None:
        """The next CHUNK packets from message index i, once the window has room; None if the link broke."""
        with self.cond:
            while len(self.outstanding) > self.spec.window - self.CHUNK and not self.broken and not stop.is_set():
                self.cond.wait(0.05)
            if self.broken:
                return None
            parts = []
            self.acked.extend(bytes(self.CHUNK))
            for j in range(i, i + self.CHUNK):
                mid = self.mid()
                self.outstanding[mid] = j
                parts.append(self.packet(j, mid))
            return b"".join(parts)

    def run(self, go: Event, stop: Event) -> dict[str, Any]:
        """Publish from `go` until `stop`, then wait up to spec.grace for the outstanding PUBACKs."""
        go.wait()
        i = 0
        while not stop.is_set():
            data = self._next_chunk(i, stop)
            if data is None:
                if not self.failover(time.monotonic() + 60):
                    break
            else:
                i += self.CHUNK
                self._send(data)
        deadline = time.monotonic() + self.spec.grace
        while time.monotonic() < deadline:
            with self.cond:
                if not self.outstanding:
                    break
                self.cond.wait(0.05)
                broken = self.broken
            if broken and not self.failover(deadline):
                break
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.sendall(b"\xe0\x00")
                self.sock.close()
        return {"index": self.spec.index, "first": self.spec.first, "sent": i, "acked": bytes(self.acked),
                "buckets": self.buckets, "failovers": self.failovers, "refused": self.refused,
                "unacked": len(self.outstanding)}


def publisher_main(index: int, specs: list[PubSpec], go: Event, stop: Event,
                   results: multiprocessing.Queue[Any]) -> None:
    """One load-generator process: a thread per connection (each with its PUBACK reader thread)."""
    pubs = [RawPublisher(spec) for spec in specs]
    for pub in pubs:
        if not pub.connect(time.monotonic() + 30):
            results.put(("error", index, f"connection {pub.spec.index}: no node accepted: {pub.refused}"))
            return
    results.put(("ready", index, None))
    outs: list[dict[str, Any]] = []
    errors: list[str] = []

    def one(pub: RawPublisher) -> None:
        try:
            outs.append(pub.run(go, stop))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the run
            errors.append(repr(exc))

    go.wait()
    cpu0 = time.process_time()
    threads = [threading.Thread(target=one, args=(pub,)) for pub in pubs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        results.put(("error", index, errors[0]))
        return
    results.put(("result", index, {"conns": outs, "cpu": time.process_time() - cpu0}))


# ------------------------------------------------------------------------------------------ consumer

@dataclass
class ConsumerSpec:
    target: dict[str, Any]
    devices: int  # boards per publisher, to map board -> publisher
    prefetch: int
    batch: int
    base: float
    expect: int | None  # stop once this many telemetry messages arrived
    idle: float  # after stop: end when nothing arrived for this long


class Seen:
    """Per publisher, per message index: how many times it arrived; and a timeline of deliveries."""

    def __init__(self, devices: int, base: float) -> None:
        self.devices = devices
        self.base = base
        self.seen: dict[int, bytearray] = {}
        self.count = 0
        self.other = 0
        self.buckets: dict[int, int] = {}
        self.last = time.monotonic()

    def record(self, key: str, body: bytes) -> None:
        parts = key.removeprefix(MQTT_MSGS_PREFIX).split(".")
        if len(parts) != 4 or parts[3] != "telemetry":
            self.other += 1
            return
        board = int(parts[2][1:])
        j = body.index(b'"seq":') + 6
        seq = int(body[j:body.index(b",", j)])
        pub, k = divmod(board, self.devices)
        i = seq * self.devices + k
        arr = self.seen.get(pub)
        if arr is None:
            arr = self.seen[pub] = bytearray()
        if i >= len(arr):
            arr.extend(bytes(i + 65536 - len(arr)))
        if arr[i] < 255:
            arr[i] += 1
        self.count += 1
        self.last = now = time.monotonic()
        b = int((now - self.base) / BUCKET)
        self.buckets[b] = self.buckets.get(b, 0) + 1


async def consume_rabbit(spec: ConsumerSpec, seen: Seen, go: Event, stop: Event,
                         results: multiprocessing.Queue[Any]) -> None:
    import aio_pika  # noqa: PLC0415

    connection = await aio_pika.connect(f"amqp://guest:guest@{HOST}:{spec.target['amqp_port']}/")
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=spec.prefetch)
    q = await channel.get_queue(QUEUE, ensure=False)
    unacked: list[AbstractIncomingMessage] = []

    async def on_message(message: AbstractIncomingMessage) -> None:
        seen.record(message.routing_key or "", message.body)
        unacked.append(message)
        if len(unacked) >= spec.batch:
            last = unacked[-1]
            unacked.clear()
            await last.ack(multiple=True)

    results.put(("ready", -1, None))
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    cpu0 = time.process_time()
    seen.last = time.monotonic()
    tag = await q.consume(on_message)
    await _until_done(spec, seen, stop, results, cpu0, lambda: _flush_rabbit(unacked))
    with contextlib.suppress(Exception):
        await q.cancel(tag)
    with contextlib.suppress(Exception):
        await connection.close()


async def _flush_rabbit(unacked: list[Any]) -> None:
    if unacked:
        last = unacked[-1]
        unacked.clear()
        await last.ack(multiple=True)


async def _until_done(spec: ConsumerSpec, seen: Seen, stop: Event, results: multiprocessing.Queue[Any], cpu0: float,
                      flush: Callable[[], Any]) -> None:
    while True:
        await asyncio.sleep(0.05)
        if time.monotonic() - seen.last > 0.05:
            await flush()  # a partial batch: ack it once deliveries pause
        if (spec.expect is not None and seen.count >= spec.expect) or (
                stop.is_set() and time.monotonic() - seen.last > spec.idle):
            results.put(("done", -1, {"t": seen.last - spec.base, "cpu": time.process_time() - cpu0}))
            return


async def consume_nats(spec: ConsumerSpec, seen: Seen, go: Event, stop: Event,
                       results: multiprocessing.Queue[Any]) -> None:
    import nats  # noqa: PLC0415
    from nats.errors import TimeoutError as NatsTimeout  # noqa: PLC0415

    nc = await nats.connect(servers=spec.target["urls"], max_reconnect_attempts=-1)
    js = nc.jetstream()
    psub = await js.pull_subscribe_bind(consumer=DURABLE, stream=spec.target["stream"])
    results.put(("ready", -1, None))
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    cpu0 = time.process_time()
    seen.last = time.monotonic()
    finished = asyncio.Event()

    async def pull() -> None:
        while not finished.is_set():
            try:
                msgs = await psub.fetch(spec.batch, timeout=0.5)
            except (NatsTimeout, TimeoutError):
                continue
            except Exception:  # noqa: BLE001 - a leader change answers fetches with errors for a while
                await asyncio.sleep(0.1)
                continue
            for m in msgs:
                seen.record(m.subject, m.data)
                await m.ack()  # explicit ack of each message: a publish, flushed with the batch

    async def nothing() -> None:
        return None

    task = asyncio.create_task(pull())
    await _until_done(spec, seen, stop, results, cpu0, nothing)
    finished.set()
    await task
    with contextlib.suppress(Exception):
        await nc.flush(timeout=2)
    with contextlib.suppress(Exception):
        await nc.close()


def consumer_main(spec: ConsumerSpec, go: Event, stop: Event, results: multiprocessing.Queue[Any]) -> None:
    seen = Seen(spec.devices, spec.base)
    run = consume_rabbit if spec.target["engine"] == "rabbitmq" else consume_nats
    try:
        asyncio.run(run(spec, seen, go, stop, results))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the run
        results.put(("error", -1, repr(exc)))
        return
    results.put(("result", -1, {"count": seen.count, "other": seen.other, "buckets": seen.buckets,
                                "seen": {p: bytes(a) for p, a in seen.seen.items()}}))


# ------------------------------------------------------------------------------------------ phases

@dataclass
class Options:
    publishers: int = 4  # load-generator processes
    connections: int = 6  # MQTT connections per process, spread over the three nodes
    devices: int = 25  # boards per connection
    window: int = 500  # unacknowledged QoS 1 messages per connection
    prefetch: int = 2000
    batch: int = 500
    publish_s: float = 10.0
    mixed_s: float = 25.0
    kill_at: float = 10.0
    grace: float = 20.0  # after stop: how long publishers wait for outstanding PUBACKs
    drain_idle: float = 10.0  # after the mixed run: the consumer ends when nothing arrived for this long


@dataclass
class Phase:
    pubs: dict[int, dict[str, Any]] = field(default_factory=dict)
    consumer: dict[str, Any] | None = None
    done: dict[str, Any] | None = None
    t_go: float = 0.0
    t_stop: float = 0.0
    t_kill: float | None = None
    cpu_go: float = 0.0
    cpu_stop: float = 0.0
    cpu_kill: float = 0.0
    gen_cpu: float = 0.0  # the load generator's processes, from go until their last PUBACK


@contextlib.contextmanager
def workers(procs: list[multiprocessing.process.BaseProcess]) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join()


def _wait_messages(results: multiprocessing.Queue[Any], want: set[tuple[str, int]], timeout: float,
                   into: dict[tuple[str, int], Any]) -> None:
    deadline = time.monotonic() + timeout
    while want - into.keys():
        try:
            kind, index, payload = results.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty as exc:
            if time.monotonic() > deadline:
                raise ServiceError(f"workers did not report {sorted(want - into.keys())}") from exc
            continue
        if kind == "error":
            raise ServiceError(f"worker {index} failed: {payload}")
        into[kind, index] = payload


def _workers(cluster: Cluster, opts: Options, base: float, go: Event, stop: Event,
             results: multiprocessing.Queue[Any], *, publish: bool, consume: dict[str, Any] | None,
             expect: int | None) -> tuple[list[multiprocessing.process.BaseProcess], set[tuple[str, int]]]:
    """The load-generator processes and the consumer process (not started yet), and the "ready"s to wait for."""
    procs: list[multiprocessing.process.BaseProcess] = []
    want: set[tuple[str, int]] = set()
    if publish:
        for p in range(opts.publishers):
            specs = [PubSpec(c, cluster.mqtt_ports, c % 3, opts.devices, opts.window, base, opts.grace)
                     for c in range(p * opts.connections, (p + 1) * opts.connections)]
            procs.append(CTX.Process(target=publisher_main, args=(p, specs, go, stop, results), daemon=True))
            want.add(("ready", p))
    if consume is not None:
        cspec = ConsumerSpec(consume, opts.devices, opts.prefetch, opts.batch, base, expect, idle=opts.drain_idle)
        procs.append(CTX.Process(target=consumer_main, args=(cspec, go, stop, results), daemon=True))
        want.add(("ready", -1))
    return procs, want


def run_phase(cluster: Cluster, opts: Options, *, publish: bool, consume: dict[str, Any] | None,
              seconds: float, expect: int | None = None, kill: int | None = None) -> Phase:
    """Start the workers, let them connect, go; stop publishers after `seconds` (or wait for the consumer's
    `expect`); SIGKILL node `kill` at opts.kill_at."""
    base = time.monotonic()
    go, stop = CTX.Event(), CTX.Event()
    results: multiprocessing.Queue[Any] = CTX.Queue()
    procs, want = _workers(cluster, opts, base, go, stop, results, publish=publish, consume=consume, expect=expect)
    phase = Phase()
    got: dict[tuple[str, int], Any] = {}
    with workers(procs):
        for proc in procs:
            proc.start()
        _wait_messages(results, want, 60, got)
        phase.cpu_go = cluster.cpu()
        phase.t_go = time.monotonic() - base
        go.set()
        if publish:
            end = base + phase.t_go + seconds
            if kill is not None:
                time.sleep(max(0.0, base + phase.t_go + opts.kill_at - time.monotonic()))
                phase.cpu_kill = cluster.cpu()
                phase.t_kill = time.monotonic() - base
                cluster.kill(kill)
            time.sleep(max(0.0, end - time.monotonic()))
            phase.cpu_stop = cluster.cpu()
            phase.t_stop = time.monotonic() - base
            stop.set()
            _wait_messages(results, {("result", p) for p in range(opts.publishers)}, opts.grace + 90, got)
        else:
            stop.set()
        if consume is not None:
            _wait_messages(results, {("done", -1)}, 600, got)
            if not publish:
                phase.cpu_stop = cluster.cpu()
            stop.set()
            _wait_messages(results, {("result", -1)}, 120, got)
            phase.consumer = got["result", -1]
            phase.done = got["done", -1]
    for (kind, i), value in got.items():
        if kind == "result" and i >= 0:
            phase.gen_cpu += value["cpu"]
            phase.pubs.update((conn["index"], conn) for conn in value["conns"])
    return phase


# ------------------------------------------------------------------------------------------ analysis

def _count(buckets: dict[int, int], t0: float, t1: float) -> int:
    return sum(n for b, n in buckets.items() if t0 <= b * BUCKET < t1)


def _pause_after(buckets: dict[int, int], t_kill: float) -> float:
    """The longest time without an event from t_kill to the last event (inf: none after t_kill)."""
    times = sorted(b * BUCKET for b, n in buckets.items() if n and b * BUCKET >= t_kill)
    if not times:
        return float("inf")
    edges = [t_kill, *times]
    return max(b - a for a, b in itertools.pairwise(edges))


def _merge(items: list[dict[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for buckets in items:
        for b, n in buckets.items():
            out[b] = out.get(b, 0) + n
    return out


def losses(phase: Phase, seen: dict[int, bytes]) -> dict[str, Any]:
    """Acked but never delivered, per board and seq; delivered more than once."""
    lost: list[tuple[int, int]] = []
    duplicates = 0
    for p, pub in phase.pubs.items():
        acked = pub["acked"]
        arr = seen.get(p, b"")
        for i, a in enumerate(acked):
            got = arr[i] if i < len(arr) else 0
            if a and not got:
                lost.append((p, i))
            if got > 1:
                duplicates += got - 1
    return {"lost": len(lost), "lost_examples": lost[:10], "duplicates": duplicates}


def board_of(p: int, i: int, devices: int) -> tuple[str, int]:
    return device_name(p * devices + i % devices), i // devices


def analyse_publish(phase: Phase) -> dict[str, Any]:
    acks = _merge([p["buckets"] for p in phase.pubs.values()])
    duration = phase.t_stop - phase.t_go
    n = _count(acks, phase.t_go, phase.t_stop)
    total = sum(sum(p["acked"]) for p in phase.pubs.values())
    cpu = phase.cpu_stop - phase.cpu_go
    gen_cpu = phase.gen_cpu
    return {"seconds": round(duration, 2), "acked": total, "msg_s": n / duration,
            "server_cpu_us_msg": cpu / n * 1e6, "server_cores": cpu / duration,
            "loadgen_cpu_us_msg": gen_cpu / total * 1e6,
            "unacked_at_end": sum(p["unacked"] for p in phase.pubs.values())}


def analyse_deliver(phase: Phase, expect: int) -> dict[str, Any]:
    assert phase.consumer is not None
    assert phase.done is not None
    buckets = phase.consumer["buckets"]
    t_end = phase.done["t"]
    duration = t_end - phase.t_go
    n = phase.consumer["count"]
    cpu = phase.cpu_stop - phase.cpu_go
    return {"seconds": round(duration, 2), "delivered": n, "expected": expect, "msg_s": n / duration,
            "server_cpu_us_msg": cpu / max(n, 1) * 1e6, "server_cores": cpu / duration,
            "consumer_cpu_us_msg": phase.done["cpu"] / max(n, 1) * 1e6,
            "timeline_msgs": sum(buckets.values())}


def analyse_kill(phase: Phase, killed: int, cluster: Cluster, devices: int) -> dict[str, Any]:
    assert phase.consumer is not None
    assert phase.t_kill is not None
    t_kill, t_go, t_stop = phase.t_kill, phase.t_go, phase.t_stop
    acks = _merge([p["buckets"] for p in phase.pubs.values()])
    before = t_kill - t_go - 1.0
    survivors = [p for p in phase.pubs.values() if p["first"] != killed]
    moved = [p for p in phase.pubs.values() if p["first"] == killed]
    cbuckets = phase.consumer["buckets"]
    result = losses(phase, phase.consumer["seen"])
    lost_boards = [board_of(p, i, devices) for p, i in result.pop("lost_examples")]
    return {
        "killed_node": killed,
        "killed_was": f"{cluster.leads} leader",
        "publish_msg_s_before_kill": _count(acks, t_go + 1.0, t_kill) / before,
        "deliver_msg_s_before_kill": _count(cbuckets, t_go + 1.0, t_kill) / before,
        "server_cpu_us_msg_before_kill": (phase.cpu_kill - phase.cpu_go) / max(1, _count(acks, t_go, t_kill)) * 1e6,
        "publish_msg_s_after_kill": _count(acks, t_kill, t_stop) / (t_stop - t_kill),
        "surviving_connections": len(survivors),
        "surviving_longest_pause_s": max(_pause_after(p["buckets"], t_kill) for p in survivors),
        "surviving_reconnects": sum(len(p["failovers"]) for p in survivors),
        "moved_connections": len(moved),
        "moved_longest_pause_s": max(_pause_after(p["buckets"], t_kill) for p in moved),
        "moved_reconnects": sum(len(p["failovers"]) for p in moved),
        "resent_after_reconnect": sum(f.get("resent", 0) for p in phase.pubs.values() for f in p["failovers"]),
        "refused_connects": [r for p in phase.pubs.values() for r in p["refused"]][:6],
        "consumer_longest_pause_s": _pause_after(cbuckets, t_kill),
        "acked": sum(sum(p["acked"]) for p in phase.pubs.values()),
        "unacked_at_end": sum(p["unacked"] for p in phase.pubs.values()),
        "delivered": phase.consumer["count"],
        "lost_examples": lost_boards,
        **result,
    }


# ------------------------------------------------------------------------------------------ probes

class ProbeClient:
    """A paho-mqtt client on one node that keeps what it receives."""

    def __init__(self, port: int, client_id: str, *, clean: bool = True) -> None:
        import paho.mqtt.client as mqtt  # noqa: PLC0415
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

        self.messages: list[tuple[str, bytes]] = []
        self.session_present: bool | None = None
        self.disconnected = threading.Event()
        connected = threading.Event()

        def on_connect(_c: object, _u: object, flags: Any, _reason: object, _p: object) -> None:
            self.session_present = bool(flags.session_present)
            connected.set()

        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.c.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.c.on_connect = on_connect
        self.c.on_disconnect = lambda *_a: self.disconnected.set()
        self.c.connect(HOST, port, keepalive=30)
        self.c.loop_start()
        if not connected.wait(10):
            self.close()
            raise ServiceError(f"probe client {client_id} did not connect to port {port}")

    def got(self, topic: str) -> list[bytes]:
        return [payload for t, payload in self.messages if t == topic]

    def sub(self, topic: str, qos: int = 1) -> None:
        self.c.subscribe(topic, qos)

    def pub(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        self.c.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _heard(client: ProbeClient, topic: str) -> str:
    return "received" if client.got(topic) else "nothing"


def probe_retained(ports: list[int], out: dict[str, str]) -> None:
    """The hub's `conf` (boards read it with an exact filter) and hubs' `_hub/+` liveness (a wildcard filter)."""
    pub = ProbeClient(ports[0], "probe-pub")
    topic = "qala/probe/d1/conf"
    pub.pub(topic, b'{"v":1,"boot":1,"seq":7}', retain=True)
    time.sleep(0.5)
    cases = {"retained: exact filter, same node": (0, topic),
             "retained: exact filter, other node": (1, topic),
             "retained: wildcard filter, same node": (0, "qala/probe/+/conf"),
             "retained: wildcard filter, other node": (2, "qala/probe/+/conf")}
    for k, (name, (node, sub)) in enumerate(cases.items()):
        c = ProbeClient(ports[node], f"probe-r{k}")
        c.sub(sub)
        time.sleep(1.5)
        out[name] = _heard(c, topic)
        c.close()
    pub.pub(topic, b"", retain=True)  # clear it
    pub.close()


def probe_will(ports: list[int], out: dict[str, str]) -> None:
    """A board's last will (retained, QoS 1) published by node 1 when its socket drops, seen on nodes 2 and 3."""
    topic = "qala/probe/d2/status"
    watcher = ProbeClient(ports[1], "probe-watch")
    watcher.sub(topic)
    time.sleep(0.5)
    will = b'{"v":1,"state":"offline"}'
    flags = 0x02 | 0x04 | 0x08 | 0x20  # clean session, will, will QoS 1, will retain
    variable = (b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x3c" + _str(b"probe-board") + _str(topic.encode())
                + _str(will))
    with socket.create_connection((HOST, ports[0])) as raw:
        raw.sendall(b"\x10" + encode_length(len(variable)) + variable)
        raw.recv(4)
        time.sleep(0.3)
    # closed without DISCONNECT: the will must go out
    time.sleep(2.0)
    out["last will: to a subscriber on another node"] = _heard(watcher, topic)
    watcher.close()
    late = ProbeClient(ports[2], "probe-late")
    late.sub(topic)
    time.sleep(1.5)
    out["last will: retained, read later on a third node"] = _heard(late, topic)
    late.close()


def probe_session(ports: list[int], out: dict[str, str]) -> None:
    """A board's persistent session (clean session false) resumed on another node: queued commands arrive?"""
    topic = "qala/probe/d3/cmd"
    board = ProbeClient(ports[0], "probe-session", clean=False)
    board.sub(topic)
    time.sleep(0.5)
    board.close()
    time.sleep(0.5)
    hub = ProbeClient(ports[1], "probe-hub")
    for k in range(3):
        hub.pub(topic, b"cmd%d" % k)
    hub.close()
    time.sleep(0.5)
    again = ProbeClient(ports[2], "probe-session", clean=False)
    time.sleep(2.0)
    out["persistent session: resumed on another node"] = (
        f"session_present={again.session_present}, {len(again.got(topic))} of 3 queued commands delivered")
    again.close()


def probe_client_id(ports: list[int], out: dict[str, str]) -> None:
    """One client id on two nodes: a board that reconnects elsewhere while its old connection is half-open."""
    first = ProbeClient(ports[0], "probe-dup")
    try:
        second = ProbeClient(ports[1], "probe-dup")
    except ServiceError as exc:
        out["same client id on another node"] = f"second refused: {exc}"
    else:
        time.sleep(1.5)
        out["same client id on another node"] = (
            "the first connection was closed" if first.disconnected.is_set() else "both stay connected")
        second.close()
    first.close()


def probe_features(cluster: Cluster) -> dict[str, str]:
    """Cheap checks of the MQTT side across nodes, with paho-mqtt; each answer as seen, not as documented."""
    out: dict[str, str] = {}
    for probe in (probe_retained, probe_will, probe_session, probe_client_id):
        try:
            probe(cluster.mqtt_ports, out)
        except (OSError, ServiceError) as exc:
            out[probe.__name__] = f"failed: {exc!r}"
    return out


# ------------------------------------------------------------------------------------------ main

def run_engine(engine: str, opts: Options, *, probes: bool, keep: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {"engine": engine}
    with contextlib.ExitStack() as stack:
        if keep is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"qala-engines-{engine}-"))
        else:
            keep.mkdir(parents=True, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=f"{engine}-", dir=keep)
        cluster: Cluster = (RabbitBench(Path(tmp)) if engine == "rabbitmq"
                            else NatsCluster(Path(tmp), msgs=engine == "nats-msgs"))
        try:
            print(f"{engine}: starting three nodes", flush=True)
            cluster.start()
            out["startup"] = cluster.timings
            print(f"{engine}: up in {cluster.timings['total_s']:.1f} s {cluster.timings}", flush=True)
            if probes:
                out["probes"] = probe_features(cluster)
                print(f"{engine}: probes {json.dumps(out['probes'], indent=1)}", flush=True)
            leader = cluster.leader()
            target = cluster.consumer_target(avoid=leader)
            out["leader"] = leader
            out["consumer_node"] = target["node"]
            print(f"{engine}: publish only, {opts.publish_s:g} s", flush=True)
            a = run_phase(cluster, opts, publish=True, consume=None, seconds=opts.publish_s)
            out["publish"] = analyse_publish(a)
            print(f"{engine}: {out['publish']}", flush=True)
            expect = out["publish"]["acked"]
            print(f"{engine}: deliver the backlog of {expect}", flush=True)
            b = run_phase(cluster, opts, publish=False, consume=target, seconds=0, expect=expect)
            out["deliver"] = analyse_deliver(b, expect)
            assert b.consumer is not None
            out["deliver"].update(losses(a, b.consumer["seen"]))
            out["deliver"].pop("lost_examples", None)
            print(f"{engine}: {out['deliver']}", flush=True)
            print(f"{engine}: mixed {opts.mixed_s:g} s, SIGKILL node {leader + 1} at {opts.kill_at:g} s", flush=True)
            out["rss_mb_before_kill"] = cluster.rss_mb()
            c = run_phase(cluster, opts, publish=True, consume=target, seconds=opts.mixed_s, kill=leader)
            out["kill"] = analyse_kill(c, leader, cluster, opts.devices)
            out["kill"]["left_in_queue"] = cluster.depth()
            out["kill"]["failovers"] = {i: p["failovers"][-3:] for i, p in c.pubs.items() if p["failovers"]}
            print(f"{engine}: {({k: v for k, v in out['kill'].items() if k != 'failovers'})}", flush=True)
            out["notes"] = cluster.notes
        finally:
            cluster.stop()
    return out


def print_table(results: list[dict[str, Any]], opts: Options) -> None:
    names = [r["engine"] for r in results]
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("3-node cluster up (s)", lambda r: f"{r['startup']['total_s']:.1f}"),
        ("publish: PUBACKed msg/s", lambda r: f"{r['publish']['msg_s']:,.0f}"),
        ("publish: server CPU us/msg", lambda r: f"{r['publish']['server_cpu_us_msg']:.0f}"),
        ("publish: server cores busy", lambda r: f"{r['publish']['server_cores']:.2f}"),
        ("publish: load generator CPU us/msg", lambda r: f"{r['publish']['loadgen_cpu_us_msg']:.1f}"),
        ("deliver: msg/s to one consumer", lambda r: f"{r['deliver']['msg_s']:,.0f}"),
        ("deliver: server CPU us/msg", lambda r: f"{r['deliver']['server_cpu_us_msg']:.0f}"),
        ("deliver: consumer CPU us/msg", lambda r: f"{r['deliver']['consumer_cpu_us_msg']:.0f}"),
        ("deliver: lost / duplicates (no kill)", lambda r: f"{r['deliver']['lost']} / {r['deliver']['duplicates']}"),
        ("mixed: publish msg/s before kill", lambda r: f"{r['kill']['publish_msg_s_before_kill']:,.0f}"),
        ("mixed: deliver msg/s before kill", lambda r: f"{r['kill']['deliver_msg_s_before_kill']:,.0f}"),
        ("mixed: server CPU us per published msg", lambda r: f"{r['kill']['server_cpu_us_msg_before_kill']:.0f}"),
        ("kill: node killed", lambda r: f"{r['kill']['killed_node'] + 1} ({r['kill']['killed_was']})"),
        ("kill: other nodes' pubs: longest pause s",
         lambda r: f"{r['kill']['surviving_longest_pause_s']:.1f} ({r['kill']['surviving_reconnects']} reconn.)"),
        ("kill: moved pubs: longest pause s",
         lambda r: f"{r['kill']['moved_longest_pause_s']:.1f} ({r['kill']['moved_reconnects']} reconn.)"),
        ("kill: consumer: longest pause s", lambda r: f"{r['kill']['consumer_longest_pause_s']:.1f}"),
        ("kill: publish msg/s after kill", lambda r: f"{r['kill']['publish_msg_s_after_kill']:,.0f}"),
        ("kill: PUBACKed / delivered", lambda r: f"{r['kill']['acked']:,} / {r['kill']['delivered']:,}"),
        ("kill: acked but LOST", lambda r: f"{r['kill']['lost']}"),
        ("kill: duplicates delivered", lambda r: f"{r['kill']['duplicates']}"),
        ("servers RSS before kill (MB)", lambda r: f"{r['rss_mb_before_kill']:.0f}"),
    ]
    print(f"\n{opts.publishers} x {opts.connections} publisher connections x {opts.devices} boards, "
          f"window {opts.window}, "
          f"prefetch {opts.prefetch}, ack batch {opts.batch}; publish {opts.publish_s:g} s, mixed {opts.mixed_s:g} s, "
          f"kill at {opts.kill_at:g} s; {os.cpu_count()} cores")
    print(f"  {'':<40}" + "".join(f"{n:>22}" for n in names))
    for label, fmt in rows:
        cells = []
        for r in results:
            try:
                cells.append(fmt(r))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("-")
        print(f"  {label:<40}" + "".join(f"{c:>22}" for c in cells))
    for r in results:
        if r.get("probes"):
            print(f"\n{r['engine']} MQTT probes:")
            for k, v in r["probes"].items():
                print(f"  {k:<50} {v}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="rabbitmq,nats,nats-msgs",
                        help="comma-separated: rabbitmq, nats, nats-msgs (default: all three)")
    defaults = Options()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--no-probes", action="store_true", help="skip the MQTT feature probes")
    parser.add_argument("--json", help="write the results (without per-message bitmaps) to this file")
    parser.add_argument("--keep", type=Path, help="put the servers' folders (config, data, logs) here and keep them")
    args = parser.parse_args()
    opts = Options(**{k: getattr(args, k) for k in asdict(defaults)})
    results = []
    for engine in args.engines.split(","):
        started = time.monotonic()
        r = run_engine(engine.strip(), opts, probes=not args.no_probes, keep=args.keep)
        r["wall_s"] = time.monotonic() - started
        results.append(r)
    print_table(results, opts)
    if args.json:
        Path(args.json).write_text(json.dumps({"options": asdict(opts), "results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    from bench._run import run

    run(main)
