"""City scale (issue 15): hubs as competing consumers of a three-node RabbitMQ cluster, against one hub on
mosquitto, end to end into InfluxDB; and a fleet of 100,000 board identities. Figures for docs/performance.md
and docs/scale.md.

    .venv/bin/python bench/cluster.py hubs                    # mosquitto, plain consumer, 1-3 hubs: 2-4 min
    .venv/bin/python bench/cluster.py hubs --messages 120000 --json hubs.json
    .venv/bin/python bench/cluster.py fleet                   # 100,000 identities, 10,000 msg/s for 120 s
    .venv/bin/python bench/cluster.py fleet --own 10000 --gateways 90 --per-gateway 1000 --seconds 120
    .venv/bin/python bench/cluster.py hubs --small            # the test suite's run (tests/bench)

Everything runs on 127.0.0.1 in one temporary folder (kept with --keep), secure as a site runs: a provisioning
store (hub.trust.provision) for site `city`; mosquitto with the store's TLS, passwords and ACL
(simulators.services.Mosquitto); the cluster with TLS-only MQTT and AMQP listeners and the store's users and
topic permissions (simulators.rabbitmq.RabbitCluster); one influxd (simulators.services.Influxd), one database
per run. Hubs run as `python -m hub hub run` with the store's hub logins (`main`, `h2`, `h3`).

`hubs`: the same burst (--messages, about 150-byte readings for --boards boards) from the load generator
(bench/loadgen.py: --connections TLS connections in --processes processes; each connection logs in as a
gateway, a hub identity `gwNN` of the store: a hub's role may write the whole site tree, which shared
connections need) into, one after the other:
1. mosquitto and one hub (`hub.confirm` off: the hubs on the cluster confirm nothing either);
2. the cluster and a plain consumer of the telemetry queue, the cluster's own client library in a process of
   its own (aio-pika over TLS as hub `main`: prefetch 2000, a `multiple` ack per 500, no spool, no InfluxDB):
   the cluster's delivery limit here;
3. the cluster and 1, 2 and 3 hubs, the queue deleted between runs (each hub declares it when it connects).
Each run is timed from the first publish to the moment InfluxDB holds every point (the consumer: every
message), polled every 0.25 s; then the points are counted per board against the PUBACKs. CPU is utime + stime
from /proc of each part (generator, broker nodes, hubs, influxd, the consumer) over the same span.

`fleet`: --own boards on their own TLS connections, each with its own board login (the store's, imported by
the cluster at boot: the time is measured, as is provisioning), and --gateways connections of --per-gateway
boards each, logged in as gateway hub identities. The gateways' boards are provisioned after the cluster
started: they need no broker login (the cluster imports none for them), only the hubs' known-device rule.
Every board sends a reading every --interval s for --seconds, at its own phase; --hubs hubs consume. Recorded
every 5 s: points stored, the queue's depth, RSS of every part; per second the PUBACKs. After the offering
the run waits until everything is stored, then counts per board. The nodes' memory per connection is their
RSS with the connections up minus before, over the connections.

Every process started here is stopped by its PID (also on Ctrl-C, through bench/_run.py).

Imports bench.loadgen, bench._run, simulators (rabbitmq, services) and of the hub only hub.trust (provision,
store, rabbit's client id rule); the hubs run as subprocesses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import resource
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import _run  # noqa: E402
from bench.loadgen import CTX, Conn, LoadSpec, paced_total, run_load  # noqa: E402
from hub.trust import provision  # noqa: E402
from hub.trust.rabbit import board_client_id  # noqa: E402
from hub.trust.store import TrustStore  # noqa: E402
from simulators.rabbitmq import RabbitCluster, rss_mb, tree_cpu  # noqa: E402
from simulators.services import Influxd, Mosquitto, toml_text  # noqa: E402

if TYPE_CHECKING:
    import multiprocessing
    from collections.abc import Callable, Iterator

    from aio_pika.abc import AbstractIncomingMessage

SITE = "city"
HUBS = ("main", "h2", "h3")
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
POLL = 0.25
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def board(k: int) -> str:
    return f"b{k:06d}"


def gateway(g: int) -> str:
    return f"gw{g:03d}"


# ------------------------------------------------------------------------------------------ the rig


class Rig:
    """The store, influxd, the brokers and the hubs of one benchmark, stopped by PID on exit."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.store: TrustStore | None = None
        self.influxd = Influxd(work / "influxd")
        self.started: list[Any] = []
        self.hubs: list[subprocess.Popen[bytes]] = []
        self.timings: dict[str, float] = {}

    def provision(self, boards: int, gateways: int) -> TrustStore:
        t0 = time.monotonic()
        root = self.work / "store"
        provision.init_store(root, SITE)
        for name in [*HUBS[1:], *(gateway(g) for g in range(gateways))]:  # each rewrites the broker's files
            provision.add_hub(root, name)
        t1 = time.monotonic()
        provision.add_boards(root, [board(k) for k in range(boards)])
        self.timings["provision_boards_s"] = time.monotonic() - t1
        self.timings["provision_s"] = time.monotonic() - t0
        self.store = TrustStore.load(root)
        return self.store

    def add_boards(self, first: int, count: int) -> TrustStore:
        """Boards first..first+count-1 into the store (after the cluster imported its users: boards behind
        gateways need no broker login, only the hubs' known-device rule)."""
        assert self.store is not None
        t0 = time.monotonic()
        provision.add_boards(self.store.root, [board(k) for k in range(first, first + count)])
        self.timings["provision_shared_boards_s"] = time.monotonic() - t0
        self.store = TrustStore.load(self.store.root)
        return self.store

    def start_influxd(self) -> None:
        self.influxd.start()
        self.started.append(self.influxd)

    def start_cluster(self) -> RabbitCluster:
        cluster = RabbitCluster(self.work / "cluster", store=self.store)
        self.started.append(cluster)
        cluster.start()
        self.timings |= {f"cluster_{k}": v for k, v in cluster.timings.items()}
        return cluster

    def start_mosquitto(self) -> Mosquitto:
        assert self.store is not None
        broker = Mosquitto(self.work / "mosquitto", store=self.store.root)
        self.started.append(broker)
        broker.start()
        return broker

    def hub_config(self, name: str, database: str, broker: dict[str, Any]) -> Path:
        assert self.store is not None
        folder = self.work / "hubs" / f"{database}-{name}"
        folder.mkdir(parents=True)
        tables: dict[str, dict[str, Any]] = {
            "site": {"id": SITE},
            "trust": {"store": str(self.store.root), "hub": name},
            **broker,
            "influxdb": {"api": "v1", "url": self.influxd.url, "database": database},
            "spool": {"path": str(folder / "state")},
            "batch": {"size": 5000, "flush_interval": 0.2},
            "metrics": {"interval": 10.0},
        }
        path = folder / "hub.toml"
        path.write_text(toml_text(tables, f"# bench/cluster.py: hub {name}, database {database}"))
        return path

    def start_hub(self, config: Path, ready: str) -> subprocess.Popen[bytes]:
        """A hub subprocess; returns once its log shows `ready` (RuntimeError with the log's tail if it dies)."""
        log = config.with_name("hub.log")
        with log.open("ab") as out:
            process = subprocess.Popen(
                [PYTHON, "-m", "hub", "hub", "run", "--config", str(config)], cwd=REPO, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=os.environ | {"PYTHONPATH": str(REPO)})
        self.hubs.append(process)
        deadline = time.monotonic() + 120
        while ready not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hub {config} not ready:\n" + log.read_text(errors="replace")[-3000:])
            time.sleep(0.1)
        return process

    def stop_hubs(self) -> None:
        for process in self.hubs:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.hubs:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.hubs.clear()

    def stop(self, what: Any) -> None:
        what.stop()
        if what in self.started:
            self.started.remove(what)

    def close(self) -> None:
        self.stop_hubs()
        for service in reversed(self.started):
            with contextlib.suppress(Exception):
                service.stop()
        self.started.clear()

    def query(self, database: str, q: str, timeout: float = 600.0) -> list[dict[str, Any]]:
        """The series of an InfluxQL query (a count over 100,000 series takes longer than Influxd's 10 s)."""
        url = f"{self.influxd.url}/query?" + urllib.parse.urlencode({"db": database, "q": q})
        with _opener.open(url, timeout=timeout) as response:
            result = json.loads(response.read())["results"][0]
        if "error" in result:
            raise RuntimeError(f"{q}: {result['error']}")
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    def stored(self, database: str) -> int:
        series = self.query(database, "SELECT count(pm25) FROM air")
        return int(series[0]["values"][0][1]) if series else 0

    def stored_per_board(self, database: str) -> dict[str, int]:
        series = self.query(database, 'SELECT count(pm25) FROM air GROUP BY "device"')
        return {s["tags"]["device"]: int(s["values"][0][1]) for s in series}

    def written(self, database: str) -> int:
        """Points the hubs wrote, by their last self-metrics (`qala_hub`, every 10 s): cheap to ask."""
        try:
            series = self.query(database, 'SELECT last("points_written") FROM "qala_hub" GROUP BY "device"', 30)
        except (OSError, RuntimeError):
            return -1
        return sum(int(s["values"][0][1]) for s in series)


@contextlib.contextmanager
def rig(keep: bool) -> Iterator[Rig]:
    work = Path(tempfile.mkdtemp(prefix="qala-cluster-bench-"))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the nodes inherit it: a connection is a file
    r = Rig(work)
    try:
        yield r
    finally:
        r.close()
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------ CPU


class Parts:
    """CPU seconds of named process trees between two readings."""

    def __init__(self, parts: dict[str, list[int]]) -> None:
        self.parts = parts
        self.first = self.now()

    def now(self) -> dict[str, float]:
        return {name: tree_cpu(pids) for name, pids in self.parts.items()}

    def since(self, then: dict[str, float] | None = None) -> dict[str, float]:
        base = self.first if then is None else then
        return {name: cpu - base[name] for name, cpu in self.now().items()}

    def rss(self) -> dict[str, float]:
        return {name: sum(rss_mb(pid) for pid in pids) for name, pids in self.parts.items()}


# ------------------------------------------------------------------------------------------ consumer


def consumer_main(port: int, ca_file: str, login: tuple[str, str], queue_name: str, expect: int,
                  results: multiprocessing.Queue[Any]) -> None:
    """The plain consumer: aio-pika over TLS, prefetch 2000, one `multiple` ack per 500 (and when idle)."""
    try:
        results.put(("done", asyncio.run(_consume(port, ca_file, login, queue_name, expect, results))))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the run
        results.put(("error", repr(exc)))


async def _consume(port: int, ca_file: str, login: tuple[str, str], queue_name: str, expect: int,
                   results: multiprocessing.Queue[Any]) -> dict[str, Any]:
    import aio_pika  # noqa: PLC0415 - only this process needs it

    context = ssl.create_default_context(cafile=ca_file)
    connection = await aio_pika.connect(host="127.0.0.1", port=port, login=login[0], password=login[1], ssl=True,
                                        ssl_context=context)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=2000)
        q = await channel.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
        await q.bind("amq.topic", routing_key=f"qala.{SITE}.*.telemetry")
        seen: dict[str, int] = {}
        unacked: list[AbstractIncomingMessage] = []
        done = asyncio.Event()
        count = 0
        last = time.monotonic()

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal count, last
            device = (message.routing_key or "").split(".")[2]
            seen[device] = seen.get(device, 0) + 1
            count += 1
            last = time.monotonic()
            unacked.append(message)
            if len(unacked) >= 500:
                tail = unacked[-1]
                unacked.clear()
                await tail.ack(multiple=True)
            if count >= expect:
                done.set()

        tag = await q.consume(on_message)
        results.put(("ready", None))
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.05)
            if unacked and time.monotonic() - last > 0.05:
                tail = unacked[-1]
                unacked.clear()
                await tail.ack(multiple=True)
        if unacked:
            await unacked[-1].ack(multiple=True)
        await q.cancel(tag)
        await q.delete(if_unused=False, if_empty=False)
        return {"t_done": last, "count": count, "per_board": seen}


# ------------------------------------------------------------------------------------------ hubs


def gateway_conns(store: TrustStore, boards: int, connections: int, ports: list[int], first_board: int = 0,
                  first_gateway: int = 0) -> list[Conn]:
    """`connections` gateway connections sharing `boards` boards (from `first_board` on), spread over `ports`;
    the client id is the user."""
    conns = []
    for c in range(connections):
        user, password = store.hub(gateway(first_gateway + c))
        ks = tuple(range(first_board + c, first_board + boards, connections))
        conns.append(Conn(user, user, password, ports[c % len(ports)], ks))
    return conns


def burst(r: Rig, opts: argparse.Namespace, ports: list[int], parts: dict[str, list[int]], database: str,
          *, done: Callable[[], int] | None = None, per_board: Callable[[], dict[str, int]] | None = None,
          ) -> dict[str, Any]:
    """One burst end to end: the generator's connections up, go, until `done()` (default: points stored in
    `database`) reaches the burst; CPU per part; per board, what `per_board()` counted (default: points stored)
    against the PUBACKs."""
    assert r.store is not None
    total = opts.messages
    conns = gateway_conns(r.store, opts.boards, opts.connections, ports)
    spec = LoadSpec(SITE, [board(k) for k in range(opts.boards)], conns, ca_file=str(r.store.ca_file),
                    processes=opts.processes, messages=total // opts.connections, window=opts.window)
    total = spec.messages * opts.connections
    count = done or (lambda: r.stored(database))
    load = run_load(spec)
    try:
        cpu = Parts({"generator": load.pids(), **parts})
        t_go = load.go()
        deadline = t_go + opts.limit
        n = 0
        while n < total and time.monotonic() < deadline:
            time.sleep(POLL)
            n = count()
        t_done = time.monotonic()
        used = cpu.since()
        rss = cpu.rss()
        gen = load.finish(60)
    finally:
        load.stop()
    seconds = t_done - t_go
    out: dict[str, Any] = {"messages": total, "stored": n, "seconds": round(seconds, 2),
                           "msg_s": round(n / seconds), "acked": sum(gen["acked"]), "errors": gen["errors"],
                           "publish_s": round(gen["last_ack"] - t_go, 2), "rss_mb": rss}
    used["generator"] = gen["cpu"]  # its processes have exited: their own count
    out["cpu_us_msg"] = {name: round(s / max(n, 1) * 1e6, 1) for name, s in used.items()}
    out["cores"] = {name: round(s / seconds, 2) for name, s in used.items()}
    return out | check_boards(per_board() if per_board else r.stored_per_board(database), gen)


def check_boards(counted: dict[str, int], gen: dict[str, Any]) -> dict[str, Any]:
    """Per board: what arrived against PUBACKed messages (lost: acked but not counted)."""
    lost = short = 0
    for k, acked in enumerate(gen["acked"]):
        got = counted.get(board(k), 0)
        if got < acked:
            lost += acked - got
            short += 1
    return {"lost": lost, "boards_short": short, "boards_stored": len(counted),
            "unacked": sum(gen["sent"]) - sum(gen["acked"])}


def run_hubs(opts: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"load_before": os.getloadavg(), "options": vars(opts)}
    with rig(opts.keep) as r:
        r.provision(opts.boards, opts.connections)
        r.start_influxd()
        parts = {"influxd": [r.influxd.pid or 0]}
        # 1. mosquitto and one hub
        broker = r.start_mosquitto()
        r.influxd.create_database("mosquitto")
        hub = r.start_hub(r.hub_config("main", "mosquitto", {
            "mqtt": {"host": broker.host, "port": broker.port}, "hub": {"confirm": False}}), "mqtt: subscribed")
        results["mosquitto_1hub"] = burst(r, opts, [broker.port], {"broker": [broker.pid or 0], "hubs": [hub.pid],
                                                                    **parts}, "mosquitto")
        r.stop_hubs()
        r.stop(broker)
        # 2. the cluster and its plain consumer
        cluster = r.start_cluster()
        results["timings"] = r.timings
        ports = [n.mqtt_port for n in cluster.nodes]
        nodes = {"broker": cluster.pids()}
        results["consumer"] = plain_consumer(r, opts, cluster, ports, nodes)
        # 3. 1..3 hubs
        for hubs in range(1, opts.hubs + 1):
            database = f"hubs{hubs}"
            r.influxd.create_database(database)
            procs = []
            for i in range(hubs):
                nodes_list = [f"127.0.0.1:{n.amqp_port}" for n in cluster.nodes]
                config = r.hub_config(HUBS[i], database, {"cluster": {"nodes": nodes_list[i:] + nodes_list[:i]}})
                procs.append(r.start_hub(config, "cluster: connected node="))
            results[f"cluster_{hubs}hub"] = burst(r, opts, ports, {**nodes, "hubs": [p.pid for p in procs],
                                                                   **parts}, database)
            r.stop_hubs()
            with contextlib.suppress(Exception):
                cluster.ctl("delete_queue", f"qala.{SITE}.telemetry")
        results["load_after"] = os.getloadavg()
    return results


def plain_consumer(r: Rig, opts: argparse.Namespace, cluster: RabbitCluster, ports: list[int],
                   nodes: dict[str, list[int]]) -> dict[str, Any]:
    assert r.store is not None
    results: multiprocessing.Queue[Any] = CTX.Queue()
    total = opts.messages // opts.connections * opts.connections
    proc = CTX.Process(target=consumer_main, args=(
        cluster.nodes[0].amqp_port, str(r.store.ca_file), r.store.hub("main"), f"qala.{SITE}.telemetry", total,
        results), daemon=True)
    proc.start()
    got: dict[str, Any] = {}

    def take(block: float) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                kind, value = results.get(timeout=block)
                if kind == "error":
                    raise RuntimeError(f"consumer: {value}")
                got[kind] = value
                block = 0.0

    try:
        take(60)
        if "ready" not in got:
            raise RuntimeError("consumer: not ready within 60 s")

        def done() -> int:
            take(0)
            return total if "done" in got else 0

        return burst(r, opts, ports, {**nodes, "consumer": [proc.pid or 0]}, "", done=done,
                     per_board=lambda: got.get("done", {}).get("per_board", {}))
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()


# ------------------------------------------------------------------------------------------ fleet


def queue_depth(cluster: RabbitCluster) -> int:
    """Messages in the telemetry queue (rabbitmqctl: a passive declare's count leaves out the unacknowledged)."""
    try:
        return int(cluster.queue_info(f"qala.{SITE}.telemetry")["messages"])
    except Exception:  # noqa: BLE001 - a sample missed, not a failed run
        return -1


def fleet_conns(store: TrustStore, opts: argparse.Namespace, ports: list[int]) -> list[Conn]:
    """--own boards on connections of their own (board logins), then the gateways' shares."""
    conns = []
    for k in range(opts.own):
        identity = store.board(board(k))
        assert identity is not None
        conns.append(Conn(board_client_id(SITE, identity.device), identity.user, identity.password,
                          ports[k % len(ports)], (k,)))
    shared = opts.gateways * opts.per_gateway
    conns += gateway_conns(store, shared, opts.gateways, ports, first_board=opts.own)
    return conns


def run_fleet(opts: argparse.Namespace) -> dict[str, Any]:
    boards = opts.own + opts.gateways * opts.per_gateway
    results: dict[str, Any] = {"load_before": os.getloadavg(), "options": vars(opts), "boards": boards}
    with rig(opts.keep) as r:
        r.provision(opts.own, opts.gateways)
        print(f"provisioned {opts.own} boards in {r.timings['provision_s']:.1f} s", flush=True)
        r.start_influxd()
        r.influxd.create_database("fleet")
        cluster = r.start_cluster()
        print(f"cluster up with their users in {cluster.timings['total_s']:.1f} s", flush=True)
        store = r.add_boards(opts.own, boards - opts.own)
        print(f"provisioned {boards - opts.own} more in {r.timings['provision_shared_boards_s']:.1f} s", flush=True)
        ports = [n.mqtt_port for n in cluster.nodes]
        amqp = [f"127.0.0.1:{n.amqp_port}" for n in cluster.nodes]
        hubs = [r.start_hub(r.hub_config(HUBS[i], "fleet", {"cluster": {"nodes": amqp[i:] + amqp[:i]}}),
                            "cluster: connected node=") for i in range(opts.hubs)]
        parts = Parts({"broker": cluster.pids(), "hubs": [h.pid for h in hubs], "influxd": [r.influxd.pid or 0]})
        rss_idle = parts.rss()
        spec = LoadSpec(SITE, [board(k) for k in range(boards)], fleet_conns(store, opts, ports),
                        ca_file=str(store.ca_file), processes=opts.processes, interval=opts.interval,
                        duration=opts.seconds, grace=opts.limit)
        t0 = time.monotonic()
        cpu_connect = parts.now()
        load = run_load(spec, timeout=opts.limit)
        try:
            results["connect_s"] = round(time.monotonic() - t0, 1)
            results["connections"] = len(spec.conns)
            results["connect_cpu_s"] = {k: round(v, 1) for k, v in parts.since(cpu_connect).items()}
            time.sleep(5)  # let the nodes settle before the memory reading
            rss_up = parts.rss()
            results["rss_idle_mb"], results["rss_connected_mb"] = rss_idle, rss_up
            results["broker_kb_per_connection"] = round((rss_up["broker"] - rss_idle["broker"]) * 1024
                                                        / len(spec.conns), 1)
            print(f"{len(spec.conns)} connections up in {results['connect_s']} s; RSS MB idle {rss_idle}, "
                  f"connected {rss_up}; broker KB per connection {results['broker_kb_per_connection']}", flush=True)
            gen_pids = load.pids()
            parts.parts["generator"] = gen_pids
            cpu_go = parts.now()
            t_go = load.go()
            samples: list[dict[str, Any]] = []
            stored = 0
            expect = paced_total(boards, opts.interval, opts.seconds)
            while stored < expect and time.monotonic() < t_go + opts.seconds + opts.limit:
                time.sleep(opts.sample)
                t = time.monotonic() - t_go
                stored = r.written("fleet")
                sample = {"t": round(t, 1), "written": stored, "queue": queue_depth(cluster),
                          "rss_mb": {k: round(v) for k, v in parts.rss().items()}}
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                if t > opts.seconds and "cpu_offer_s" not in results:
                    results["cpu_offer_s"] = {k: round(v, 1) for k, v in parts.since(cpu_go).items()}
                    results["stored_at_offer_end"] = stored
                    cpu_go = parts.now()
            gen = load.finish(60)
        finally:
            load.stop()
        t_done = time.monotonic()
        total = sum(gen["acked"])
        stored = r.stored("fleet")
        while stored < total and time.monotonic() < t_done + 120:
            time.sleep(5)
            stored = r.stored("fleet")
        t_done = time.monotonic()
        results["cpu_drain_s"] = {k: round(v, 1) for k, v in parts.since(cpu_go).items() if k != "generator"}
        results["generator_cpu_s"] = round(gen["cpu"], 1)
        results |= {"samples": samples, "sent": sum(gen["sent"]), "acked": total, "stored": stored,
                    "errors": gen["errors"], "offered_msg_s": round(sum(gen["sent"]) / opts.seconds),
                    "acked_per_s": gen["per_s"], "seconds_to_all_stored": round(t_done - t_go, 1),
                    "drain_s": round(t_done - t_go - opts.seconds, 1),
                    "backlog_peak": max((s["queue"] for s in samples), default=0),
                    "stored_msg_s": round(stored / (t_done - t_go))}
        results |= check_boards(r.stored_per_board("fleet"), gen)
        results["timings"] = r.timings
        results["load_after"] = os.getloadavg()
    return results


# ------------------------------------------------------------------------------------------ output


def table(results: dict[str, Any]) -> str:
    runs = [(k, v) for k, v in results.items() if isinstance(v, dict) and "msg_s" in v]
    names = sorted({p for _, v in runs for p in v["cpu_us_msg"]})
    lines = ["| | " + " | ".join(k for k, _ in runs) + " |", "|---" * (len(runs) + 1) + "|"]

    def row(label: str, cell: Callable[[dict[str, Any]], object]) -> None:
        lines.append(f"| {label} | " + " | ".join(str(cell(v)) for _, v in runs) + " |")

    row("stored (or consumed) msg/s", lambda v: f"{v['msg_s']:,}")
    row("messages / stored / lost", lambda v: f"{v['messages']:,} / {v['stored']:,} / {v.get('lost', '?')}")
    row("seconds, first publish to last stored", lambda v: v["seconds"])
    row("all PUBACKed after, s", lambda v: v["publish_s"])
    for name in names:
        row(f"CPU per message, {name}, us", lambda v, n=name: v["cpu_us_msg"].get(n, ""))  # type: ignore[misc]
        row(f"cores, {name}", lambda v, n=name: v["cores"].get(n, ""))  # type: ignore[misc]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("hubs", "fleet"))
    parser.add_argument("--messages", type=int, default=90_000, help="hubs: messages per run (default 90000)")
    parser.add_argument("--boards", type=int, default=1000, help="hubs: boards (default 1000)")
    parser.add_argument("--connections", type=int, default=24, help="hubs: gateway connections (default 24)")
    parser.add_argument("--processes", type=int, default=4, help="load generator processes (default 4)")
    parser.add_argument("--window", type=int, default=1000, help="unacknowledged messages per connection")
    parser.add_argument("--hubs", type=int, default=3, help="hubs: up to this many hubs on the cluster")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds before a run counts as failed")
    parser.add_argument("--own", type=int, default=10_000, help="fleet: boards on connections of their own")
    parser.add_argument("--gateways", type=int, default=90, help="fleet: gateway connections (default 90)")
    parser.add_argument("--per-gateway", type=int, default=1000, help="fleet: boards per gateway (default 1000)")
    parser.add_argument("--interval", type=float, default=10.0, help="fleet: seconds between a board's readings")
    parser.add_argument("--seconds", type=float, default=120.0, help="fleet: seconds of offering (default 120)")
    parser.add_argument("--sample", type=float, default=10.0, help="fleet: seconds between samples (default 10)")
    parser.add_argument("--small", action="store_true", help="a tiny run for the test suite")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    parser.add_argument("--json", type=Path, help="write the results here")
    opts = parser.parse_args()
    if opts.small:
        opts.messages, opts.boards, opts.connections, opts.processes, opts.hubs = 2000, 40, 4, 2, 2
    print(f"load average before: {os.getloadavg()}", flush=True)
    results = run_hubs(opts) if opts.what == "hubs" else run_fleet(opts)
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=2, default=str))
    if opts.what == "hubs":
        print(table(results))
    else:
        print(json.dumps({k: v for k, v in results.items() if k not in ("samples", "acked_per_s", "options")},
                         indent=1, default=str))
    print(f"load average after: {os.getloadavg()}")
    failed = [k for k, v in results.items() if isinstance(v, dict) and "msg_s" in v
              and (v.get("lost") or v["errors"] or v["stored"] < v["messages"])]
    if failed:
        print(f"FAILED: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    _run.run(main)
