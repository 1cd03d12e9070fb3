"""A RabbitMQ cluster on this machine (issue 15): three nodes of Debian's rabbitmq-server 3.10 with the MQTT
plugin, for the tests (tests/_plugins/cluster.py), the benchmark (bench/engines.py) and a future `qala cluster`.

Owns starting an epmd of its own and the nodes, joining them, stopping, killing and restarting nodes by PID,
rabbitmqctl on a running node, and what the queues and the processes look like (leader, depth, CPU, memory).

Secure by default when given a provisioning store, like simulators/services.py's Mosquitto: TLS-only MQTT and
AMQP listeners with the store's broker certificate (`ssl_options`), no plain listener, no anonymous MQTT
clients, the store's users and permissions (hub.trust.rabbit) imported at every boot from
`<workdir>/definitions.json` (`definitions.local.path`), and no guest user. `store=None` is the plain mode
of a lab bench (anonymous MQTT, guest over AMQP on loopback, plain TCP listeners), and says so in a WARNING.

    cluster = RabbitCluster(workdir, store=store)
    cluster.start()                       # about 20 s on two cores
    cluster.nodes[0].mqtt_port, cluster.nodes[0].amqp_port, cluster.nodes[0].nodename
    cluster.kill(1); cluster.restart(1)   # SIGKILL, then the same node on its data: it rejoins by itself
    cluster.leader("qala.telemetry"), cluster.queue_info("qala.telemetry")
    cluster.reload_definitions(store)     # after `qala provision board ...`
    cluster.stop()

Facts about Debian 12's package, found here (docs/scale.md, "For the tests"):
- `/usr/lib/rabbitmq/bin/rabbitmq-server` with RUNNING_UNDER_SYSTEMD=true execs erl, so the PID we hold is
  beam.smp's (`/usr/sbin`'s wrapper switches to the rabbitmq user and keeps a shell in between).
- Installing the package may leave an `epmd -daemon` on 0.0.0.0:4369; this module never uses it: its epmd
  listens on 127.0.0.1 on a free port (ERL_EPMD_PORT), and every node and rabbitmqctl share a HOME of the
  cluster's own with one Erlang cookie.
- Three Erlang VMs share two cores: `+sbwt none` (and dcpu, dio) stops their schedulers busy-waiting.
- Importing definitions adds and updates users but never deletes one: reload_definitions deletes the users the
  new definitions no longer name (revoked boards).

Imports the standard library, simulators.services (Service, free_port, the errors) and hub.trust.provision
(write_rabbitmq: the store's policy as definitions, hub.trust.rabbit); knows nothing of the hub's service or of
MQTT clients. Logs with `logging`; every node writes its output to `<workdir>/rabbitN/rabbitmq-server.log` and
its own log to `<workdir>/rabbitN/log/`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.trust.provision import write_rabbitmq
from simulators.services import Service, ServiceError, free_port

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.trust.store import TrustStore

__all__ = ["Epmd", "RabbitCluster", "RabbitNode", "port_open", "rss_mb", "run_parallel", "tree_cpu", "wait_for"]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
RABBIT_LIB = Path("/usr/lib/rabbitmq/bin")
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFINITIONS = "definitions.json"


# ------------------------------------------------------------------------------------------ processes


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, CPU seconds) of every process now."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return table


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds of the processes `roots` and all their descendants (beam.smp has helper children)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, list(roots)
    while todo:
        pid = todo.pop()
        if pid in table:
            total += table[pid][1]
            todo.extend(children.get(pid, []))
    return total


def rss_mb(pid: int) -> float:
    """The resident memory of one process in MB (0 if it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def port_open(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll check() until it is true; ServiceError naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise ServiceError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


def run_parallel(calls: list[Callable[[], object]]) -> None:
    """Run the calls in threads, wait for all, and raise the first exception any of them raised."""
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# ------------------------------------------------------------------------------------------ servers


class Epmd:
    """Erlang's port mapper on a port of our own, in the foreground, so that we own its PID and stop it."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (ServiceError if it does not listen within 10 s)."""
        with (self.workdir / "epmd.log").open("ab") as out:
            self.process = subprocess.Popen(["epmd", "-port", str(self.port), "-address", HOST],  # noqa: S603, S607 - our argv
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: port_open(self.port), 10, f"epmd on {HOST}:{self.port} (log: {self.workdir / 'epmd.log'})")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class RabbitNode(Service):
    """One RabbitMQ node; `port` is its MQTT listener (TLS with a store). Run through the script that execs
    erl, so the PID we hold is beam.smp's (RUNNING_UNDER_SYSTEMD makes the script exec instead of waiting on a
    child). With a `tls` of (cacertfile, certfile, keyfile) and a `definitions` file, the node is secure."""

    name = "rabbitmq-server"
    package = "rabbitmq-server"
    search_dirs = (str(RABBIT_LIB),)

    def __init__(self, workdir: Path, index: int, home: Path, epmd: Epmd, *,
                 tls: tuple[Path, Path, Path] | None = None, definitions: Path | None = None) -> None:
        super().__init__(workdir, binary=str(RABBIT_LIB / "rabbitmq-server"), start_timeout=90)
        if (tls is None) != (definitions is None):
            raise ValueError("RabbitNode: tls= and definitions= go together (a secure node) or not at all (plain)")
        self.index = index
        self.nodename = f"rabbit{index + 1}@localhost"
        self.amqp_port = free_port()
        self.dist_port = free_port()
        self.home = home
        self.epmd = epmd
        self.tls = tls
        self.definitions = definitions

    @property
    def mqtt_port(self) -> int:
        """The MQTT listener (mqtts with a store)."""
        return self.port

    @property
    def node_log(self) -> Path:
        """The node's own log, where boot failures are explained."""
        return self.workdir / "log" / f"{self.nodename}.log"

    def env(self) -> dict[str, str]:
        """The environment of the node and of rabbitmqctl aimed at it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update({
            "HOME": str(self.home),  # .erlang.cookie, shared by the nodes and rabbitmqctl
            "ERL_EPMD_PORT": str(self.epmd.port),
            "ERL_EPMD_ADDRESS": HOST,
            "ERL_CRASH_DUMP": str(self.workdir / "erl_crash.dump"),  # not in the caller's folder
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.workdir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.workdir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_PID_FILE": str(self.workdir / "rabbit.pid"),
            # distribution on loopback only; no scheduler busy-waiting: three VMs share two cores
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none",
            "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "RUNNING_UNDER_SYSTEMD": "true",
        })
        if self.tls is None:  # the plain AMQP listener; a secure node has none
            env.update({"RABBITMQ_NODE_IP_ADDRESS": HOST, "RABBITMQ_NODE_PORT": str(self.amqp_port)})
        return env

    def _environment(self) -> dict[str, str]:
        return self.env()

    def config_lines(self) -> list[str]:
        """rabbitmq.conf: listeners, MQTT, TLS and definitions (secure) or anonymous access (plain)."""
        common = ["mqtt.vhost = /", "mqtt.exchange = amq.topic", "cluster_partition_handling = pause_minority",
                  "log.file.level = info", "log.console = false"]
        if self.tls is None or self.definitions is None:
            return [f"listeners.tcp.default = {HOST}:{self.amqp_port}",
                    f"mqtt.listeners.tcp.default = {HOST}:{self.port}",
                    "mqtt.allow_anonymous = true", "loopback_users = none", *common]
        cacert, cert, key = self.tls
        return ["listeners.tcp = none", f"listeners.ssl.default = {HOST}:{self.amqp_port}",
                "mqtt.listeners.tcp = none", f"mqtt.listeners.ssl.default = {HOST}:{self.port}",
                f"ssl_options.cacertfile = {cacert}", f"ssl_options.certfile = {cert}",
                f"ssl_options.keyfile = {key}", "ssl_options.verify = verify_none",
                "ssl_options.fail_if_no_peer_cert = false", "ssl_options.versions.1 = tlsv1.3",
                "ssl_options.versions.2 = tlsv1.2", "mqtt.allow_anonymous = false",
                "definitions.import_backend = local_filesystem", f"definitions.local.path = {self.definitions}",
                *common]

    def _prepare(self, executable: str) -> list[str]:
        (self.workdir / "rabbitmq.conf").write_text("\n".join(self.config_lines()) + "\n")
        (self.workdir / "rabbitmq-env.conf").write_text("")
        (self.workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        return [executable]

    def _ready(self) -> bool:
        return port_open(self.port)

    def _failure(self, what: str) -> str:
        return f"{super()._failure(what)}\nthe node's own log: {self.node_log}"

    def ctl(self, *argv: str, timeout: float = 120) -> str:
        """rabbitmqctl -n this node; its standard output, ServiceError with its message if it fails."""
        done = subprocess.run([str(RABBIT_LIB / "rabbitmqctl"), "-q", "-n", self.nodename, *argv],  # noqa: S603
                              env=self.env(), capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode:
            raise ServiceError(f"rabbitmqctl {' '.join(argv)} on {self.nodename}: {done.stderr or done.stdout} "
                               f"(node log: {self.node_log})")
        return done.stdout


class RabbitCluster:
    """`nodes` RabbitMQ nodes joined into one cluster, all on 127.0.0.1 (see the module docstring)."""

    def __init__(self, workdir: Path, *, store: TrustStore | None = None, nodes: int = 3) -> None:
        """Prepare the cluster in workdir (created): a HOME with the Erlang cookie, an epmd, `nodes` nodes in
        workdir/rabbitN. With store: TLS with its broker certificate and its users (hub.trust.rabbit)."""
        if nodes < 1:
            raise ValueError(f"nodes: must be at least 1, got {nodes}")
        self.workdir = Path(workdir).absolute()
        self.store = store
        self.timings: dict[str, float] = {}
        self.home = self.workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16).upper())
            cookie.chmod(0o400)
        self.epmd = Epmd(self.workdir)
        tls = None if store is None else (store.ca_file, store.broker_cert, store.broker_key)
        path = None if store is None else self.definitions_path
        self.nodes = [RabbitNode(self.workdir / f"rabbit{i + 1}", i, self.home, self.epmd, tls=tls, definitions=path)
                      for i in range(nodes)]

    def __repr__(self) -> str:
        mode = "plain" if self.store is None else f"site {self.store.site}"
        return f"<RabbitCluster {mode} nodes={[n.nodename for n in self.nodes]} workdir={self.workdir}>"

    @property
    def definitions_path(self) -> Path:
        """The definitions every secure node imports at boot (mode 600: it holds password hashes)."""
        return self.workdir / DEFINITIONS

    def _write_definitions(self, store: TrustStore) -> set[str]:
        """Write the store's definitions to definitions_path; the users they name."""
        return {user["name"] for user in write_rabbitmq(store, self.definitions_path)["users"]}

    def start(self) -> None:
        """Start epmd and the nodes (in parallel), join them to the first, check they all run. On failure
        everything started is stopped and the error names the log to read."""
        if self.store is None:
            log.warning("rabbitmq cluster %s: PLAIN mode: anonymous MQTT, guest over AMQP, no TLS; for a lab "
                        "bench only (give store= for the site's secure cluster)", self.workdir)
        users = None if self.store is None else self._write_definitions(self.store)
        t0 = time.monotonic()
        self.epmd.start()
        try:
            run_parallel([n.start for n in self.nodes])
            self.timings["nodes_booted_s"] = time.monotonic() - t0
            t1 = time.monotonic()
            for node in self.nodes[1:]:  # one at a time: parallel joins race in mnesia's schema merge
                self._join(node)
            self.timings["joined_s"] = time.monotonic() - t1
            self._check_running(len(self.nodes))
            if users is not None:  # a store's definitions were imported at boot; guest never made
                self._drop_users(keep=users)
        except BaseException:
            self.stop()
            raise
        self.timings["total_s"] = time.monotonic() - t0
        log.info("rabbitmq cluster up in %.1f s: %s", self.timings["total_s"], self)

    def _join(self, node: RabbitNode) -> None:
        node.ctl("stop_app")
        node.ctl("join_cluster", self.nodes[0].nodename)
        try:
            node.ctl("start_app")
        except ServiceError as exc:  # a loaded machine: mnesia may time out syncing the schema; once more
            log.warning("rabbitmq: %s; starting it once more", exc)
            time.sleep(2)
            node.ctl("start_app")
        wait_for(lambda: port_open(node.port), 60, f"{node.nodename} MQTT after join (log: {node.node_log})")

    def running_nodes(self) -> list[str]:
        """The node names the cluster reports running, asked of a running node."""
        status = json.loads(self.ctl("cluster_status", "--formatter", "json"))
        running: list[str] = status.get("running_nodes", [])
        return running

    def _check_running(self, want: int) -> None:
        running = self.running_nodes()
        if len(running) != want:
            raise ServiceError(f"rabbitmq cluster: {len(running)} of {want} nodes running ({running}); "
                               f"see the logs under {self.workdir}/rabbit*/log/")

    def stop(self) -> None:
        """SIGTERM every node (SIGKILL after 30 s), then epmd."""
        try:
            run_parallel([n.stop for n in self.nodes])
        finally:
            self.epmd.stop()

    def kill(self, index: int) -> None:
        """SIGKILL node `index` (a crash) and reap it."""
        self.nodes[index].kill()

    def restart(self, index: int, timeout: float = 90) -> None:
        """Start a stopped or killed node again on its ports and data; it rejoins the cluster by itself (the
        cluster reports it running within timeout seconds, else ServiceError)."""
        node = self.nodes[index]
        node.stop()
        node.start()
        wait_for(lambda: node.nodename in self._running_quietly(), timeout,
                 f"{node.nodename} back in the cluster (log: {node.node_log})")

    def _running_quietly(self) -> list[str]:
        try:
            return self.running_nodes()
        except ServiceError:
            return []

    def ctl(self, *argv: str, timeout: float = 120) -> str:
        """rabbitmqctl on the first running node."""
        node = next((n for n in self.nodes if n.running), None)
        if node is None:
            raise ServiceError(f"{self!r}: no node is running")
        return node.ctl(*argv, timeout=timeout)

    def _queue_row(self, queue: str, *columns: str) -> dict[str, Any]:
        rows = json.loads(self.ctl("list_queues", "name", *columns, "--formatter", "json"))
        row = next((r for r in rows if r["name"] == queue), None)
        if row is None:
            raise ServiceError(f"queue {queue!r}: not declared (have: {', '.join(r['name'] for r in rows) or 'none'})")
        return dict(row)

    def index_of(self, nodename: str) -> int:
        """The index of a node by name (`rabbit2@localhost` -> 1)."""
        for i, node in enumerate(self.nodes):
            if node.nodename == nodename:
                return i
        raise ServiceError(f"node {nodename!r}: not one of {[n.nodename for n in self.nodes]}")

    def leader(self, queue: str) -> int:
        """The index of the node leading a quorum queue."""
        return self.index_of(self._queue_row(queue, "leader")["leader"])

    def queue_info(self, queue: str) -> dict[str, Any]:
        """{messages, ready, unacked, consumers, leader (node name), online, members (node names)} of a queue."""
        row = self._queue_row(queue, "messages", "messages_ready", "messages_unacknowledged", "consumers",
                              "leader", "online", "members")
        return {"messages": row["messages"], "ready": row["messages_ready"],
                "unacked": row["messages_unacknowledged"], "consumers": row["consumers"],
                "leader": row.get("leader"), "online": row.get("online", []), "members": row.get("members", [])}

    def reload_definitions(self, store: TrustStore) -> None:
        """Write the store's definitions again, import them into the running cluster and delete the users they
        no longer name (revoked boards); nodes started later import the same file."""
        self.store = store
        users = self._write_definitions(store)
        self.ctl("import_definitions", str(self.definitions_path))
        self._drop_users(keep=users)

    def _drop_users(self, keep: set[str]) -> None:
        users = json.loads(self.ctl("list_users", "--formatter", "json"))
        for user in users:
            if user["user"] not in keep:
                self.ctl("delete_user", user["user"])
                log.info("rabbitmq cluster: deleted user %s (not in the store's definitions)", user["user"])

    def pids(self) -> list[int]:
        """The PIDs of the running nodes (beam.smp)."""
        return [n.pid for n in self.nodes if n.running and n.pid is not None]

    def cpu(self) -> float:
        """CPU seconds the running nodes (and their helper processes) used so far."""
        return tree_cpu(self.pids())

    def rss_mb(self) -> float:
        """Resident memory of the running nodes, MB."""
        return sum(rss_mb(pid) for pid in self.pids())
