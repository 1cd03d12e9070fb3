"""CPython helpers for the firmware integration tests: build the firmware, run boards, watch the broker.

- build(): mpy-cross firmware/ and protocols/ into one folder (cached per session), the way a board gets them.
- Board: one `micropython -X heapsize=<heap> <build>/firmware/main.py board.json` process, its console in a
  file; stop() / kill() by pid.
- Watcher: a paho-mqtt subscriber with a persistent session (clean_session False, QoS 1) that records every
  message, with its retain flag, and decodes telemetry with protocols.payloads; on a provisioned broker it
  logs in as a test observer (tests/_plugins/trust.py).
- board_config(broker, ...): a test board's config for that broker: on a provisioned one the board's own
  login and command key from the broker's store, TLS verified against the site CA; plain otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho

from hub.tools import bundle
from hub.tools.executables import find_executable
from protocols import payloads
from tests._plugins.trust import SITE, login, store_of

if TYPE_CHECKING:
    from simulators.services import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
# The smallest unix heap in steps of 32k that runs the precompiled firmware for long runs (docs/firmware.md).
BOARD_HEAP = "160k"  # steady state fits 96k; outages and reconnects need more at moments (docs/firmware.md)
_build: Path | None = None
PLAIN_KEY = bytes(range(32))
"""The command key of test boards on a plain broker (no store to take one from)."""


def tool(name: str) -> str:
    return find_executable(name) or name


def build() -> Path:
    """firmware/ and protocols/ precompiled as a board runs them (hub.tools.bundle), once per session."""
    global _build  # noqa: PLW0603 - a per-session cache
    if _build is None:
        _build = Path(tempfile.mkdtemp(prefix="qala-fw-"))
        bundle.build(_build, packages=bundle.PACKAGES + bundle.TWINS)  # twins: the unix board's sensors
    return _build


def mqtt_settings(broker: Mosquitto, device: str) -> dict[str, Any]:
    """A board's `mqtt` and `commands` for the broker: its store's login and key, or plain."""
    store = store_of(broker)
    if store is None:  # the board still acts only on signed commands: a key of its own
        return {"mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": False, "keepalive": 10},
                "commands": {"key": PLAIN_KEY.hex()}}
    identity = store.board(device)
    assert identity is not None, f"{device} is not provisioned in {store.root}"
    return {
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "tls": True, "ca": str(store.ca_file),
                 "server_hostname": "localhost", "user": identity.user, "password": identity.password,
                 "keepalive": 10},
        "commands": {"key": identity.cmd_key.hex()},
    }


def board_config(broker: Mosquitto, device: str = "t1", **overrides: Any) -> dict[str, Any]:
    """A unix-port test board for the broker: fast sampling, short health interval, small buffer."""
    cfg: dict[str, Any] = {
        "site": SITE,
        "device": device,
        **mqtt_settings(broker, device),
        "sensors": {
            "air1": {"driver": "sim", "interval": 0.2, "quantities": ["pm25", "pm10", "co2"]},
            "power": {"driver": "sim", "interval": 0.5, "quantities": ["voltage", "energy_import"]},
        },
        "actuators": {"fan1": {"kind": "pwm", "pin": 4, "min": 0, "max": 100, "failsafe": 20, "unit": "%"}},
        # no hub confirms in most firmware tests: the broker's PUBACK ends a record's life (the default, with a
        # hub, is end-to-end confirmation: tests/hub/test_confirmation.py)
        "buffer": {"ram": 8, "file": 2000, "replay_ms": 5, "confirm": False},
        "health_interval": 1,
    }
    cfg.update(overrides)
    return cfg


class Board:
    """One firmware process on the unix port."""

    def __init__(self, workdir: Path, config: dict[str, Any] | str, heap: str = BOARD_HEAP) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "board.json"
        self.config_path.write_text(config if isinstance(config, str) else json.dumps(config))
        self.console = workdir / "console.log"
        self.heap = heap
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Board:
        with self.console.open("ab") as out:
            self.process = subprocess.Popen(
                [tool("micropython"), "-X", f"heapsize={self.heap}", str(build() / "firmware" / "main.py"),
                 str(self.config_path)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
            )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def kill(self) -> None:
        """SIGKILL: a power cut, as far as the broker can tell (no DISCONNECT)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


class Watcher:
    """A persistent-session QoS 1 subscriber that records (topic, payload, retain) in arrival order."""

    def __init__(self, broker: Mosquitto, client_id: str, topic: str = "qala/#", *, clean: bool = False) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        login(self.client, broker)
        port = broker.port
        self.client.reconnect_delay_set(0.2, 1)
        self.topic = topic
        self.client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return list(self.messages)

    def telemetry(self) -> list[payloads.Telemetry]:
        return [payloads.decode_telemetry(p) for t, p, _ in self.snapshot() if t.endswith("/telemetry")]

    def statuses(self) -> list[tuple[payloads.Status, bool]]:
        return [(payloads.decode_status(p), r) for t, p, r in self.snapshot() if t.endswith("/status")]

    def wait_for(self, predicate: Any, timeout: float, what: str, board: Board | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        console = board.output()[-3000:] if board is not None else ""
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\nboard console:\n{console}")


def health(watcher: Watcher) -> list[dict[str, float]]:
    return [{q: v for q, v, _ in m.readings} for m in watcher.telemetry() if m.sensor == "health"]
