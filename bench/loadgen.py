"""The city-scale load generator (bench/cluster.py): MQTT 3.1.1 QoS 1 telemetry from many connections in
several processes, over TLS with logins, counted per board.

A connection (`Conn`) logs in as one identity and publishes for one board (a board's own login: it may publish
only its own topics) or for many (a gateway: shared connections log in as a hub user, whose role may write the
whole site tree). Two ways to publish:

- burst: every connection sends `messages` messages for its boards in turn, as fast as a window of
  unacknowledged messages allows, from PUBLISH packets encoded before the start (packet ids fixed per message:
  the window is below 65,535, so a message's id is free again when it is sent);
- paced: every board sends one reading every `interval` seconds for `duration` seconds, each board at its own
  phase, encoded when due (the fleet).

Message `seq` of board k carries ts = ts0 + seq * step ms, so every (board, seq) is its own InfluxDB point; a
board's stored count must equal its PUBACKed count. `run_load` starts the processes (spawn), waits until every
connection has its CONNACK, returns a `Load` whose `go()` starts publishing and `finish()` waits for the
results: per board sent and acked, per second the PUBACKs, per process the errors. Each process raises its
file-descriptor limit to the hard limit. asyncio's TLS reads many records per socket read, so a PUBACK costs a
few microseconds here.

Imports the standard library, bench.engines (the readings its publishers send, about 150 bytes) and
protocols.mqtt_codec; knows nothing of brokers, hubs or InfluxDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import queue
import resource
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.engines import body_tail
from protocols.mqtt_codec import encode_connect, encode_length

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

CTX = multiprocessing.get_context("spawn")
HOST = "127.0.0.1"
CHUNK = 100
"""Packets per write in a burst."""
CONNECTS_AT_ONCE = 64
"""TLS handshakes a process runs at the same time while connecting."""


@dataclass(frozen=True)
class Conn:
    """One MQTT connection: its login, its node, the boards (indexes into LoadSpec.names) it publishes for."""

    client_id: str
    user: str
    password: str
    port: int
    boards: tuple[int, ...]


@dataclass
class LoadSpec:
    site: str
    names: list[str]
    """Device id of each board index."""
    conns: list[Conn]
    ca_file: str | None = None
    """The site CA (TLS, host name `server_hostname` checked); None: plain TCP."""
    server_hostname: str = "localhost"
    processes: int = 4
    messages: int = 0
    """Burst: messages per connection (0: paced)."""
    window: int = 2000
    interval: float = 10.0
    """Paced: seconds between one board's readings."""
    duration: float = 0.0
    """Paced: seconds of offering."""
    grace: float = 600.0
    """After the last publish: how long to wait for the outstanding PUBACKs."""
    ts0: int = field(default_factory=lambda: int(time.time() * 1000) - 86_400_000)


@dataclass
class Load:
    """The running generator: go(), then finish() for the merged results."""

    procs: list[multiprocessing.process.BaseProcess]  # spawn processes
    go_event: Event
    results: multiprocessing.Queue[Any]
    boards: int
    t_go: float = 0.0

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def go(self) -> float:
        self.t_go = time.monotonic()
        self.go_event.set()
        return self.t_go

    def finish(self, timeout: float) -> dict[str, Any]:
        """Wait for every process's result: sent and acked per board, PUBACKs per second since go, the last
        PUBACK's time (monotonic), errors, the processes' CPU seconds from go."""
        sent = [0] * self.boards
        acked = [0] * self.boards
        per_s: dict[int, int] = {}
        last_ack, first_send, cpu = 0.0, float("inf"), 0.0
        errors: list[str] = []
        deadline = time.monotonic() + timeout
        for _ in self.procs:
            try:
                kind, out = self.results.get(timeout=max(1.0, deadline - time.monotonic()))
            except queue.Empty:
                errors.append("a generator process gave no result in time")
                break
            if kind == "error":
                errors.append(out)
                continue
            for k, n in out["sent"].items():
                sent[k] += n
            for k, n in out["acked"].items():
                acked[k] += n
            for second, n in out["per_s"].items():
                per_s[second] = per_s.get(second, 0) + n
            last_ack = max(last_ack, out["last_ack"])
            first_send = min(first_send, out["first_send"])
            cpu += out["cpu"]
            errors.extend(out["errors"])
        for proc in self.procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        return {"sent": sent, "acked": acked, "per_s": dict(sorted(per_s.items())), "last_ack": last_ack,
                "first_send": first_send, "errors": errors, "cpu": cpu}

    def stop(self) -> None:
        """Kill what still runs (on errors)."""
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
                proc.join()


def run_load(spec: LoadSpec, timeout: float = 600.0) -> Load:
    """Start the processes; return once every connection is up (ServiceError-free: RuntimeError otherwise)."""
    go = CTX.Event()
    results: multiprocessing.Queue[Any] = CTX.Queue()
    ready: multiprocessing.Queue[Any] = CTX.Queue()
    parts = [spec.conns[i::spec.processes] for i in range(spec.processes)]
    procs: list[multiprocessing.process.BaseProcess] = [
        CTX.Process(target=_main, args=(spec, part, go, ready, results), daemon=True) for part in parts if part]
    load = Load(procs, go, results, len(spec.names))
    for proc in procs:
        proc.start()
    deadline = time.monotonic() + timeout
    kinds = []
    try:
        for _ in procs:
            kinds.append(ready.get(timeout=max(1.0, deadline - time.monotonic())))
            if kinds[-1][0] == "error":
                break
    except BaseException:
        load.stop()
        raise
    errors = [out for kind, out in kinds if kind == "error"]
    if errors:
        load.stop()
        raise RuntimeError(f"load generator: {errors[0]}")
    return load


# ------------------------------------------------------------------------------------------ one process


class Link(asyncio.Protocol):
    """One connection: the CONNACK, then PUBACKs only (4 bytes each, as a CONNACK is)."""

    def __init__(self, conn: Conn, counts: Counts) -> None:
        self.conn = conn
        self.counts = counts
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.outstanding: dict[int, int] = {}
        """packet id -> board index"""
        self.room = asyncio.Event()
        self.window = 0
        self.pending = b""
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.pending + data if self.pending else data
        n = len(buf) // 4
        self.pending = buf[4 * n:]
        start = 0
        if not self.connack.done() and n:
            if buf[0] != 0x20:
                self.connack.set_exception(RuntimeError(f"{self.conn.client_id}: expected CONNACK, got {buf[:4]!r}"))
                return
            self.connack.set_result(buf[3])
            start = 1
        out, acked = self.outstanding, self.counts.acked
        for j in range(start, n):
            k = out.pop((buf[4 * j + 2] << 8) | buf[4 * j + 3], None)
            if k is not None:
                acked[k] = acked.get(k, 0) + 1
        if n > start:
            self.counts.ack(n - start)
            if len(out) <= self.window - CHUNK or not out:
                self.room.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connack.done():
            self.connack.set_exception(exc or ConnectionError(f"{self.conn.client_id}: closed before CONNACK"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.room.set()


class Counts:
    """What one process sent and had acknowledged, per board and per second since go."""

    def __init__(self) -> None:
        self.sent: dict[int, int] = {}
        self.acked: dict[int, int] = {}
        self.per_s: dict[int, int] = {}
        self.t_go = 0.0
        self.first_send = float("inf")
        self.last_ack = 0.0
        self.started = asyncio.Event()

    def ack(self, n: int) -> None:
        self.last_ack = now = time.monotonic()
        second = int(now - self.t_go)
        self.per_s[second] = self.per_s.get(second, 0) + n


def phase(k: int, interval: float) -> float:
    """Paced: when board k sends its first reading, seconds after go (spread by the golden ratio)."""
    return (k * 0.6180339887) % 1.0 * interval


def paced_total(boards: int, interval: float, duration: float) -> int:
    """Paced: how many readings `boards` boards send in `duration` seconds."""
    return sum(math.ceil((duration - phase(k, interval)) / interval) for k in range(boards))


def _topic(site: str, device: str) -> bytes:
    topic = f"qala/{site}/{device}/telemetry".encode()
    return len(topic).to_bytes(2, "big") + topic


def _body(k: int, seq: int, ts: int) -> bytes:
    return b'{"v":1,"seq":%d,"ts":%d%s' % (seq, ts, body_tail(k))


def _publish(topic: bytes, mid: int, body: bytes) -> bytes:
    return b"\x32" + encode_length(len(topic) + 2 + len(body)) + topic + mid.to_bytes(2, "big") + body


async def _connect(spec: LoadSpec, conn: Conn, counts: Counts, context: ssl.SSLContext | None,
                   gate: asyncio.Semaphore) -> Link:
    loop = asyncio.get_running_loop()
    async with gate:
        _, link = await loop.create_connection(
            lambda: Link(conn, counts), HOST, conn.port, ssl=context,
            server_hostname=spec.server_hostname if context else None)
        assert link.transport is not None
        link.transport.write(encode_connect(conn.client_id, keepalive=120, user=conn.user, password=conn.password))
        code = await asyncio.wait_for(link.connack, 60)
    if code:
        raise RuntimeError(f"{conn.client_id} (user {conn.user}): CONNACK return code {code}")
    return link


async def _burst(spec: LoadSpec, link: Link, counts: Counts) -> None:
    conn, transport = link.conn, link.transport
    assert transport is not None
    link.window = min(spec.window, 60_000)
    nb = len(conn.boards)
    topics = [_topic(spec.site, spec.names[k]) for k in conn.boards]
    packets = [_publish(topics[i % nb], i % 65535 + 1, _body(conn.boards[i % nb], i // nb, spec.ts0 + i // nb * 1000))
               for i in range(spec.messages)]
    await counts.started.wait()
    for a in range(0, spec.messages, CHUNK):
        while len(link.outstanding) > link.window - CHUNK:
            link.room.clear()
            await link.room.wait()
            if link.closed.done():
                raise ConnectionError(f"{conn.client_id}: connection lost")
        b = min(a + CHUNK, spec.messages)
        for i in range(a, b):
            link.outstanding[i % 65535 + 1] = conn.boards[i % nb]
        transport.write(b"".join(packets[a:b]))
    for j, k in enumerate(conn.boards):
        counts.sent[k] = counts.sent.get(k, 0) + spec.messages // nb + (1 if j < spec.messages % nb else 0)


async def _paced(spec: LoadSpec, link: Link, counts: Counts) -> None:
    """Each board at its phase, then every interval, until duration."""
    conn, transport = link.conn, link.transport
    assert transport is not None
    link.window = 60_000
    step = int(spec.interval * 1000)
    topics = {k: _topic(spec.site, spec.names[k]) for k in conn.boards}
    due = sorted((phase(k, spec.interval), k) for k in conn.boards)
    await counts.started.wait()
    t0 = counts.t_go
    loop = asyncio.get_running_loop()
    mid = 0
    seq = 0
    batch: list[bytes] = []
    while seq * spec.interval < spec.duration:
        if link.closed.done():
            raise ConnectionError(f"{conn.client_id}: connection lost")
        for offset, k in due:
            t = seq * spec.interval + offset
            if t >= spec.duration:
                break
            now = loop.time() - t0
            if t > now:
                if batch:
                    transport.write(b"".join(batch))
                    batch.clear()
                await asyncio.sleep(t - now)
            while True:
                mid = mid % 65535 + 1
                if mid not in link.outstanding:
                    break
            link.outstanding[mid] = k
            batch.append(_publish(topics[k], mid, _body(k, seq, spec.ts0 + seq * step)))
            counts.sent[k] = counts.sent.get(k, 0) + 1
        seq += 1
    if batch:
        transport.write(b"".join(batch))


async def _process(spec: LoadSpec, conns: list[Conn], go: Event, ready: multiprocessing.Queue[Any]
                   ) -> dict[str, Any]:
    counts = Counts()
    context = None
    if spec.ca_file is not None:
        context = ssl.create_default_context(cafile=spec.ca_file)
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
    try:
        links = await asyncio.gather(*(_connect(spec, c, counts, context, gate) for c in conns))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the run
        ready.put(("error", f"connect: {exc!r}"))
        return {}
    ready.put(("ready", len(links)))
    job = _burst if spec.messages else _paced
    tasks = [asyncio.create_task(job(spec, link, counts)) for link in links]
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    counts.t_go = counts.first_send = time.monotonic()
    cpu0 = time.process_time()
    counts.started.set()
    errors = [repr(r) for r in await asyncio.gather(*tasks, return_exceptions=True) if isinstance(r, BaseException)]
    deadline = time.monotonic() + spec.grace
    while any(link.outstanding and not link.closed.done() for link in links) and time.monotonic() < deadline:  # noqa: ASYNC110 - a poll over every connection
        await asyncio.sleep(0.05)
    unacked = sum(len(link.outstanding) for link in links)
    if unacked:
        errors.append(f"{unacked} messages never PUBACKed")
    for link in links:
        if link.transport is not None and not link.transport.is_closing():
            link.transport.write(b"\xe0\x00")
            link.transport.close()
    await asyncio.sleep(0.2)
    return {"sent": counts.sent, "acked": counts.acked, "per_s": counts.per_s, "last_ack": counts.last_ack,
            "first_send": counts.first_send, "errors": errors, "cpu": time.process_time() - cpu0}


def _main(spec: LoadSpec, conns: list[Conn], go: Event, ready: multiprocessing.Queue[Any],
          results: multiprocessing.Queue[Any]) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        out = asyncio.run(_process(spec, conns, go, ready))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the run
        ready.put(("error", repr(exc)))
        results.put(("error", repr(exc)))
        return
    if out:
        results.put(("result", out))
