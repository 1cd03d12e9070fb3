"""A site on a three-node RabbitMQ cluster, on one machine: the rig behind `qala cluster`, tests/cluster and
bench/cluster.py (docs/scale.md).

`ClusterSite(folder, ...)` holds, on 127.0.0.1 only:
- a provisioning store (hub.trust.provision): the site CA and the broker certificate the nodes serve, one
  login per hub (`main`, `h2`, `h3`, ...) and per board, each board's command key; or a store given by the
  caller (with a cluster started on it);
- the cluster (simulators.rabbitmq.RabbitCluster: TLS-only MQTT and AMQP listeners, the store's users and
  topic permissions), and influxd (simulators.services), unless given;
- hubs as subprocesses, `python -m hub hub run --config <hubs>/<name>/hub.toml`, each with its own spool and
  `[cluster]` listing every node (the first node it tries differs per hub, so they spread), the API on the
  first hub; `start_hub`, `kill_hub` (SIGKILL), `stop_hub` (SIGTERM);
- boards: the real firmware under `micropython` (simulators.fleet), their `mqtt.host` the three nodes'
  MQTT listeners (each board starts at another node), a clean session (RabbitMQ 3.10 keeps a persistent one on
  one node only) and `buffer.confirm` off (the cluster's PUBACK is the confirmation).

It counts what InfluxDB stored per board. Nothing here prints; everything started is stopped by its PID.

Imports simulators.fleet, simulators.rabbitmq and simulators.services, and of the hub only public pieces
(hub.trust.provision and hub.trust.store, hub.tools.bundle); the hubs run as subprocesses.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulators import fleet
from simulators.services import Influxd, ServiceError, ServiceUnavailable, free_port, toml_text

if TYPE_CHECKING:
    from hub.trust.store import TrustStore
    from simulators.rabbitmq import RabbitCluster

SITE = "astana"
DATABASE = "qala"
HUB_NAMES = ("main", "h2", "h3", "h4", "h5", "h6", "h7", "h8")
"""Hub identities in the store, in the order hubs are started (the first serves the API)."""
FIELDS = {"air": ("air", "pm25"), "energy": ("energy", "voltage"), "water": ("water", "water_flow")}
"""Per board kind (simulators.fleet), the measurement and a field every one of its telemetry messages carries."""
REPO = Path(__file__).resolve().parents[1]
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def missing_tools() -> list[str]:
    """What this machine lacks to run a cluster site, one line each naming what to install (empty: nothing)."""
    from simulators.rabbitmq import Epmd, RabbitNode  # noqa: PLC0415 - only a cluster site needs it

    problems = []
    nowhere = Path("/nonexistent")
    for service in (RabbitNode(nowhere, 0, nowhere, Epmd(nowhere)), Influxd(nowhere)):
        try:
            service.executable()
        except ServiceUnavailable as exc:
            problems.append(str(exc))
    if shutil.which("epmd") is None:
        problems.append("epmd not found on PATH: install the Debian package 'erlang-base' (a dependency of "
                        "rabbitmq-server; scripts/setup installs it)")
    try:
        fleet.find_micropython()
    except fleet.FleetError as exc:
        problems.append(str(exc))
    return problems


def provision(root: Path, boards: int, hubs: int, site: str = SITE) -> TrustStore:
    """A store for a cluster site: `boards` boards named as simulators.fleet names them, `hubs` hub logins."""
    from hub.trust import provision as prov  # noqa: PLC0415 - the hub's public provisioning
    from hub.trust.store import TrustStore  # noqa: PLC0415

    prov.init_store(root, site)
    names = [fleet.board_name(i)[0] for i in range(boards)]
    if names:
        prov.add_boards(root, names, {fleet.board_name(i)[0]: fleet.board_place(i) for i in range(boards)})
    for name in HUB_NAMES[1:hubs]:
        prov.add_hub(root, name)
    return TrustStore.load(root)


@dataclass
class HubRun:
    """One hub subprocess of the site."""

    name: str
    config: Path
    api_port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    kills: int = field(default=0)

    @property
    def log(self) -> Path:
        return self.config.with_name("hub.log")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


class ClusterSite:
    """See the module docstring. `cluster` and `store` given: that running cluster (its users made from that
    store); otherwise `start_services` provisions and starts its own."""

    def __init__(self, folder: Path, *, hubs: int = 2, cluster: RabbitCluster | None = None,
                 store: TrustStore | None = None, influxd: Influxd | None = None, database: str = DATABASE,
                 hub_tables: dict[str, dict[str, Any]] | None = None) -> None:
        if not 1 <= hubs <= len(HUB_NAMES):
            raise ValueError(f"hubs: 1..{len(HUB_NAMES)}, got {hubs}")
        self.folder = folder
        self.cluster = cluster
        self.store = store
        self.influxd = influxd
        self.database = database
        self.own: list[Any] = []
        """What this rig started and stops (services), in start order."""
        self.hubs = [HubRun(name, folder / "hubs" / name / "hub.toml") for name in HUB_NAMES[:hubs]]
        self.hub_tables = hub_tables or {}
        """Tables or keys merged into every hub.toml (a test's shorter time-outs, say)."""
        self.token = secrets.token_urlsafe(24)
        self.boards: list[fleet.FirmwareBoard] = []
        self.kinds: dict[str, str] = {}
        """device -> its kind (simulators.fleet), of the boards started."""
        self.limit: int | None = None
        """Telemetry messages each board sends before it stops sampling (the sim driver's `limit`), if set."""
        self.bundle: Path | None = None

    @property
    def site(self) -> str:
        assert self.store is not None, "provisioned first"
        return self.store.site

    # ------------------------------------------------------------------------------ services

    def start_services(self, boards: int = 0) -> None:
        """Provision (unless a store was given), then start the cluster and influxd (unless given)."""
        from simulators.rabbitmq import RabbitCluster  # noqa: PLC0415 - only a cluster site needs it

        self.folder.mkdir(parents=True, exist_ok=True)
        if self.store is None:
            self.store = provision(self.folder / "store", boards, len(self.hubs))
        if self.cluster is None:
            self.cluster = RabbitCluster(self.folder / "cluster", store=self.store)
            self.own.append(self.cluster)
            self.cluster.start()
        if self.influxd is None:
            self.influxd = Influxd(self.folder / "influxd")
            self.own.append(self.influxd)
            self.influxd.start()
        self.influxd.create_database(self.database)

    def amqp_nodes(self, first: int = 0) -> list[str]:
        """The nodes' AMQP listeners as `host:port`, starting at node `first`."""
        assert self.cluster is not None, "started first"
        nodes = [f"127.0.0.1:{n.amqp_port}" for n in self.cluster.nodes]
        return nodes[first:] + nodes[:first]

    def mqtt_nodes(self, first: int = 0) -> list[str]:
        assert self.cluster is not None, "started first"
        nodes = [f"127.0.0.1:{n.mqtt_port}" for n in self.cluster.nodes]
        return nodes[first:] + nodes[:first]

    # ---------------------------------------------------------------------------------- hubs

    def write_hub_config(self, index: int) -> Path:
        hub = self.hubs[index]
        assert self.store is not None, "provisioned first"
        assert self.influxd is not None, "started first"
        folder = hub.config.parent
        folder.mkdir(parents=True, exist_ok=True)
        tables: dict[str, dict[str, Any]] = {
            "site": {"id": self.store.site},
            "trust": {"store": str(self.store.root), "hub": hub.name},
            "cluster": {"nodes": self.amqp_nodes(index % 3), "heartbeat": 5},
            "mqtt": {"reconnect_min": 0.2, "reconnect_max": 2.0},
            "influxdb": {"api": "v1", "url": self.influxd.url, "database": self.database, "retry_min": 0.2,
                         "retry_max": 2.0},
            "spool": {"path": str(folder / "state")},
            "batch": {"size": 5000, "flush_interval": 0.5},
            "metrics": {"interval": 5.0},
            "hub": {"shutdown_timeout": 5.0},
        }
        if index == 0:
            hub.api_port = hub.api_port or free_port()
            tables["api"] = {"listen": "127.0.0.1", "port": hub.api_port, "control_token": self.token}
        for name, values in self.hub_tables.items():
            tables.setdefault(name, {}).update(values)
        hub.config.write_text(toml_text(tables, f"# Generated by simulators/cluster.py for hub {hub.name}; "
                                                "every key is in docs/hub.md."))
        return hub.config

    def start_hub(self, index: int) -> HubRun:
        hub = self.hubs[index]
        if not hub.config.exists():
            self.write_hub_config(index)
        with hub.log.open("ab") as out:
            hub.process = subprocess.Popen(  # noqa: S603 - our own argv
                [sys.executable, "-m", "hub", "hub", "run", "--config", str(hub.config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                env=os.environ | {"PYTHONPATH": str(REPO)}, start_new_session=True,
            )
        return hub

    def wait_hub_connected(self, index: int, timeout: float = 60.0, after: int = 0) -> None:
        """Until the hub's log says it consumes from the cluster (the `after`-th connect or later)."""
        hub = self.hubs[index]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = hub.log.read_text(errors="replace") if hub.log.exists() else ""
            if text.count("cluster: connected node=") > after:
                return
            if not hub.alive:
                raise ServiceError(f"hub {hub.name} exited while starting; see {hub.log}")
            time.sleep(0.1)
        raise ServiceError(f"hub {hub.name} did not connect to the cluster within {timeout:g} s; see {hub.log}")

    def kill_hub(self, index: int) -> None:
        """SIGKILL: a crash, as far as the cluster can tell (its connection drops, its deliveries come again)."""
        hub = self.hubs[index]
        if hub.process is not None and hub.process.poll() is None:
            hub.process.send_signal(signal.SIGKILL)
            hub.process.wait(10)
            hub.kills += 1

    def stop_hub(self, index: int, timeout: float = 30.0) -> int | None:
        hub = self.hubs[index]
        if hub.process is None or hub.process.poll() is not None:
            return None if hub.process is None else hub.process.returncode
        hub.process.send_signal(signal.SIGTERM)
        try:
            return hub.process.wait(timeout)
        except subprocess.TimeoutExpired:
            hub.process.kill()
            return hub.process.wait(10)

    # -------------------------------------------------------------------------------- boards

    def board_config(self, index: int, device: str, *, interval: float = 1.0, limit: int | None = None
                     ) -> dict[str, Any]:
        """The index-th board: simulators.fleet's kind for it, the store's identity, every node in its list."""
        assert self.store is not None, "provisioned first"
        kind = self.kinds[device] = fleet.KINDS[index % len(fleet.KINDS)]
        config = fleet.board_config(self.store.site, device, kind, "127.0.0.1", 1, interval=interval, seed=index,
                                    identity=self.store.board(device), ca=self.store.ca_file)
        config["mqtt"] |= {"host": self.mqtt_nodes(index % 3), "server_hostname": "localhost", "clean": True,
                           "keepalive": 10}
        config["buffer"] = {"ram": 8, "file": 2000, "replay_ms": 5, "confirm": False}
        if limit is not None:
            self.limit = limit
            for sensor in config["sensors"].values():
                sensor["options"]["limit"] = limit
            config["health_interval"] = 3600  # telemetry only: its count is known
        return config

    def start_boards(self, devices: list[str] | None = None, **options: Any) -> list[fleet.FirmwareBoard]:
        """Boards for `devices` (default: every board of the store), started under `micropython`."""
        from hub.tools import bundle  # noqa: PLC0415 - the hub's public bundle builder

        assert self.store is not None, "provisioned first"
        if self.bundle is None:
            self.bundle = self.folder / "bundle"
            bundle.build(self.bundle)
        micropython = fleet.find_micropython()
        names = sorted(self.store.devices()) if devices is None else devices
        started = []
        for device in names:
            index = len(self.boards)
            board = fleet.FirmwareBoard(self.folder / "boards" / device, self.board_config(index, device, **options),
                                        self.bundle).start(micropython)
            self.boards.append(board)
            started.append(board)
        return started

    # ------------------------------------------------------------------------------ looking

    def stored(self, measurement: str, field_name: str) -> dict[str, int]:
        """Points per device that InfluxDB holds for one measurement and field."""
        assert self.influxd is not None, "started first"
        query = f'SELECT count("{field_name}") FROM "{measurement}" GROUP BY "device"'  # noqa: S608 - our names
        rows = self.influxd.points(self.database, query)
        return {r["device"]: int(r["count"]) for r in rows}

    def stored_by_board(self) -> dict[str, int]:
        """Telemetry messages per started board whose points InfluxDB holds (one field every message of its
        kind carries; a message sent twice is one point)."""
        counts: dict[str, int] = {}
        for measurement, field_name in {FIELDS[kind] for kind in self.kinds.values()}:
            counts |= self.stored(measurement, field_name)
        return {device: counts.get(device, 0) for device in self.kinds}

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """A request to the first hub's API with its control token: (status, JSON body)."""
        port = self.hubs[0].api_port
        assert port is not None, "the first hub serves the API"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with _opener.open(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    # -------------------------------------------------------------------------------- stop

    def stop(self) -> None:
        """Boards, hubs (SIGTERM: they spool and acknowledge what they took), then what this rig started."""
        for board in self.boards:
            board.stop()
        for index in range(len(self.hubs)):
            self.stop_hub(index)
        for service in reversed(self.own):
            service.stop()
        self.own.clear()

