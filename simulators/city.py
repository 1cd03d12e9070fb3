"""The simulated city behind `qala demo`: servers, boards, meters and the hub, started, watched and stopped.

`Demo.run()` starts, in a run folder (`./run/demo-<UTC time>/` by default), and on 127.0.0.1 only:
- a provisioning store for the site (`store/`, hub.trust.provision): the site CA and the broker's
  certificate, the hub's login, and each board's login and command key, as `qala provision` makes them;
- mosquitto (the store's provisioned broker: TLS, passwords, ACL, client ids tied to users) and influxd from
  the system packages (simulators.services), each in a session of its own;
- a socat pty pair as an RS-485 line: the hub opens `rs485-hub`, the SDM630 (unit 1) and SDM120 (unit 2)
  simulators answer on `rs485-meters`; the ONICON heat meter profile over Modbus TCP (simulators.modbus_devices);
- the board bundle (hub.tools.bundle) and N boards, each the real firmware under `micropython` with the sim
  driver: air (fan), energy (relay) and water (valve) boards across Astana's districts (simulators.fleet),
  each provisioned with its district and coordinates (the Modbus meters get theirs in hub.toml);
- the hub as a subprocess `python -m hub hub run --config hub.toml` (generated: [trust] the store, MQTT ingest
  over TLS, the Modbus buses, InfluxDB v1, the HTTP API with a fresh token, a CO2 rule driving the first air
  board's fan). Every board verifies the broker and acts only on commands the hub signed with its key.
It watches the broker (boards online, readings per second, commands and acks), counts what influxd stored,
sends a few setpoints through the hub's HTTP API once the boards are up, writes `summary.json`, and stops
everything it started by pid, in order (boards, hub, meters, socat, influxd, mosquitto), also on a stop
request (SIGINT) and on errors. The data stays in the run folder.

Nothing here prints: the caller gets `Progress` snapshots and event lines through callbacks (hub/demo_cli.py).
Of the hub it imports only public pieces (hub.PUBLIC): hub.trust.provision and hub.trust.store, hub.tools.bundle
and hub.modbus.profile; the hub itself runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import tty
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulators import fleet
from simulators.services import Influxd, Mosquitto, ServiceUnavailable, free_port

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.trust.store import TrustStore
    from simulators.modbus_devices import RtuBusSimulator, TcpDeviceServer

log = logging.getLogger(__name__)

SITE = "astana"
DATABASE = "qala"
DOMAINS = ("air", "energy", "water", "heat")
RTU_METERS = {"esil-sdm630": ("sdm630", 1), "esil-sdm120": ("sdm120", 2)}  # device: (profile, unit)
TCP_METERS = {"saryarka-heat": "onicon_system10"}
SETPOINTS = {"air": ("fan1", 60.0), "energy": ("relay1", 1.0), "water": ("valve1", 40.0)}
REFUSED = ("air", "fan1", 150.0)  # above the fan's max: the hub refuses it before sending
HUB_START_TIMEOUT = 60.0
"""Seconds the hub has to come online (its liveness on the broker) before the demo gives up."""
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DemoError(RuntimeError):
    """Something the demo needs is missing or did not start; the message says what to do."""


class _Stopped(Exception):  # noqa: N818 - not an error: a stop was requested while starting
    """A stop request arrived during start-up."""


@dataclass
class Options:
    boards: int = 6
    duration: float = 60.0
    keep_running: bool = False
    root: Path = field(default_factory=lambda: Path.cwd() / "run")


@dataclass
class Progress:
    elapsed: float
    duration: float
    boards_online: int
    boards: int
    readings_per_s: float
    readings_received: int
    readings_stored: int
    meters_stored: int
    meters: int
    commands_sent: int
    outcomes: dict[str, int]


@dataclass
class Outcome:
    device: str
    actuator: str
    value: float
    state: str
    reason: str = ""
    latency_ms: float | None = None
    applied: float | None = None

    def line(self) -> str:
        text = f"setpoint {self.device}.{self.actuator} = {self.value:g} -> {self.state}"
        if self.latency_ms is not None:
            text += f" in {self.latency_ms:.0f} ms"
        if self.reason:
            text += f" ({self.reason})"
        return text


def missing_tools() -> list[str]:
    """What is not installed, each naming what to install; empty when the demo can run."""
    from hub.tools import bundle  # noqa: PLC0415 - light import, only when checking

    problems = []
    for service in (Mosquitto(Path("/nonexistent")), Influxd(Path("/nonexistent"))):
        try:
            service.executable()
        except ServiceUnavailable as exc:
            problems.append(str(exc))
    if shutil.which("socat") is None:
        problems.append("socat not found on PATH: install the Debian package 'socat' (scripts/setup does)")
    try:
        fleet.find_micropython()
    except fleet.FleetError as exc:
        problems.append(str(exc))
    try:
        bundle.find_mpy_cross()
    except bundle.BundleError as exc:
        problems.append(str(exc))
    return problems


def queries(influx_port: int) -> list[tuple[str, str]]:
    """(what, InfluxQL) pairs the demo shows at the end; plus the influx CLI line (`influx_cli`)."""
    del influx_port
    return [
        ("readings stored per measurement and device",
         'SELECT count(*) FROM "air","energy","water","heat" GROUP BY "device"'),
        ("CO2 by air board, 10 s means",
         'SELECT mean("co2") FROM "air" WHERE time > now() - 10m GROUP BY time(10s), "device" fill(none)'),
        ("mains voltage from the Modbus meters and the energy boards",
         'SELECT last("voltage") FROM "energy" GROUP BY "device", "sensor"'),
        ("heat meter over Modbus TCP", 'SELECT * FROM "heat" ORDER BY time DESC LIMIT 5'),
        ("every command and its outcome",
         ('SELECT "value", "applied", "latency_ms", "source", "reason" FROM "qala_command" '
         'GROUP BY "device", "sensor", "quality"')),
        ("applied setpoints reported by the boards",
         'SELECT last("setpoint") FROM "actuator" GROUP BY "device", "sensor"'),
    ]


def influx_cli(influx_port: int) -> str:
    return f"influx -host 127.0.0.1 -port {influx_port} -database {DATABASE}"


WATCH = "demo-watch"
NORTH_PREFIX = f"qala/{SITE}/_north/"
DRILL_PAUSE_AFTER_FIRING = 3.0
"""Seconds the drill's board stays paused once its silent alert fired (then it is continued)."""
DRILL_TIMEOUT = 60.0
"""Seconds the drill waits for the alert to fire, and again for it to resolve."""
"""The hub identity the demo's watcher logs in with (it reads the whole site, as a hub may)."""


class _Watcher:
    """A paho subscriber on qala/<site>/#: who is online, readings received, commands and their acks.

    Logs in with the store's WATCH identity over TLS verified against the site CA; reads cmd and ack payloads
    without their signatures (protocols.control.read_*: it acts on nothing)."""

    def __init__(self, port: int, login: tuple[str, str], ca: Path) -> None:
        import ssl  # noqa: PLC0415

        import paho.mqtt.client as paho  # noqa: PLC0415
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

        self.lock = threading.Lock()
        self.online: set[str] = set()
        self.readings = 0
        self.commands: set[str] = set()
        self.acks: dict[str, str] = {}
        self.hubs: set[str] = set()
        """Hubs whose retained liveness says online (protocols/liveness.py)."""
        self.first: dict[tuple[str, str], int] = {}
        """(device, sensor) -> the timestamp of its first telemetry message the broker passed on (boot 0)."""
        self.north: list[tuple[str, dict[str, Any]]] = []
        """(topic, document) of each northbound message (qala/<site>/_north/...), as a situation centre gets it."""
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"qala-demo-watch-{os.getpid()}")
        self.client.username_pw_set(*login)
        self.client.tls_set_context(ssl.create_default_context(cafile=str(ca)))
        self.client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(f"qala/{SITE}/#", qos=0)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def _on_message(self, _client: object, _userdata: object, msg: Any) -> None:
        from protocols import control, liveness, payloads, topics  # noqa: PLC0415
        from protocols.errors import ProtocolError  # noqa: PLC0415

        try:
            if msg.topic.startswith(NORTH_PREFIX):
                if msg.payload:  # an empty payload clears a retained copy
                    with self.lock:
                        self.north.append((msg.topic, json.loads(bytes(msg.payload))))
                return
            prefix = topics.hub_topic(SITE)[:-1]
            if msg.topic.startswith(prefix):
                state, _hb = liveness.decode_hub_state(bytes(msg.payload))
                with self.lock:
                    (self.hubs.add if state == liveness.ONLINE else self.hubs.discard)(msg.topic[len(prefix):])
                return
            _site, device, kind = topics.parse(msg.topic)
            body = bytes(msg.payload)
            with self.lock:
                if kind == topics.STATUS and body:
                    state = payloads.decode_status(body).state
                    (self.online.add if state == "online" else self.online.discard)(device)
                elif kind == topics.TELEMETRY:
                    telemetry = payloads.decode_telemetry(body)
                    self.readings += len(telemetry.readings)
                    if telemetry.boot == 0:
                        self.first.setdefault((device, telemetry.sensor), telemetry.ts)
                elif kind == topics.CMD:
                    self.commands.add(control.read_cmd(body).id)
                elif kind == topics.ACK:
                    ack = control.read_ack(body)
                    self.acks[ack.id] = ack.status
        except (ProtocolError, ValueError) as exc:
            log.debug("watcher: %s on %s", exc, msg.topic)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class _SocatRtuBus:
    """The meters' end of a socat pty pair: an RtuBusSimulator reading and writing an existing tty path."""

    def __init__(self, bus: RtuBusSimulator, path: Path) -> None:
        self.bus = bus
        self.path = path

    async def start(self) -> None:
        from simulators.modbus_devices import RtuBusSimulator  # noqa: PLC0415

        fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(fd)
        bus = self.bus
        bus._master = fd  # noqa: SLF001 - the simulator's responder, on the pty socat made
        bus.port = str(self.path)
        asyncio.get_running_loop().add_reader(fd, bus._on_readable)  # noqa: SLF001
        bus._worker = asyncio.create_task(RtuBusSimulator._respond(bus), name="rtu-sim")  # noqa: SLF001

    async def stop(self) -> None:
        bus = self.bus
        if bus._worker is not None:  # noqa: SLF001
            bus._worker.cancel()  # noqa: SLF001
            with contextlib.suppress(asyncio.CancelledError):
                await bus._worker  # noqa: SLF001
        if bus._master >= 0:  # noqa: SLF001
            asyncio.get_running_loop().remove_reader(bus._master)  # noqa: SLF001
            os.close(bus._master)  # noqa: SLF001
            bus._master = -1  # noqa: SLF001


def _meter_place(device: str, index: int) -> dict[str, Any]:
    """A meter's district (its name's first word: esil-sdm630 is in Esil) and coordinates near the centre."""
    district = device.split("-", 1)[0]
    lat, lon = fleet.CENTRES[district]
    return {"district": district, "lat": round(lat + 0.001 * (index + 1), 5), "lon": lon}


def _toml(tables: dict[str, dict[str, Any]]) -> str:
    lines = ["# Generated by `qala demo` (simulators/city.py); every key is in docs/hub.md."]
    for name, values in tables.items():
        lines.append(f"\n[{name}]")
        for key, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, int | float):
                lines.append(f"{key} = {value}")
            else:
                lines.append(f"{key} = {json.dumps(str(value))}")
    return "\n".join(lines) + "\n"


class Demo:
    """One run of the simulated city; see the module docstring."""

    def __init__(self, options: Options, on_event: Callable[[str], None],
                 on_progress: Callable[[Progress], None], progress_every: float = 1.0) -> None:
        if options.boards < 1:
            raise DemoError("--boards must be at least 1")
        if options.duration <= 0:
            raise DemoError("--duration must be a positive number of seconds")
        self.options = options
        self.on_event = on_event
        self.on_progress = on_progress
        self.progress_every = progress_every
        self.folder = options.root / time.strftime("demo-%Y%m%d-%H%M%S", time.gmtime())
        self.boards: list[fleet.FirmwareBoard] = []
        self.kinds: dict[str, str] = {}
        self.mosquitto: Mosquitto | None = None
        self.influxd: Influxd | None = None
        self.socat: subprocess.Popen[bytes] | None = None
        self.hub: subprocess.Popen[bytes] | None = None
        self.rtu: _SocatRtuBus | None = None
        self.tcp: TcpDeviceServer | None = None
        self.watcher: _Watcher | None = None
        self.store: TrustStore | None = None
        self.api_port = free_port()
        self.token = secrets.token_hex(16)
        self.page_url = f"http://127.0.0.1:{self.api_port}/ui/"
        self.outcomes: list[Outcome] = []
        self.drill: dict[str, Any] = {}
        """What the alert drill saw: the paused board, its alert as the API gave it, the northbound states."""
        self._paused: fleet.FirmwareBoard | None = None
        self.stored: dict[str, dict[str, int]] = {}
        self._stop = asyncio.Event()
        self._pids: dict[str, int] = {}

    def request_stop(self) -> None:
        """Stop soon (the SIGINT handler); everything started is stopped in order."""
        self._stop.set()

    # --- the run -----------------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any] | None:
        """Start the city, watch it, send setpoints, and stop it; returns the summary (also summary.json).

        None when a stop was requested before everything had started. DemoError when something failed;
        whatever had started is stopped in every case.
        """
        from hub.tools.bundle import BundleError  # noqa: PLC0415
        from simulators.services import ServiceError  # noqa: PLC0415

        problems = missing_tools()
        if problems:
            raise DemoError("the demo cannot start:\n  - " + "\n  - ".join(problems))
        base, number = self.folder, 1
        while True:  # two demos started in the same second get folders of their own
            try:
                self.folder.mkdir(parents=True)
                break
            except FileExistsError:
                number += 1
                self.folder = base.with_name(f"{base.name}-{number}")
        try:
            await self._start()
            await self._watch()
            return await self._summarise()
        except _Stopped:
            return None
        except (ServiceError, BundleError, OSError) as exc:
            raise DemoError(f"{exc}\n(the logs are in {self.folder})") from exc
        finally:
            await self._shutdown()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _Stopped

    def _provision(self) -> TrustStore:
        """The site's store: CA, broker certificate, the hub's and the watcher's logins, every board's identity."""
        from hub.trust import provision  # noqa: PLC0415
        from hub.trust.store import TrustStore  # noqa: PLC0415

        root = self.folder / "store"
        provision.init_store(root, SITE)
        boards = range(self.options.boards)
        provision.add_boards(root, [fleet.board_name(i)[0] for i in boards],
                             {fleet.board_name(i)[0]: fleet.board_place(i) for i in boards})
        provision.add_hub(root, WATCH)
        return TrustStore.load(root)

    async def _start(self) -> None:
        self.on_event(f"run folder {self.folder}")
        self.store = store = await asyncio.to_thread(self._provision)
        self.on_event(f"provisioning store {store.root}: site CA, broker certificate, {len(store.devices())} board "
                      "logins and command keys (TLS, passwords, ACL and signed commands are on)")
        self.mosquitto = Mosquitto(self.folder / "mosquitto", new_session=True, store=store.root)
        self.influxd = Influxd(self.folder / "influxd", new_session=True)
        for service in (self.mosquitto, self.influxd):
            await asyncio.to_thread(service.start)
            self._pid(service.name, service.pid)
            self.on_event(f"{service.name} on 127.0.0.1:{service.port} (pid {service.pid})")
            self._check_stop()
        await asyncio.to_thread(self.influxd.create_database, DATABASE)
        await self._start_meters()
        self._check_stop()
        from hub.tools import bundle  # noqa: PLC0415

        build = self.folder / "bundle"
        await asyncio.to_thread(bundle.build, build)
        self._check_stop()
        hub_toml = self._write_hub_toml()
        # the watcher first: it sees the hub's liveness, and the boards start only once the hub is online
        self.watcher = await asyncio.to_thread(_Watcher, self.mosquitto.port, store.hub(WATCH), store.ca_file)
        with (self.folder / "hub.log").open("ab") as out:
            self.hub = subprocess.Popen(  # noqa: S603, ASYNC220 - our own argv; returns at once
                [sys.executable, "-m", "hub", "hub", "run", "--config", str(hub_toml)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self._pid("hub", self.hub.pid)
        self.on_event(f"hub (pid {self.hub.pid}), API http://127.0.0.1:{self.api_port}, config {hub_toml}")
        token_file = self.folder / "api-token"
        token_file.touch(mode=0o600)
        token_file.write_text(self.token + "\n")
        self.on_event(f"operator page {self.page_url} (its control token is in {token_file})")
        await self._hub_online()
        micropython = fleet.find_micropython()
        for index in range(self.options.boards):
            device, kind = fleet.board_name(index)
            config = fleet.board_config(SITE, device, kind, "127.0.0.1", self.mosquitto.port, seed=index,
                                        identity=store.board(device), ca=store.ca_file)
            board = fleet.FirmwareBoard(self.folder / "boards" / device, config, build).start(micropython)
            self.boards.append(board)
            self.kinds[device] = kind
            self._pid(f"board {device}", board.pid)
            self._check_stop()
        self.on_event(f"{len(self.boards)} boards under micropython: " + ", ".join(self.kinds))

    async def _hub_online(self) -> None:
        """Wait until the hub announces itself online (its retained liveness, published after its subscription):
        from then on its persistent session takes every board message, the first second's included."""
        assert self.hub is not None, "started first"
        assert self.watcher is not None, "started first"
        deadline = time.monotonic() + HUB_START_TIMEOUT
        while True:
            with self.watcher.lock:
                if "main" in self.watcher.hubs:
                    break
            if self.hub.poll() is not None:
                raise DemoError(f"the hub exited with code {self.hub.returncode} while starting; see "
                                f"{self.folder / 'hub.log'}")
            if time.monotonic() > deadline:
                raise DemoError(f"the hub did not come online within {HUB_START_TIMEOUT:g} s; see "
                                f"{self.folder / 'hub.log'}")
            self._check_stop()
            await asyncio.sleep(0.1)
        self.on_event("hub online (its MQTT session takes the boards' messages from their first one)")

    async def _start_meters(self) -> None:
        from hub.modbus import profile as profiles  # noqa: PLC0415
        from simulators.modbus_devices import RtuBusSimulator, SimulatedDevice, TcpDeviceServer  # noqa: PLC0415

        hub_end, meters_end = self.folder / "rs485-hub", self.folder / "rs485-meters"
        self.socat = subprocess.Popen(  # noqa: S603, ASYNC220 - our own argv; returns at once
            [shutil.which("socat") or "socat", f"pty,raw,echo=0,link={hub_end}", f"pty,raw,echo=0,link={meters_end}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self._pid("socat", self.socat.pid)
        deadline = time.monotonic() + 10
        while not (hub_end.exists() and meters_end.exists()):
            if self.socat.poll() is not None or time.monotonic() > deadline:
                raise DemoError("socat did not create its pty pair")
            await asyncio.sleep(0.05)
        devices = {unit: SimulatedDevice(profiles.load(profiles.resolve(profile)), seed=unit)
                   for profile, unit in RTU_METERS.values()}
        self.rtu = _SocatRtuBus(RtuBusSimulator(devices), meters_end)
        await self.rtu.start()
        (name, profile), = TCP_METERS.items()
        self.tcp = TcpDeviceServer(SimulatedDevice(profiles.load(profiles.resolve(profile)), seed=9))
        await self.tcp.start()
        self.on_event(f"Modbus RTU bus {hub_end} (socat pty pair): " + ", ".join(
            f"{device} ({profile}, unit {unit})" for device, (profile, unit) in RTU_METERS.items()))
        self.on_event(f"Modbus TCP 127.0.0.1:{self.tcp.port}: {name} ({profile})")

    def _write_hub_toml(self) -> Path:
        assert self.mosquitto is not None, "started first"
        assert self.influxd is not None, "started first"
        assert self.tcp is not None, "started first"
        assert self.store is not None, "provisioned first"
        first_air = fleet.board_name(0)[0]
        tables: dict[str, dict[str, Any]] = {
            "site": {"id": SITE},
            "trust": {"store": str(self.store.root)},
            "mqtt": {"host": "127.0.0.1", "port": self.mosquitto.port, "reconnect_min": 0.2, "reconnect_max": 2.0},
            "influxdb": {"api": "v1", "url": self.influxd.url, "database": DATABASE, "retry_min": 0.2,
                         "retry_max": 2.0},
            "spool": {"path": str(self.folder / "hub-state")},
            "batch": {"size": 5000, "flush_interval": 0.5},
            "metrics": {"interval": 5.0},
            "hub": {"shutdown_timeout": 5.0},
            "control": {"ttl": 15.0, "retries": 1, "ack_timeout": 3.0},
            # a demo's minutes: boards sample every 2 s, so a board is silent after 10 s (not 2 min) once the
            # detectors have a first estimate of its interval (from its first messages); they run every 2 s,
            # and the districts are summed up every 10 s
            "detect": {"interval": 2.0, "silent_min_s": 10.0},
            "alerts": {"summary_interval": 10.0},
            "api": {"listen": "127.0.0.1", "port": self.api_port, "control_token": self.token},
            "modbus.buses.rs485-esil": {"transport": "rtu", "port": str(self.folder / "rs485-hub"),
                                        "baudrate": 9600, "timeout": 0.5},
            "modbus.buses.heat-plant": {"transport": "tcp", "host": "127.0.0.1", "port": self.tcp.port,
                                        "timeout": 0.5},
        }
        for i, (device, (profile, unit)) in enumerate(RTU_METERS.items()):
            tables[f"modbus.devices.{device}"] = {"bus": "rs485-esil", "unit": unit, "profile": profile,
                                                  "interval": 2.0, **_meter_place(device, i)}
        for i, (device, profile) in enumerate(TCP_METERS.items()):
            tables[f"modbus.devices.{device}"] = {"bus": "heat-plant", "unit": 1, "profile": profile,
                                                  "interval": 2.0, **_meter_place(device, i)}
        text = _toml(tables) + (  # the CO2 rule: a [[rules]] array table
            "\n[[rules]]\n"
            'name = "co2-fan"\n'
            f'device = "{first_air}"\n'
            'sensor = "air1"\n'
            'quantity = "co2"\n'
            "above = 750.0\n"
            "below = 550.0\n"
            "hold_s = 4.0\n"
            'actuator = "fan1"\n'
            "high = 80.0\n"
            "low = 20.0\n"
        )
        path = self.folder / "hub.toml"
        path.write_text(text)
        return path

    async def _watch(self) -> None:  # noqa: C901 - one loop: progress, setpoints, the end
        start = time.monotonic()
        setpoints: asyncio.Task[None] | None = None
        drill: asyncio.Task[None] | None = None
        window: collections.deque[tuple[float, int]] = collections.deque()
        next_stored = 0.0
        stored = 0
        meters = 0
        while True:
            now = time.monotonic()
            elapsed = now - start
            watcher = self.watcher
            assert watcher is not None, "started first"
            with watcher.lock:
                online = len(watcher.online & set(self.kinds))
                received = watcher.readings
                sent = len(watcher.commands)
                outcomes: dict[str, int] = {}
                for state in watcher.acks.values():
                    outcomes[state] = outcomes.get(state, 0) + 1
            for outcome in self.outcomes:
                if outcome.reason.startswith("hub:"):  # refused at the hub: no cmd was sent, no ack comes
                    outcomes[outcome.state] = outcomes.get(outcome.state, 0) + 1
            window.append((now, received))
            while len(window) > 1 and now - window[0][0] > 10.0:  # readings per second over the last 10 s
                window.popleft()
            rate = (received - window[0][1]) / (now - window[0][0]) if now > window[0][0] else 0.0
            if now >= next_stored:
                next_stored = now + 2.0
                stored, meters = await asyncio.to_thread(self._stored_counts)
            meter_total = len(RTU_METERS) + len(TCP_METERS)
            self.on_progress(Progress(elapsed, self.options.duration, online, len(self.boards), rate, received,
                                      stored, meters, meter_total, sent, outcomes))
            self._check_alive()
            ready = online == len(self.boards) and elapsed > 6.0
            if setpoints is None and (ready or elapsed > max(20.0, self.options.duration / 2)):
                setpoints = asyncio.create_task(self._send_setpoints())
            if drill is None and setpoints is not None and setpoints.done():
                drill = asyncio.create_task(self._alert_drill())
            done = drill is not None and drill.done()
            if self._stop.is_set():
                break
            if done and elapsed >= self.options.duration and not self.options.keep_running:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.progress_every)
        await self._end_tasks(setpoints, drill)

    async def _end_tasks(self, setpoints: asyncio.Task[None] | None, drill: asyncio.Task[None] | None) -> None:
        """Cancel what still runs (a stop came first); raise DemoError for a task that failed."""
        for task in (setpoints, drill):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._resume_paused()
        for what, task in (("setpoints", setpoints), ("the alert drill", drill)):
            if task is not None and not task.cancelled() and task.exception():
                raise DemoError(f"{what} failed: {task.exception()}")

    def _check_alive(self) -> None:
        for name, process in (("hub", self.hub), ("socat", self.socat)):
            if process is not None and process.poll() is not None:
                raise DemoError(f"the {name} exited with code {process.returncode}; see {self.folder}")
        for service in (self.mosquitto, self.influxd):
            if service is not None and not service.running:
                raise DemoError(f"{service.name} exited; see {service.log_path}")

    def _stored_counts(self) -> tuple[int, int]:
        """(readings stored, meters with readings) from influxd."""
        try:
            counts = self._counts()
        except (OSError, ValueError, RuntimeError):
            return 0, 0
        total = sum(n for per_device in counts.values() for n in per_device.values())
        meters = set(RTU_METERS) | set(TCP_METERS)
        seen = {device for per_device in counts.values() for device in per_device}
        return total, len(meters & seen)

    def _counts(self) -> dict[str, dict[str, int]]:
        """{measurement: {device: values stored}} for the telemetry measurements."""
        assert self.influxd is not None, "started first"
        out: dict[str, dict[str, int]] = {}
        answer = self.influxd.query(DATABASE, 'SELECT count(*) FROM "air","energy","water","heat" GROUP BY "device"')
        for result in answer.get("results", []):
            for series in result.get("series", []):
                per = out.setdefault(series["name"], {})
                device = series.get("tags", {}).get("device", "")
                per[device] = per.get(device, 0) + sum(v for v in series["values"][0][1:] if isinstance(v, int))
        return out

    async def _send_setpoints(self) -> None:
        targets: list[tuple[str, str, float]] = []
        for kind, (actuator, value) in SETPOINTS.items():
            device = next((d for d, k in self.kinds.items() if k == kind), None)
            if device is not None:
                targets.append((device, actuator, value))
        refused = next((d for d, k in self.kinds.items() if k == REFUSED[0]), None)
        if refused is not None:
            targets.append((refused, REFUSED[1], REFUSED[2]))
        self.on_event("sending setpoints through the hub's HTTP API: " + ", ".join(
            f"{d}.{a}={v:g}" for d, a, v in targets))
        results = await asyncio.gather(*(asyncio.to_thread(self._setpoint, *t) for t in targets))
        for outcome in results:
            self.outcomes.append(outcome)
            self.on_event(outcome.line())

    def _setpoint(self, device: str, actuator: str, value: float) -> Outcome:
        body = json.dumps({"device": device, "actuator": actuator, "value": value, "wait": True,
                           "timeout_s": 30}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}/v1/setpoints", data=body, method="POST",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        for _attempt in range(20):  # the hub may not know the device yet (404) right after it started
            try:
                with _opener.open(request, timeout=40) as response:
                    answer = json.loads(response.read())
                break
            except urllib.error.HTTPError as exc:
                answer = json.loads(exc.read() or b"{}")
                if exc.code == 404:
                    time.sleep(1.0)
                    continue
                if exc.code == 422 and "command" in answer:
                    answer = answer["command"]
                    break
                return Outcome(device, actuator, value, f"HTTP {exc.code}", answer.get("error", ""))
            except OSError as exc:
                return Outcome(device, actuator, value, "unreachable", str(exc))
        else:
            return Outcome(device, actuator, value, "unknown device", "the hub never saw its birth")
        return Outcome(device, actuator, value, str(answer.get("state")), str(answer.get("reason") or ""),
                       answer.get("latency_ms"), answer.get("applied"))

    async def _alert_drill(self) -> None:
        """Show detection end to end: pause one board (SIGSTOP) until the hub's `silent` alert for it fires,
        continue it (SIGCONT) and wait for the alert to resolve; the API and the northbound feed say each step."""
        board = next((b for b in reversed(self.boards) if b.pid is not None), None)
        if board is None or board.pid is None:
            return
        device = board.device
        self.drill = {"device": device, "alert": None, "northbound": []}
        self.on_event(f"alert drill: pausing board {device} (SIGSTOP) until the hub notices it went silent")
        self._paused = board
        os.kill(board.pid, signal.SIGSTOP)
        alert = await self._wait_alert(device, ("firing", "acknowledged"))
        if alert is None:
            self.on_event(f"alert drill: no silent alert for {device} within {DRILL_TIMEOUT:g} s (see hub.log)")
            self._resume_paused()
            return
        self.on_event(f"alert {alert['id']} fired: {alert['kind']} {device}: {alert['message']}")
        await asyncio.sleep(DRILL_PAUSE_AFTER_FIRING)
        self._resume_paused()
        self.on_event(f"alert drill: board {device} continued (SIGCONT)")
        resolved = await self._wait_alert(device, ("resolved",), alert["id"])
        if resolved is None:
            self.on_event(f"alert drill: {alert['id']} not resolved within {DRILL_TIMEOUT:g} s (see hub.log)")
            return
        self.drill["alert"] = resolved
        self.on_event(f"alert {resolved['id']} resolved: {device} reports again")
        until = time.monotonic() + 5.0  # the feed's copy of the resolution, as a situation centre receives it
        while time.monotonic() < until:
            states = self._north_states(resolved["id"])
            if "resolved" in states:
                break
            await asyncio.sleep(0.2)
        self.drill["northbound"] = states
        self.on_event(f"northbound feed {NORTH_PREFIX}alerts/{resolved['id']} received: "
                      f"{', '.join(states) or 'nothing'}")

    def _resume_paused(self) -> None:
        board, self._paused = self._paused, None
        if board is not None and board.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(board.pid, signal.SIGCONT)

    def _north_states(self, alert_id: str) -> list[str]:
        assert self.watcher is not None, "started first"
        with self.watcher.lock:
            docs = [doc for topic, doc in self.watcher.north if topic.endswith("/" + alert_id)]
        return [str(doc.get("data", {}).get("state")) for doc in docs]

    async def _wait_alert(self, device: str, states: tuple[str, ...], alert_id: str | None = None
                          ) -> dict[str, Any] | None:
        """The device's silent alert (that one, with `alert_id`) once it is in one of `states`; None on time-out."""
        until = time.monotonic() + DRILL_TIMEOUT
        while time.monotonic() < until and not self._stop.is_set():
            alerts = await asyncio.to_thread(self._api_get, "/v1/alerts?state=all&limit=200")
            for alert in (alerts or {}).get("alerts", []):
                if alert["device"] == device and alert["kind"] == "silent" and alert["state"] in states and (
                        alert_id is None or alert["id"] == alert_id):
                    return dict(alert)
            await asyncio.sleep(0.5)
        return None

    def _api_get(self, path: str) -> dict[str, Any] | None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.api_port}{path}",
                                         headers={"Authorization": f"Bearer {self.token}"})
        try:
            with _opener.open(request, timeout=10) as response:
                answer: dict[str, Any] = json.loads(response.read())
        except (OSError, ValueError) as exc:
            log.debug("api %s: %s", path, exc)
            return None
        return answer

    def _first_stored(self) -> list[dict[str, Any]]:
        """Each board's first message of each sensor (the actuators' reports after the birth included), and
        whether InfluxDB holds it: the hub's session existed before the boards' first second."""
        assert self.influxd is not None, "started first"
        assert self.watcher is not None, "started first"
        with self.watcher.lock:
            first = dict(self.watcher.first)
        out = []
        for (device, sensor), ts in sorted(first.items()):
            # device and sensor passed protocols' id rules (letters, digits, _ and -): nothing to escape
            rows = self.influxd.points(
                DATABASE, f'SELECT count(*) FROM "air","energy","water","device","actuator" WHERE '  # noqa: S608
                          f"\"device\" = '{device}' AND \"sensor\" = '{sensor}' AND time = {ts}ms")
            out.append({"device": device, "sensor": sensor, "ts": ts, "stored": bool(rows)})
        return out

    async def _summarise(self) -> dict[str, Any]:
        assert self.influxd is not None, "started first"
        await asyncio.sleep(2.0)  # the hub's last batch (flush_interval 0.5 s) reaches influxd
        # the audit rows of the setpoints applied last may come a batch later on a busy machine: wait for them
        # (at most 10 s more), so the summary shows each applied setpoint's row
        applied = {o.device for o in self.outcomes if o.state == "applied"}
        loop = asyncio.get_running_loop()
        until = loop.time() + 10.0
        while True:
            commands = await asyncio.to_thread(
                self.influxd.points, DATABASE, 'SELECT "value", "applied", "source", "reason" FROM "qala_command" '
                                               'GROUP BY "device", "sensor", "quality"')
            audited = {c.get("device") for c in commands if c.get("quality") == "applied"}
            if applied <= audited or loop.time() >= until:
                break
            await asyncio.sleep(0.5)
        counts = await asyncio.to_thread(self._counts)
        summary: dict[str, Any] = {
            "folder": str(self.folder),
            "first_messages": await asyncio.to_thread(self._first_stored),
            "influxd": {"port": self.influxd.port, "database": DATABASE, "cli": influx_cli(self.influxd.port)},
            "stored": counts,
            "boards": self.kinds,
            "meters": {"rtu": sorted(RTU_METERS), "tcp": sorted(TCP_METERS)},
            "setpoints": [outcome.__dict__ for outcome in self.outcomes],
            "qala_command": commands,
            "alert_drill": self.drill,
            "operator_page": self.page_url,
            "queries": queries(self.influxd.port),
        }
        (self.folder / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary

    async def _shutdown(self) -> None:
        """Stop everything started, in order; never raises."""
        if self.watcher is not None:
            with contextlib.suppress(Exception):
                self.watcher.close()
        self._resume_paused()  # a stopped process would not see its SIGTERM
        for board in self.boards:
            await asyncio.to_thread(board.stop)
        if self.hub is not None:
            await asyncio.to_thread(_terminate, self.hub, 15.0)
        if self.rtu is not None:
            with contextlib.suppress(Exception):
                await self.rtu.stop()
        if self.tcp is not None:
            with contextlib.suppress(Exception):
                await self.tcp.stop()
        if self.socat is not None:
            await asyncio.to_thread(_terminate, self.socat, 5.0)
        for service in (self.influxd, self.mosquitto):
            if service is not None:
                await asyncio.to_thread(service.stop, 15.0)

    def _pid(self, name: str, pid: int | None) -> None:
        if pid is not None:
            self._pids[name] = pid
            (self.folder / "pids.json").write_text(json.dumps(self._pids, indent=1))


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
