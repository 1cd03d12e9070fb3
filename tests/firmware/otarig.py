"""CPython helpers for the board-side OTA tests: versions of the firmware, slotted boards, a tiny OTA responder.

- `bundle(version, patch)`: the firmware with firmware.VERSION set to `version` and source lines replaced
  (a version that raises at start-up, one that never sends), built as `qala fw build` builds it (cached).
- `config_bundle(out, board_json, version)`: a config bundle (kind config: one file, board.json).
- `SlotBoard`: a board laid out by `hub.tools.fw.install_unix` and run as `micropython DIR/main.py
  DIR/board.json`; its supervisor starts it again when it exits 3 (a reset on the unix port), as a board's
  hardware would; kill() is a power cut (SIGKILL), start() the power back.
- `Responder`: a paho client with a hub's login standing in for the hub's OTA server (the real one is
  hub/ota/, the hub helper's): offers signed with the board's key, `get` answered with chunks of the
  bundle folder, state reports decoded and kept, and telemetry confirmed (`conf`, retained) as the hub
  confirms it, so a trial can prove itself healthy.
- `Gate`: a TCP pass-through to the broker on a port of its own, opened and closed by the test (closed: no
  listener, a refused connect): the board's uplink cut and back, the broker itself untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho

from hub.tools import bundle as bundle_tool
from hub.tools import fw
from protocols import confirm, ota, topics
from tests._plugins.trust import SITE, login
from tests.firmware.boards import tool

if TYPE_CHECKING:
    from collections.abc import Callable

    from simulators.services import Mosquitto

_bundles: dict[tuple[str, tuple[tuple[str, str, str], ...]], Path] = {}


def bundle(version: str, patch: tuple[tuple[str, str, str], ...] = ()) -> Path:
    """A bundle of the repository's firmware with VERSION = version and each (file, old, new) replaced once."""
    key = (version, patch)
    if key not in _bundles:
        root = Path(tempfile.mkdtemp(prefix=f"qala-ota-src-{version}-"))
        for package in bundle_tool.PACKAGES:
            shutil.copytree(bundle_tool.REPO_ROOT / package, root / package,
                            ignore=shutil.ignore_patterns("__pycache__"))
        init = root / "firmware" / "__init__.py"
        init.write_text(init.read_text().replace('VERSION = "0.1.0"', f'VERSION = "{version}"'))
        for rel, old, new in patch:
            path = root / rel
            text = path.read_text()
            assert text.count(old) == 1, f"{rel}: {old!r} found {text.count(old)} times"
            path.write_text(text.replace(old, new))
        out = Path(tempfile.mkdtemp(prefix=f"qala-ota-{version}-"))
        fw.build_bundle(out, root=root)
        shutil.rmtree(root)
        _bundles[key] = out
    return _bundles[key]


def config_bundle(out: Path, board_json: dict[str, Any] | str, version: str) -> Path:
    """A config bundle in `out`: board.json and its manifest (kind config)."""
    out.mkdir(parents=True, exist_ok=True)
    data = (board_json if isinstance(board_json, str) else json.dumps(board_json)).encode()
    (out / "board.json").write_bytes(data)
    (out / fw.SLOT_MANIFEST).write_bytes(ota.encode_manifest(
        "config", version, (1, 22), [("board.json", len(data), hashlib.sha256(data).hexdigest())]))
    return out


class SlotBoard:
    """A slotted board on the unix port; restarted on exit code 3 (its reset) by a supervisor thread."""

    def __init__(self, workdir: Path, bundle_folder: Path, config: dict[str, Any], heap: str) -> None:
        self.dir = workdir
        self.config = config
        self.heap = heap
        self.main = fw.install_unix(workdir, bundle_folder, config)
        self.console = workdir / "console.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.exits: list[int] = []
        self.starts = 0
        self._on = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def _spawn(self) -> None:
        with self.console.open("ab") as out:
            self.process = subprocess.Popen(
                [tool("micropython"), "-X", f"heapsize={self.heap}", str(self.main), str(self.dir / "board.json")],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir,
            )
        self.starts += 1

    def _supervise(self) -> None:
        while self._on:
            with self._lock:
                p = self.process
            if p is None:
                return
            code = p.wait()
            with self._lock:
                if not self._on or p is not self.process:
                    return
                self.exits.append(code)
                if code != 3:  # only a reset starts it again; anything else is a crash the test sees
                    self._on = False
                    return
                self._spawn()

    def start(self) -> SlotBoard:
        with self._lock:
            self._on = True
            self._spawn()
        self._thread = threading.Thread(target=self._supervise, daemon=True)
        self._thread.start()
        return self

    def kill(self) -> None:
        """SIGKILL: a power cut (no DISCONNECT, nothing flushed beyond what the board wrote)."""
        with self._lock:
            self._on = False
            p = self.process
        if p is not None and p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)

    def stop(self) -> None:
        with self._lock:
            self._on = False
            p = self.process
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)

    def output(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def boot_record(self) -> dict[str, Any]:
        return json.loads((self.dir / "ota" / "boot.json").read_text())


class Responder:
    """The hub's part of an update, for one site: offers, chunks, state reports, confirmations."""

    def __init__(self, broker: Mosquitto, keys: dict[str, bytes]) -> None:
        self.keys = keys  # device -> command key
        self.releases: dict[str, Path] = {}  # offer id -> bundle folder
        self.states: list[tuple[str, dict[str, Any]]] = []  # (device, decoded state report)
        self.gets: list[tuple[str, dict[str, Any]]] = []
        self.births: list[tuple[str, str]] = []  # (device, fw) of each birth
        self.bad: list[str] = []
        self.delay = 0.0  # seconds before each chunk: a slow link
        self.on_get: Callable[[str, dict[str, Any]], None] | None = None
        self.tamper: Callable[[str, int, bytes], bytes] | None = None  # (id, file, chunk) -> chunk sent
        self.confirming = True
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"ota-responder-{os.getpid()}",
                                  clean_session=True)
        login(self.client, broker)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(10), "responder not subscribed"

    def _on_connect(self, c: paho.Client, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        c.subscribe([(f"qala/{SITE}/+/otaack", 1), (f"qala/{SITE}/+/telemetry", 1), (f"qala/{SITE}/+/status", 1)])

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def offer(self, device: str, rid: str, folder: Path, *, trial: int = 300, tries: int = 3,
              key: bytes | None = None, ts: int | None = None) -> None:
        manifest = (folder / fw.SLOT_MANIFEST).read_bytes()
        parsed = ota.parse_manifest(manifest)
        self.releases[rid] = folder
        payload = ota.encode_offer(key or self.keys[device], SITE, device, rid, parsed["kind"], parsed["version"],
                                   hashlib.sha256(manifest).hexdigest(), len(manifest), trial, tries,
                                   ts or int(time.time() * 1000))
        self.client.publish(topics.build(SITE, device, ota.OTA), payload, qos=1)

    def cancel(self, device: str, rid: str) -> None:
        payload = ota.encode_cancel(self.keys[device], SITE, device, rid, int(time.time() * 1000))
        self.client.publish(topics.build(SITE, device, ota.OTA), payload, qos=1)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            site, device, kind = topics.parse(msg.topic)
            if kind == topics.TELEMETRY:
                if self.confirming:
                    boot, seq = confirm.record_id(msg.payload)
                    self.client.publish(topics.build(site, device, topics.CONF), confirm.encode_conf(boot, seq),
                                        qos=0, retain=True)
                return
            if kind == topics.STATUS:
                status = json.loads(msg.payload)
                if status.get("state") == "online" and not msg.retain:
                    with self.lock:
                        self.births.append((device, status.get("fw")))
                return
            m = ota.decode_board(self.keys[device], site, device, msg.payload)
        except Exception as exc:
            with self.lock:
                self.bad.append(f"{msg.topic}: {exc!r}")
            return
        if m["op"] == "state":
            with self.lock:
                self.states.append((device, m))
            return
        with self.lock:
            self.gets.append((device, m))
        if self.on_get is not None:
            self.on_get(device, m)
        if self.delay:
            time.sleep(self.delay)
        self.client.publish(topics.build(site, device, ota.OTA), self.chunk(m), qos=1)

    def chunk(self, get: dict[str, Any]) -> bytes:
        rid, f, o, n = get["id"], get["f"], get["o"], get["n"]
        folder = self.releases.get(rid)
        if folder is None:
            return ota.encode_nochunk(rid, f, f"no release for id {rid}")
        manifest = (folder / fw.SLOT_MANIFEST).read_bytes()
        if f == -1:
            data = manifest
        else:
            files = ota.parse_manifest(manifest)["files"]
            if f >= len(files):
                return ota.encode_nochunk(rid, f, f"no file {f}")
            data = (folder / files[f][0]).read_bytes()
        if o > len(data):
            return ota.encode_nochunk(rid, f, f"offset {o} past the end ({len(data)})")
        part = data[o:o + min(n, ota.CHUNK_MAX)]
        if self.tamper is not None:
            part = self.tamper(rid, f, part)
        return ota.encode_chunk_header(rid, f, o, len(part)) + part

    def states_of(self, device: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for d, m in self.states if d == device]

    def wait_state(self, device: str, state: str, timeout: float, board: SlotBoard | None = None,
                   rid: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.states_of(device):
                if m["state"] == state and (rid is None or m["id"] == rid):
                    return m
            time.sleep(0.1)
        console = board.output()[-4000:] if board is not None else ""
        raise AssertionError(f"no state {state!r} from {device} within {timeout} s; states: "
                             f"{[(m['id'], m['state'], m.get('reason')) for m in self.states_of(device)]}; "
                             f"bad: {self.bad[-3:]}\nconsole:\n{console}")

    def wait_birth(self, device: str, version: str, timeout: float, board: SlotBoard | None = None,
                   after: int = 0) -> int:
        """Wait for a birth of `version` among the births after the first `after` ones; its index."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                mine = [fw_ for d, fw_ in self.births if d == device]
            for i in range(after, len(mine)):
                if mine[i] == version:
                    return i
            time.sleep(0.1)
        console = board.output()[-4000:] if board is not None else ""
        raise AssertionError(f"no birth of {version} from {device} within {timeout} s (births: {mine})\n"
                             f"console:\n{console}")

    def birth_count(self, device: str) -> int:
        with self.lock:
            return sum(1 for d, _ in self.births if d == device)


class Gate:
    """A TCP pass-through to (host, port) on a free loopback port; open() listens, close() stops listening and
    cuts every connection."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._server: socket.socket | None = None
        self._links: list[socket.socket] = []

    def open(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(8)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                near, _ = server.accept()
            except OSError:
                return
            far = socket.create_connection(self.target)
            self._links += [near, far]
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for s in self._links:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._links = []
