"""Hub ingest benchmark: real mosquitto and influxd on loopback, 1,000 boards, QoS 1, counted in InfluxDB.

    python bench/ingest.py                      # burst of 200,000 messages + fixed rates 5k, 10k, 20k msg/s
    python bench/ingest.py --burst 400000 --rates ""  --runs 3
    python bench/ingest.py --plain              # no provisioning: plain MQTT, anonymous, no ACL, no store
    python bench/ingest.py --no-confirm         # hub.confirm = false: no confirmations to the boards
    python bench/ingest.py --no-detect          # [detect] enabled = false: no detectors in the stream
    python bench/ingest.py --detect-ab 5        # bursts only, detectors on and off interleaved, 5 rounds each

Per run it starts its own mosquitto (simulators/mosquitto-qala.conf: queue limits raised, $SYS every
second) and influxd 1.6.7 in a temporary folder, then:

0. as shipped (unless --plain): a provisioning store for the site with the 1,000 boards (hub.trust), the
   store's broker (TLS only, passwords, ACL, client ids tied to users) and a hub trusting the store (its login,
   TLS verified against the site CA, only the provisioned ids stored). The publisher and `mosquitto_sub` log
   in with hub identities of the store (`bench-pub`, `bench-sub`: one connection speaks for all 1,000 boards,
   which only the hub's role may do) over TLS; the ACL is checked for every message all the same.

1. baseline: `mosquitto_sub -q 1` (a bare C subscriber, output to /dev/null) receives the burst; its rate is
   what this broker delivers here.
2. hub burst: `python -m hub hub run` (spool + fsync + ack after spool, as shipped) subscribes, the
   publisher sends the same burst, and the run ends when InfluxDB holds all N points (a line per message,
   six fields: six readings). Missing points after the time limit make the run a FAILURE.
3. hub at fixed rates: the publisher paces messages stamped with the wall clock; a probe thread looks up
   sampled points in InfluxDB every 20 ms and records board timestamp -> queryable latency.

The publisher is one raw MQTT 3.1.1 socket with pre-encoded PUBLISH packets (QoS 1, a window of unacknowledged
packets; PUBACKs read by a thread on a plain socket, by the sending thread between writes over TLS, since one
TLS connection must not be read and written by two threads at once, through bench/tlsbio.py, which decrypts
many TLS records per socket read, since every PUBACK is a TLS record of its own), so it costs little CPU next
to the hub.
Every process started here is stopped by PID (also on Ctrl-C and errors). The broker's
`$SYS/broker/publish/messages/dropped` must read 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Self

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.tlsbio import BioContext, BioSocket  # noqa: E402
from hub.trust import provision  # noqa: E402
from hub.trust.store import TrustStore  # noqa: E402
from simulators.services import Influxd, Mosquitto  # noqa: E402

SITE = "bench"
BOARDS = 1000
DB = "bench"
QUANTITIES = ("pm1", "pm25", "pm10", "co2", "temperature", "humidity")
CLK_TCK = os.sysconf("SC_CLK_TCK")
# the hub runs in the project's venv (README set-up) even when this script is started with another python
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ------------------------------------------------------------------------------------------- MQTT bytes

def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def connect_packet(client_id: str, login: tuple[str, str] | None = None) -> bytes:
    flags = 0x02 if login is None else 0xC2  # clean session (+ username and password)
    variable = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x3c" + _str(client_id.encode())
    if login is not None:
        variable += _str(login[0].encode()) + _str(login[1].encode())
    return b"\x10" + _remaining(len(variable)) + variable


def payload(board: int, seq: int, ts: int) -> bytes:
    k = board
    return (
        b'{"v":1,"seq":%d,"ts":%d,"boot":1,"s":"env1","r":{"pm1":%d.%d,"pm25":%d.%d,"pm10":%d.%d,'
        b'"co2":%d,"temperature":%d.%d,"humidity":%d.%d}}'
        % (seq, ts, k % 50, seq % 10, k % 70, seq % 7, k % 90, seq % 3, 400 + k % 600, 10 + k % 20, seq % 10,
           30 + k % 50, seq % 9)
    )


TOPICS = [f"qala/{SITE}/b{k:04d}/telemetry".encode() for k in range(BOARDS)]


def publish_packet(board: int, mid: int, body: bytes) -> bytes:
    variable = _str(TOPICS[board]) + mid.to_bytes(2, "big")
    return b"\x32" + _remaining(len(variable) + len(body)) + variable + body


class Trust:
    """The bench site's provisioning store: the 1,000 boards, the hub, the publisher's and subscriber's logins."""

    def __init__(self, work: Path, hubs: int) -> None:
        root = work / "store"
        provision.init_store(root, SITE)
        provision.add_boards(root, [f"b{k:04d}" for k in range(BOARDS)])
        for name in ("bench-pub", "bench-sub", *(f"hub-{h}" for h in range(1, hubs))):
            provision.add_hub(root, name)
        self.store = TrustStore.load(root)
        self.context = ssl.create_default_context(cafile=str(self.store.ca_file))

    def sub_args(self) -> list[str]:
        user, password = self.store.hub("bench-sub")
        return ["--cafile", str(self.store.ca_file), "-u", user, "-P", password]


class Publisher:
    """One raw MQTT connection; QoS 1 with at most `window` packets unacknowledged."""

    def __init__(self, broker: Mosquitto, client_id: str = "bench-pub", window: int = 20000,
                 trust: Trust | None = None) -> None:
        self.sock: socket.socket = socket.create_connection((broker.host, broker.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        login = None
        if trust is not None:  # the hub's TLS reader: the broker's PUBACKs are a TLS record each
            self.sock = BioContext(trust.context).wrap_socket(self.sock, server_hostname=broker.host)  # type: ignore[assignment]
            login = trust.store.hub("bench-pub")
        self.tls = trust is not None
        self.sock.sendall(connect_packet(client_id, login))
        connack = self.sock.recv(4)
        if connack[:2] != b"\x20\x02" or connack[3:4] != b"\x00":
            raise RuntimeError(f"publisher refused: {connack!r}")
        self.window = min(window, 60000)
        self.sent = 0
        self.acked = 0
        self.last_ack = 0.0
        self._pending = b""
        if not self.tls:
            self._reader = threading.Thread(target=self._read_acks, daemon=True)
            self._reader.start()

    def _count(self, data: bytes) -> None:
        pending = self._pending + data
        n = len(pending) // 4  # PUBACK: 0x40 0x02 mid mid, nothing else comes to a publisher
        self.acked += n
        self.last_ack = time.monotonic()
        self._pending = pending[n * 4 :]

    def _read_acks(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return
                self._count(data)

    def _poll_acks(self, timeout: float) -> None:
        """TLS: read what PUBACKs have arrived, in this thread (waiting at most `timeout` for the first)."""
        assert isinstance(self.sock, BioSocket)
        ready = self.sock.pending() or select.select([self.sock], [], [], timeout)[0]
        if not ready:
            return
        self.sock.setblocking(flag=False)
        try:
            while data := self.sock.recv(65536):
                self._count(data)
        except ssl.SSLWantReadError:
            pass
        finally:
            self.sock.setblocking(flag=True)

    def mid(self) -> int:
        return self.sent % 65535 + 1

    def send(self, packets: bytes, count: int) -> None:
        if self.tls:
            self._poll_acks(0)
        while self.sent + count - self.acked > self.window:
            if self.tls:
                self._poll_acks(0.0005)
            else:
                time.sleep(0.0005)
        self.sock.sendall(packets)
        self.sent += count

    def wait_acked(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.acked < self.sent and time.monotonic() < deadline:
            if self.tls:
                self._poll_acks(0.01)
            else:
                time.sleep(0.01)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\xe0\x00")
        self.sock.close()


def burst_packets(n: int, ts0: int) -> list[bytes]:
    """N pre-encoded PUBLISH packets in chunks of 1,000: board k sends message j at ts0 + j seconds."""
    chunks = []
    for start in range(0, n, BOARDS):
        parts = []
        for i in range(start, min(n, start + BOARDS)):
            board, j = i % BOARDS, i // BOARDS
            parts.append(publish_packet(board, i % 65535 + 1, payload(board, j, ts0 + j * 1000)))
        chunks.append(b"".join(parts))
    return chunks


def send_burst(pub: Publisher, chunks: list[bytes], n: int) -> float:
    started = time.monotonic()
    left = n
    for chunk in chunks:
        count = min(BOARDS, left)
        pub.send(chunk, count)
        left -= count
    return started


# ------------------------------------------------------------------------------------------ measuring

class Proc:
    """CPU seconds and peak RSS of a process from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def influx_count(influxd: Influxd) -> int:
    answer = influxd.query(DB, "SELECT count(pm25) FROM air")
    series = answer["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def sys_counters(broker: Mosquitto, trust: Trust | None) -> dict[str, int]:
    """The broker's $SYS/broker/publish/messages/* counters (retained, refreshed every second here)."""
    out = subprocess.run(
        ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-W", "3", "-v",
         *(trust.sub_args() if trust else []), "-t", "$SYS/broker/publish/messages/+"],
        capture_output=True, text=True, timeout=10, check=False,
    )
    counters = {}
    for line in out.stdout.splitlines():
        topic, _, value = line.partition(" ")
        counters[topic.rsplit("/", 1)[1]] = int(value)
    return counters


# ------------------------------------------------------------------------------------------ processes

class Hub:
    def __init__(self, work: Path, broker: Mosquitto, influxd: Influxd, client_id: str, batch: int,
                 flush: float, extra_args: list[str], share_group: str | None = None, *,
                 trust: Trust | None = None, identity: str = "main", confirm: bool = True, detect: bool = True,
                 folder: str | None = None) -> None:
        self.dir = work / (folder or client_id)
        self.dir.mkdir(parents=True)
        config = self.dir / "hub.toml"
        trusted = (f'[trust]\nstore = "{trust.store.root}"\nhub = "{identity}"\n' if trust is not None
                   else "[trust]\nplain = true\n")
        config.write_text(
            f'[site]\nid = "{SITE}"\nrequire_birth = false\n' + trusted
            + f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
            + (f'client_id = "{client_id}"\n' if trust is None else "")
            + (f'share_group = "{share_group}"\n' if share_group else "")
            + f'[influxdb]\napi = "v1"\nurl = "{influxd.url}"\ndatabase = "{DB}"\n'
            f'[spool]\npath = "{self.dir / "state"}"\n'
            f"[batch]\nsize = {batch}\nflush_interval = {flush}\n"
            "[metrics]\ninterval = 10.0\n"
            + ("" if confirm or share_group else "[hub]\nconfirm = false\n")
            + ("" if detect else "[detect]\nenabled = false\n")
        )
        self.log = self.dir / "hub.log"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*extra_args, PYTHON, "-m", "hub", "hub", "run", "--config", str(config)],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=os.environ | {"PYTHONPATH": str(REPO)},
            )
        self.proc = Proc(self.process.pid)
        if extra_args:  # the hub runs as py-spy's child
            deadline = time.monotonic() + 10
            while not Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split():
                if time.monotonic() > deadline:
                    raise RuntimeError("py-spy did not start the hub")
                time.sleep(0.05)
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
            self.proc = Proc(int(children[0]))
        deadline = time.monotonic() + 30
        while "mqtt: subscribed" not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("hub did not subscribe:\n" + self.log.read_text(errors="replace")[-3000:])
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)  # the hub itself (py-spy's child when profiling)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class ConfWatch:
    """The boards' side of end-to-end confirmation: one `mosquitto_sub` on `qala/{site}/+/conf` stands in for
    the 1,000 boards' subscriptions (each board reads only its own), so the broker delivers every confirmation
    once, as it would to the boards. `taken()` is (messages, MQTT bytes) received so far: a QoS 0 PUBLISH is
    2 bytes of fixed header, 2 of topic length, the topic and the payload; `-v` prints topic, space, payload,
    newline, so a line of L bytes is a packet of L + 2 (TLS records add their own overhead on top)."""

    def __init__(self, stack: Stack) -> None:
        broker = stack.broker
        login = stack.trust.sub_args() if stack.trust else []
        self.path = stack.work / "conf.txt"
        with self.path.open("wb") as out:
            self.process = subprocess.Popen(
                ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "0", "-v", "-i", "bench-conf",
                 *login, "-t", f"qala/{SITE}/+/conf"], stdout=out, stderr=subprocess.DEVNULL)
        stack.subs.append(self.process)
        time.sleep(0.5)

    def taken(self) -> tuple[int, int]:
        data = self.path.read_bytes()
        lines = data.count(b"\n")
        return lines, len(data) + 2 * lines


class Stack:
    """mosquitto + influxd in a temporary folder; everything stopped by PID on exit."""

    def __init__(self, inflight: int | None = None, *, plain: bool = False, hubs: int = 1) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="qala-bench-"))
        extra = ["sys_interval 1"] + ([f"max_inflight_messages {inflight}"] if inflight else [])
        self.trust = None if plain else Trust(self.work, hubs)
        store = None if self.trust is None else self.trust.store.root
        self.broker = Mosquitto(self.work / "mosquitto", extra_config=extra, store=store)
        self.influxd = Influxd(self.work / "influxd")
        self.hubs: list[Hub] = []
        self.subs: list[subprocess.Popen[bytes]] = []
        self.seqs = [-1] * BOARDS
        """Each board's last seq sent to the hub (the hub confirms runs of seqs without holes)."""

    def __enter__(self) -> Self:
        self.broker.start()
        self.influxd.start()
        self.influxd.create_database(DB)
        return self

    def __exit__(self, *exc: object) -> None:
        for hub in self.hubs:
            hub.stop()
        for sub in self.subs:
            if sub.poll() is None:
                sub.kill()
                sub.wait()
        self.influxd.stop()
        self.broker.stop()
        if os.environ.get("QALA_BENCH_KEEP") is None:
            subprocess.run(["rm", "-rf", str(self.work)], check=False)
        else:
            print(f"kept {self.work}")


# ----------------------------------------------------------------------------------------------- runs

def baseline(stack: Stack, n: int) -> float:
    """mosquitto_sub (QoS 1, persistent session) receiving the burst: messages per second."""
    broker = stack.broker
    login = stack.trust.sub_args() if stack.trust else []
    argv = ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-c", "-i", "bench-c-sub",
            *login, "-t", f"qala/{SITE}/+/telemetry", "-C", str(n)]
    # first connect creates the session and subscription (ends after 1 s without messages)
    subprocess.run([*argv[:-2], "-W", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    chunks = burst_packets(n, int(time.time() * 1000) - n)
    sub = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    stack.subs.append(sub)
    time.sleep(0.5)
    pub = Publisher(broker, "bench-pub-base", trust=stack.trust)
    started = send_burst(pub, chunks, n)
    sub.wait(300)
    elapsed = time.monotonic() - started
    pub.wait_acked()
    pub.close()
    # the session stays subscribed: remove it so later runs are not queued for it
    subprocess.run(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-i", "bench-c-sub", *login,
                    "-t", "x", "-C", "1", "-W", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return n / elapsed


def hubs_cpu(hubs: list[Hub]) -> float:
    return sum(hub.proc.cpu() for hub in hubs)


def conf_cost(watch: ConfWatch | None, before: tuple[int, int], n: int) -> dict[str, float]:
    """Confirmations the broker delivered for n telemetry messages: per message, and bytes per message."""
    if watch is None:
        return {"conf_msgs": 0.0, "conf_per_msg": 0.0, "conf_bytes_per_msg": 0.0}
    time.sleep(1.5)  # the hub confirms once a second: the last round of this phase
    msgs, size = watch.taken()
    msgs, size = msgs - before[0], size - before[1]
    return {"conf_msgs": float(msgs), "conf_per_msg": msgs / n, "conf_bytes_per_msg": size / n}


def hub_burst(stack: Stack, hubs: list[Hub], n: int, limit: float, watch: ConfWatch | None = None,
              back_s: int = 0) -> dict[str, float]:
    """The burst stamped an hour (and `back_s` seconds more) ago: bursts of one stack need distinct times,
    or InfluxDB overwrites the points of one with the other's."""
    chunks = burst_packets(n, int(time.time() * 1000) - 3_600_000 - back_s * 1000 - n)
    for i in range(min(n, BOARDS)):  # board i sent seqs 0 .. its message count - 1
        stack.seqs[i] = (n - 1 - i) // BOARDS
    taken = watch.taken() if watch else (0, 0)
    before = influx_count(stack.influxd)
    pub = Publisher(stack.broker, "bench-pub-burst", trust=stack.trust)
    cpu0 = hubs_cpu(hubs)
    base0, influx0 = Proc(stack.broker.pid or 0).cpu(), Proc(stack.influxd.pid or 0).cpu()
    started = send_burst(pub, chunks, n)
    deadline = started + limit
    stored = 0
    while time.monotonic() < deadline:
        stored = influx_count(stack.influxd) - before
        if stored >= n:
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    cpu = hubs_cpu(hubs) - cpu0
    pub.wait_acked()
    pub.close()
    published = pub.last_ack - started
    return {
        "n": n, "stored": stored, "seconds": elapsed, "msg_s": n / elapsed, "pub_s": n / published,
        "cpu_us_msg": 1e6 * cpu / n, "hub_cores": cpu / elapsed, "rss_mb": max(hub.proc.peak_rss_mb() for hub in hubs),
        "broker_cores": (Proc(stack.broker.pid or 0).cpu() - base0) / elapsed,
        "influx_cores": (Proc(stack.influxd.pid or 0).cpu() - influx0) / elapsed,
        "telemetry_bytes": len(chunks[0]) / min(BOARDS, n),
    } | conf_cost(watch, taken, n)


def hub_rate(stack: Stack, hubs: list[Hub], rate: int, seconds: float, watch: ConfWatch | None = None
             ) -> dict[str, float]:
    """Paced publishing at `rate` msg/s stamped with the wall clock; latency of sampled points."""
    n = int(rate * seconds)
    taken = watch.taken() if watch else (0, 0)
    pub = Publisher(stack.broker, f"bench-pub-{rate}", trust=stack.trust)
    probes: list[tuple[int, int]] = []  # (board, ts)
    lock = threading.Lock()
    latencies: list[float] = []
    done = threading.Event()
    give_up = threading.Event()

    def probe() -> None:
        pending: list[tuple[int, int]] = []
        while not give_up.is_set() and not (done.is_set() and not pending and not probes):
            with lock:
                pending += probes
                probes.clear()
            if not pending:
                time.sleep(0.02)
                continue
            # InfluxQL has no OR of time conditions: one statement per probe, one request
            q = ";".join(f"SELECT pm25 FROM air WHERE device='b{b:04d}' AND time={ts}ms" for b, ts in pending[:50])
            answer = stack.influxd.query(DB, q)
            now = time.time()
            found = {pending[r["statement_id"]] for r in answer["results"] if r.get("series")}
            for item in [p for p in pending if p in found]:
                latencies.append(now - item[1] / 1000)
                pending.remove(item)
            time.sleep(0.02)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    cpu0 = hubs_cpu(hubs)
    seqs = stack.seqs  # each board's last seq: its messages go on from the burst's, as a board's would
    last_ts = [0] * BOARDS
    tick = 0.01
    per_tick = rate * tick
    started = time.monotonic()
    sent = 0
    next_probe = started
    probe_count = 0
    i = 0
    while sent < n:
        due = min(n, int((time.monotonic() - started) * rate) + 1)
        if due <= sent:
            time.sleep(tick / 2)
            continue
        now_ms = int(time.time() * 1000)
        parts = []
        for _ in range(min(due - sent, int(per_tick * 10) + 1)):
            board = i % BOARDS
            seqs[board] += 1
            # a board's timestamps must differ (InfluxDB keeps one point per series and time), also when the
            # publisher catches up with several messages per board in one chunk
            ts = last_ts[board] = max(now_ms, last_ts[board] + 1)
            parts.append(publish_packet(board, (pub.sent + len(parts)) % 65535 + 1, payload(board, seqs[board], ts)))
            i += 1
        if time.monotonic() >= next_probe:
            with lock:
                probes.append(((i - 1) % BOARDS, ts))
                probe_count += 1
            next_probe += 0.05
        pub.send(b"".join(parts), len(parts))
        sent += len(parts)
    elapsed = time.monotonic() - started
    done.set()
    prober.join(30)
    give_up.set()  # probes still missing after 30 s count as lost below
    prober.join()
    cpu = hubs_cpu(hubs) - cpu0
    pub.wait_acked()
    pub.close()
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    return {"rate": rate, "achieved": sent / elapsed, "samples": len(lat), "probes": probe_count,
            "p50": pct(0.5), "p99": pct(0.99), "max": lat[-1] if lat else float("nan"),
            "cpu_us_msg": 1e6 * cpu / n, "hub_cores": cpu / elapsed} | conf_cost(watch, taken, n)


def one_run(args: argparse.Namespace) -> dict[str, object]:
    with Stack(args.inflight, plain=args.plain, hubs=args.hubs) as stack:
        base = baseline(stack, args.burst)
        extra = []
        if args.profile:  # py-spy (pip install py-spy) samples the hub, collapsed stacks for flamegraphs
            extra = [str(Path(PYTHON).with_name("py-spy")), "record", "-r", "250", "-f", "raw",
                     "-o", args.profile, "--"]
        group = "bench" if args.hubs > 1 else None  # several hubs share telemetry through $share/bench/...
        confirm = not args.no_confirm and group is None  # hubs of a share group do not confirm
        watch = ConfWatch(stack) if confirm else None
        hubs = [Hub(stack.work, stack.broker, stack.influxd, f"bench-hub-{h}", args.batch, args.flush,
                    extra if h == 0 else [], group, trust=stack.trust, identity="main" if h == 0 else f"hub-{h}",
                    confirm=confirm, detect=not args.no_detect)
                for h in range(args.hubs)]
        stack.hubs += hubs
        burst = hub_burst(stack, hubs, args.burst, args.limit, watch)
        rates = [hub_rate(stack, hubs, rate, args.seconds, watch) for rate in args.rates]
        expected = args.burst + sum(int(r * args.seconds) for r in args.rates)
        deadline = time.monotonic() + 30  # the last messages of the last rate may still be on their way
        while (total := influx_count(stack.influxd)) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.5)  # $SYS is published every second
        counters = sys_counters(stack.broker, stack.trust)
        dropped = counters.get("dropped", -1)
    return {"baseline": base, "burst": burst, "rates": rates, "dropped": dropped, "total": total,
            "expected": expected, "sys": counters}


def detect_ab(args: argparse.Namespace) -> dict[str, list[float]]:
    """The burst rate with the stream's detectors on and off ([detect] enabled), in one stack, interleaved:
    each round runs both (on first in even rounds, off first in odd ones), each on a fresh hub process and
    state folder taking over the same MQTT session; medians over the rounds, and the median of each round's
    own on/off (which cancels the machine's drift between rounds)."""
    rates: dict[str, list[float]] = {"on": [], "off": [], "cpu_on": [], "cpu_off": []}
    with Stack(args.inflight, plain=args.plain) as stack:
        span = args.burst // BOARDS + 60  # seconds of board time one burst covers, and a margin
        k = 0
        for rnd in range(args.detect_ab):
            for mode in (("on", "off") if rnd % 2 == 0 else ("off", "on")):
                k += 1
                hub = Hub(stack.work, stack.broker, stack.influxd, "bench-hub-0", args.batch, args.flush, [],
                          trust=stack.trust, confirm=not args.no_confirm, detect=mode == "on",
                          folder=f"bench-hub-{k}-{mode}")
                stack.hubs.append(hub)
                try:
                    burst = hub_burst(stack, [hub], args.burst, args.limit, back_s=k * span)
                finally:
                    hub.stop()
                if burst["stored"] != burst["n"]:
                    raise RuntimeError(f"round {rnd + 1} detectors {mode}: stored {burst['stored']}/{burst['n']}")
                # counted: dropped, so that influxd compacting earlier bursts does not take the cores from the
                # next one (it made later rounds up to 40 % slower, whichever half ran)
                stack.influxd.drop_database(DB)
                stack.influxd.create_database(DB)
                rates[mode].append(burst["msg_s"])
                rates["cpu_" + mode].append(burst["cpu_us_msg"])
                print(f"round {rnd + 1} detectors {mode:<3}: {burst['msg_s']:8.0f} msg/s stored, "
                      f"{burst['cpu_us_msg']:.1f} us CPU/message", flush=True)
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    # each round's own on/off: the machine's drift (influxd compacting, neighbours) cancels within a round
    pairs = sorted(a / b - 1 for a, b in zip(rates["on"], rates["off"], strict=True))
    cpu = sorted(a - b for a, b in zip(rates["cpu_on"], rates["cpu_off"], strict=True))
    print(f"\ndetectors on / off, {args.detect_ab} rounds of a {args.burst:,}-message burst each, medians: "
          f"{on:.0f} / {off:.0f} msg/s ({on / off - 1:+.1%}); CPU per message "
          f"{statistics.median(rates['cpu_on']):.1f} / {statistics.median(rates['cpu_off']):.1f} us\n"
          f"per round, on against off: median {statistics.median(pairs):+.1%} (from {pairs[0]:+.1%} to "
          f"{pairs[-1]:+.1%}); CPU per message {statistics.median(cpu):+.1f} us (from {cpu[0]:+.1f} to {cpu[-1]:+.1f})")
    rates["pairs"], rates["cpu_pairs"] = pairs, cpu
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=200_000, help="messages in the burst (default 200000)")
    parser.add_argument("--rates", default="5000,10000,20000", help="fixed rates, msg/s ('' for none)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per fixed rate (default 10)")
    parser.add_argument("--runs", type=int, default=1, help="repeat the whole run (default 1)")
    parser.add_argument("--batch", type=int, default=5000, help="hub batch.size (default 5000)")
    parser.add_argument("--flush", type=float, default=0.2, help="hub batch.flush_interval (default 0.2)")
    parser.add_argument("--hubs", type=int, default=1, help="hub processes sharing telemetry (mqtt.share_group)")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds before a burst counts as failed")
    parser.add_argument("--inflight", type=int, help="override the broker's max_inflight_messages (site config: 1000)")
    parser.add_argument("--profile", help="run the hub under py-spy, collapsed stacks into this file")
    parser.add_argument("--plain", action="store_true",
                        help="no provisioning store: plain MQTT, anonymous clients, no ACL (the comparison)")
    parser.add_argument("--no-confirm", action="store_true",
                        help="hub.confirm = false: no end-to-end confirmations to the boards (the comparison)")
    parser.add_argument("--no-detect", action="store_true",
                        help="[detect] enabled = false: no detectors in the stream (the comparison)")
    parser.add_argument("--detect-ab", type=int, default=0, metavar="ROUNDS",
                        help="only the burst, with detectors on and off interleaved in one stack, ROUNDS rounds")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    args = parser.parse_args()
    if args.profile and not Path(PYTHON).with_name("py-spy").exists():
        parser.error(f"--profile needs py-spy next to {PYTHON} (not in the lock: {Path(PYTHON).parent}/pip install "
                     "py-spy)")
    if args.detect_ab:
        rates = detect_ab(args)
        if args.json:
            print(json.dumps(rates, indent=1))
        return 0
    args.rates = [int(r) for r in args.rates.split(",") if r.strip()]
    results = []
    ok = True
    for run in range(args.runs):
        r = one_run(args)
        results.append(r)
        b = r["burst"]
        assert isinstance(b, dict)
        good = b["stored"] == b["n"] and r["dropped"] == 0 and r["total"] == r["expected"]
        ok = ok and good
        print(f"run {run + 1}: {'OK' if good else 'FAILURE'} stored {r['total']}/{r['expected']}, "
              f"broker dropped {r['dropped']}")
    print_table(results, args)
    if args.json:
        print(json.dumps(results, indent=1))
    return 0 if ok else 1


def _mmm(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    return " / ".join(fmt % v for v in (min(values), statistics.median(values), max(values)))


def print_table(results: list[dict[str, object]], args: argparse.Namespace) -> None:
    bursts = [r["burst"] for r in results]
    base = [float(r["baseline"]) for r in results]  # type: ignore[arg-type]

    def col(key: str) -> list[float]:
        return [float(b[key]) for b in bursts]  # type: ignore[index]

    ratio = [b["msg_s"] / r["baseline"] for b, r in zip(bursts, results, strict=True)]  # type: ignore[index,operator]
    mode = "plain (no TLS, no logins, no ACL)" if args.plain else "provisioned (TLS, logins, ACL, known devices)"
    mode += ", confirmations off" if args.no_confirm or args.hubs > 1 else ", confirmations on"
    print(f"\nburst of {args.burst:,} QoS 1 messages from {BOARDS} boards, 6 readings each, {mode}; "
          f"{len(results)} run(s), min / median / max")
    rows = [
        ("mosquitto -> mosquitto_sub, msg/s", _mmm(base, "%.0f")),
        ("publisher -> broker, msg/s", _mmm(col("pub_s"), "%.0f")),
        ("hub, msg/s stored (all N in InfluxDB)", _mmm(col("msg_s"), "%.0f")),
        ("hub, readings/s stored", _mmm([6 * v for v in col("msg_s")], "%.0f")),
        ("hub / mosquitto_sub", _mmm(ratio, "%.2f")),
        ("hub CPU per message, us", _mmm(col("cpu_us_msg"), "%.1f")),
        ("hub cores busy", _mmm(col("hub_cores"), "%.2f")),
        ("mosquitto cores busy", _mmm(col("broker_cores"), "%.2f")),
        ("influxd cores busy", _mmm(col("influx_cores"), "%.2f")),
        ("hub peak RSS, MB", _mmm(col("rss_mb"), "%.0f")),
        ("broker dropped ($SYS)", _mmm([float(r["dropped"]) for r in results], "%.0f")),  # type: ignore[arg-type]
        ("telemetry PUBLISH, bytes", _mmm(col("telemetry_bytes"), "%.0f")),
        ("confirmations delivered", _mmm(col("conf_msgs"), "%.0f")),
        ("confirmations per telemetry message", _mmm(col("conf_per_msg"), "%.4f")),
        ("confirmation bytes per telemetry message", _mmm(col("conf_bytes_per_msg"), "%.2f")),
    ]
    for name, value in rows:
        print(f"  {name:<40} {value}")
    if args.rates:
        print(f"\nfixed rates, {args.seconds:g} s each: latency board timestamp -> queryable in InfluxDB, s")
        print(f"  {'rate':>7} {'achieved':>18} {'p50':>18} {'p99':>18} {'max':>18} {'CPU us/msg':>18} samples"
              f"  conf/msg  conf B/msg")
        for k, rate in enumerate(args.rates):
            rs = [r["rates"][k] for r in results]  # type: ignore[index]

            def c(key: str, rs: list[dict[str, float]] = rs) -> list[float]:
                return [float(x[key]) for x in rs]

            print(f"  {rate:>7} {_mmm(c('achieved'), '%.0f'):>18} {_mmm(c('p50'), '%.3f'):>18} "
                  f"{_mmm(c('p99'), '%.3f'):>18} {_mmm(c('max'), '%.3f'):>18} {_mmm(c('cpu_us_msg'), '%.1f'):>18} "
                  f"{int(min(c('samples'))):>7}  {statistics.median(c('conf_per_msg')):>8.4f}  "
                  f"{statistics.median(c('conf_bytes_per_msg')):>10.2f}")


if __name__ == "__main__":
    from bench._run import run

    run(main)
