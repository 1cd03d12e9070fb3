"""Issue 16's "must show": a fleet of 20 real boards updated over the air by the real hub.

Each board is the unix `micropython` at HEAP, laid out with A/B slots by hub.tools.fw.install_unix (release 0.1.0
in slot a, the loader as main.py) and logged in with its own identity of a store provisioned for this module;
the broker is the store's TLS mosquitto with `set_tcp_nodelay true` (docs/ota.md, "Speed"); influxd is the
session's; the hub runs in this process (in a thread of its own, so that a test's blocking waits never stall it)
and roll-outs are started and read through its HTTP API (hub.ota.api). Releases are built by
hub.tools.release.build_release, the code of `qala fw release`. A board process that exits is started again at
once (exit 3 is a reset on the unix port; a SIGKILL is a power cut), as a board's hardware would.

What the boards say is read from the broker by an observer (`Watch`): their births (the firmware version they
run) and their signed state reports on `otaack`, checked with each board's key; their consoles and slot folders
too. The roll-out record (GET /v1/rollouts/{id}) is the hub's side.

The stories, one test each, on one fleet shared by the module (each test reads the versions the boards run
when it starts, so they do not depend on their order):

1. 0.2.0 in waves of 5, 25, 100 % reaches every board: each reports healthy, its birth says 0.2.0, no board of
   a wave is offered before every board of the wave before has ended, the roll-out ends `done`.
2. A version that raises at start-up, and one whose sender never sends (rolled back by the trial's time-out,
   which the offer carries: `start_rollout(trial=...)`, not the board's config): the first wave's board rolls
   back by itself, the roll-out halts, the other 19 are never offered and run what they ran.
3. Tampered bundles: a release whose file changed before the hub loaded it is refused by the hub (422, no board
   hears of it); one changed after the hub loaded it is not served (a `nochunk`: the board refuses, "hub: ...");
   to get a tampered byte to a board all the same, the hub's outgoing chunks are changed on the way (in the
   hub's publish: a compromised broker would do the same), and the board's own hash check refuses it; an offer
   signed with another key is refused by the board, both when it comes from the hub's roll-out (re-signed on
   the way) and when a rogue client with a hub login publishes it. Each board stays on its version.
4. Boards killed (SIGKILL) at random chunk counts of their transfer (seeded: QALA_FLEET_SEED=N repeats a run;
   the seed is in every assertion message) resume where their flash says and end healthy on the new version.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub import config as hub_config
from hub.ota.api import call, read_rollout, start_rollout
from hub.service import Hub
from hub.tools import bundle as bundle_tool
from hub.tools import fw, release
from protocols import ota, topics
from simulators.services import Mosquitto
from tests._plugins.services import running
from tests._plugins.trust import SITE, login, provision_site
from tests.control.live import TOKEN
from tests.firmware.boards import board_config, tool
from tests.hub.conftest import v1_table, wait_until, write_config

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from hub.trust.store import TrustStore
    from simulators.services import Influxd

pytestmark = [pytest.mark.integration, pytest.mark.micropython]

HEAP = "160k"
"""Every board's heap: tests/ota/test_real_board.py's (an update's trial needs it: docs/ota.md, "Heap")."""
BOARDS = tuple(f"fleet-{i:02d}" for i in range(20))
SAMPLE_S = 3
"""The boards' one sensor, every SAMPLE_S s: slow, so that 20 boards fit two cores, and still soon enough for a
trial's first record to be confirmed by the hub well within its trial."""
OLD, NEW, RAISES, SILENT, AFTER_LOAD, BEFORE_LOAD, OTHER, KILLED = (
    "0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0")
PATCHES: dict[str, tuple[tuple[str, str, str], ...]] = {
    # its Board raises while it is made, before any task runs
    RAISES: (("firmware/app.py", "        self.hw = impl\n", "        raise ValueError('broken on purpose')\n"),),
    # it samples, connects and is born, but its sender waits forever: the hub never confirms a record of it
    SILENT: (("firmware/app.py", "        buf = self.buf\n        while True:\n            rec = buf.next()\n",
              ("        buf = self.buf\n        await asyncio.Event().wait()\n        while True:\n"
               "            rec = buf.next()\n")),),
}
OTHER_KEY = bytes(range(100, 132))
"""A command key that is no board's."""
TRIAL = 60
"""Seconds a new version has to prove healthy (a roll-out's `trial`, carried by its offers)."""
SILENT_TRIAL = 12
"""The never-sending version's trial: short, so that its time-out rolls it back soon (the API's minimum is 10)."""
SEED = int(os.environ.get("QALA_FLEET_SEED") or random.SystemRandom().randrange(1 << 31))
TAMPERED_FILE = "firmware/app.mpy"


class Runner:
    """A board's process, started again whenever it exits, until stopped (test_real_board.py's Runner, with kill)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.codes: list[int] = []
        self.kills = 0
        self.stopping = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with (self.folder / "console.log").open("ab") as out:
            while True:
                with self.lock:
                    if self.stopping:
                        return
                    self.starts += 1
                    self.process = subprocess.Popen(
                        [tool("micropython"), "-X", f"heapsize={HEAP}", str(self.folder / "main.py"),
                         str(self.folder / "board.json")], stdout=out, stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL, cwd=self.folder)
                    process = self.process
                code = process.wait()
                with self.lock:
                    self.codes.append(code)

    def kill(self) -> None:
        """SIGKILL: a power cut (no DISCONNECT, nothing flushed); the runner starts the board again."""
        with self.lock:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
                self.kills += 1

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.thread.join(10)

    def console(self, since: int = 0) -> str:
        with (self.folder / "console.log").open("rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")

    def console_size(self) -> int:
        return (self.folder / "console.log").stat().st_size


@dataclass
class Birth:
    at: float
    fw: str


@dataclass
class Watch:
    """An observer on the broker (a hub-role login): every board's births and signed state reports, and the chunk
    requests (`get`), as the boards send them. `on_get(device, get)` runs in paho's thread for every get."""

    keys: dict[str, bytes]
    births: dict[str, list[Birth]] = field(default_factory=dict)
    reports: dict[str, list[tuple[float, dict[str, Any]]]] = field(default_factory=dict)
    gets: dict[tuple[str, str], list[tuple[float, int, int]]] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)
    on_get: Callable[[str, dict[str, Any]], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    client: paho.Client | None = None

    def connect(self, broker: Mosquitto) -> None:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="fleet-watch", clean_session=True)
        login(client, broker)
        subscribed = threading.Event()
        client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(
            [(f"qala/{SITE}/+/{topics.STATUS}", 1), (f"qala/{SITE}/+/{ota.OTAACK}", 1)])
        client.on_subscribe = lambda *_a: subscribed.set()
        client.on_message = self._message
        client.max_inflight_messages_set(1000)
        client.connect(broker.host, broker.port, keepalive=30)
        client.loop_start()
        assert subscribed.wait(20), "the watcher is not subscribed"
        self.client = client

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    def _message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        now = time.monotonic()
        try:
            _site, device, kind = topics.parse(msg.topic)
            payload = bytes(msg.payload)
            if kind == topics.STATUS:
                doc = json.loads(payload)
                if doc.get("state") == "online":
                    with self.lock:
                        self.births.setdefault(device, []).append(Birth(now, str(doc.get("fw"))))
                return
            m = ota.decode_board(self.keys[device], SITE, device, payload)  # a state report's signature checked
        except Exception as exc:  # kept for the assertions, which say what came
            with self.lock:
                self.bad.append(f"{msg.topic}: {exc!r}")
            return
        if m["op"] == "get":
            with self.lock:
                self.gets.setdefault((device, m["id"]), []).append((now, m["f"], m["o"]))
            if self.on_get is not None:
                self.on_get(device, m)
            return
        with self.lock:
            self.reports.setdefault(device, []).append((now, m))

    def version(self, device: str) -> str | None:
        """What the board's latest birth says it runs."""
        with self.lock:
            mine = self.births.get(device, [])
            return mine[-1].fw if mine else None

    def births_since(self, device: str, mark: float) -> list[str]:
        with self.lock:
            return [b.fw for b in self.births.get(device, []) if b.at >= mark]

    def states(self, device: str, rid: str) -> list[dict[str, Any]]:
        """The board's signed reports about roll-out (or offer) id `rid`, in order."""
        with self.lock:
            return [m for _, m in self.reports.get(device, []) if m["id"] == rid]

    def first_report(self, device: str, rid: str) -> float:
        with self.lock:
            return min(t for t, m in self.reports.get(device, []) if m["id"] == rid)

    def final_at(self, device: str, rid: str) -> float:
        with self.lock:
            return max(t for t, m in self.reports.get(device, [])
                       if m["id"] == rid and m["state"] in ("healthy", "rolledback", "refused", "current"))

    def got(self, device: str, rid: str) -> list[tuple[float, int, int]]:
        with self.lock:
            return list(self.gets.get((device, rid), []))


class HubThread:
    """The real hub (hub.service.Hub) in this process, on an event loop of its own thread."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.hub: Hub | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="fleet-hub", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self.hub = Hub(hub_config.load(self.config_path))
            task = asyncio.create_task(self.hub.run())
            await self.hub.ready.wait()
            await asyncio.to_thread(self.hub.broker.subscribed.wait, 20)
            self.ready.set()
            await task

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start() and the tests
            self.error = exc
        finally:
            self.ready.set()

    def start(self) -> Hub:
        self.thread.start()
        assert self.ready.wait(60), "the hub did not start"
        assert self.error is None, f"the hub failed: {self.error!r}"
        assert self.hub is not None
        assert self.hub.api_port
        return self.hub

    def stop(self) -> None:
        if self.loop is not None and self.hub is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.hub.request_stop)
        self.thread.join(60)


@dataclass
class Fleet:
    root: Path
    store: TrustStore
    broker: Mosquitto
    hub: Hub
    port: int
    watch: Watch
    runners: dict[str, Runner]
    releases: Path
    built: dict[str, release.Release]
    staged: Path
    """A release built outside the hub's folder (BEFORE_LOAD), for the test that copies it in tampered."""

    def finished(self, rid: str, within: float) -> dict[str, Any]:
        """The roll-out record once it ended (done, halted, aborted)."""
        def ended() -> Any:
            doc = read_rollout(self.port, TOKEN, rid)
            if doc["state"] in ("done", "halted", "aborted"):
                return True
            return doc["state"], doc["counts"], self.progress()

        wait_until(ended, within, interval=0.5, what=f"roll-out {rid} to end")
        return read_rollout(self.port, TOKEN, rid)

    def versions(self) -> dict[str, str | None]:
        return {d: self.watch.version(d) for d in BOARDS}

    def progress(self) -> str:
        return ", ".join(f"{d}: {self.watch.version(d)} starts={r.starts}" for d, r in self.runners.items())

    def tail(self, device: str, since: int = 0) -> str:
        return self.runners[device].console(since)[-3000:]


def build_releases(root: Path) -> tuple[dict[str, release.Release], Path]:
    """Every version the tests offer, built as `qala fw release` builds them (two at a time: mpy-cross)."""
    sources: dict[str, Path] = {}
    for version, patches in PATCHES.items():
        tree = root / "src" / version
        for package in bundle_tool.PACKAGES:
            shutil.copytree(bundle_tool.REPO_ROOT / package, tree / package,
                            ignore=shutil.ignore_patterns("__pycache__"))
        for rel, old, new in patches:
            path = tree / rel
            text = path.read_text()
            assert text.count(old) == 1, f"{rel}: {old!r} found {text.count(old)} times: the patch needs updating"
            path.write_text(text.replace(old, new))
        sources[version] = tree
    staged = root / "staged" / BEFORE_LOAD

    def one(version: str) -> release.Release:
        out = staged if version == BEFORE_LOAD else root / "releases" / version
        return release.build_release(out, version, root=sources.get(version, bundle_tool.REPO_ROOT))

    versions = (OLD, NEW, RAISES, SILENT, AFTER_LOAD, BEFORE_LOAD, OTHER, KILLED)
    with ThreadPoolExecutor(2) as pool:
        built = dict(zip(versions, pool.map(one, versions), strict=True))
    return built, staged


def board_json(broker: Mosquitto, device: str) -> dict[str, Any]:
    cfg = board_config(broker, device, health_interval=60)
    cfg["sensors"] = {"air1": {"driver": "sim", "interval": SAMPLE_S, "quantities": ["pm25"]}}
    cfg["actuators"] = {}
    cfg["buffer"] = {**cfg["buffer"], "confirm": True}  # the hub's confirmation proves a trial healthy
    return cfg


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, influxd: Influxd) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    store = provision_site(root / "store", BOARDS)
    built, staged = build_releases(root)
    database = f"fleet_{os.getpid()}_{int(time.time())}"
    influxd.create_database(database)
    watch = Watch({d: identity.cmd_key for d in BOARDS if (identity := store.board(d)) is not None})
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(running(Mosquitto(root / "mosquitto", store=store.root,
                                                       extra_config=["set_tcp_nodelay true"])))
        watch.connect(broker)
        stack.callback(watch.close)
        # require_birth off as in test_real_board.py: a board's first records can reach the hub before its first
        # birth (its sender starts once MQTT is up, while the birth still waits for its subscriptions)
        path = write_config(root, broker, v1_table(influxd, database), site={"require_birth": False},
                            api={"control_token": TOKEN, "port": 0},
                            ota={"releases": str(root / "releases"), "tick": 0.2})
        runners = {}
        for device in BOARDS:
            fw.install_unix(root / "boards" / device, built[OLD].folder, board_json(broker, device))
            runners[device] = Runner(root / "boards" / device)
        hub_thread = HubThread(path)
        stack.callback(hub_thread.stop)
        hub = hub_thread.start()

        def stop_boards() -> None:
            with ThreadPoolExecutor(len(runners)) as pool:
                list(pool.map(Runner.stop, runners.values()))

        stack.callback(stop_boards)
        for runner in runners.values():
            runner.thread.start()
        made = Fleet(root, store, broker, hub, hub.api_port or 0, watch, runners, root / "releases", built, staged)
        wait_until(lambda: all(v == OLD for v in made.versions().values()) or made.versions(), 90,
                   what="every board's birth of 0.1.0")
        yield made


@pytest.fixture(autouse=True)
def sound(fleet: Fleet) -> Iterator[None]:
    """After each test: no board crashed (every exit a reset, 3, or one of our kills) and no traceback."""
    sizes = {d: r.console_size() for d, r in fleet.runners.items()}
    codes = {d: len(r.codes) for d, r in fleet.runners.items()}
    yield
    for device, runner in fleet.runners.items():
        new = runner.codes[codes[device]:]
        assert set(new) <= {3, -signal.SIGKILL}, f"{device} exits {new}:\n{fleet.tail(device, sizes[device])}"
        console = runner.console(sizes[device])
        assert "Traceback" not in console, f"{device}:\n{console[-3000:]}"
    assert not fleet.watch.bad, fleet.watch.bad[-5:]


# ---------------------------------------------------------------------------------------------- the stories


def test_a_rollout_in_waves_reaches_every_board(fleet: Fleet) -> None:
    mark = time.monotonic()
    started = start_rollout(fleet.port, TOKEN, NEW, "all", waves=[5, 25, 100], trial=TRIAL)
    rid = started["id"]
    assert (started["counts"]["targeted"], started["wave_sizes"]) == (20, [1, 5, 20])
    doc = fleet.finished(rid, 240)
    assert doc["state"] == "done", doc
    assert {d: b["state"] for d, b in doc["boards"].items()} == dict.fromkeys(BOARDS, "healthy"), doc["boards"]
    assert [e["event"] for e in doc["events"]] == ["start", "wave", "wave", "wave", "done"]
    # what the boards say: each reported healthy on 0.2.0 (signed with its key), and was born again as 0.2.0
    for device in BOARDS:
        states = fleet.watch.states(device, rid)
        assert said(states)[-2:] == ["installed", "healthy"], (device, states)
        assert {m["version"] for m in states} == {NEW}
    settled(fleet, mark, NEW)
    # in waves: no board of a wave said anything about it before every board of the wave before had ended
    waves: dict[int, list[str]] = {}
    for device, board in doc["boards"].items():
        waves.setdefault(board["wave"], []).append(device)
    assert sorted(len(m) for m in waves.values()) == [1, 4, 15]
    for wave in (2, 3):
        ended = max(fleet.watch.final_at(d, rid) for d in waves[wave - 1])
        first = min(fleet.watch.first_report(d, rid) for d in waves[wave])
        assert first > ended, f"wave {wave} heard from {ended - first:.1f} s before wave {wave - 1} ended"


def said(reports: list[dict[str, Any]]) -> list[str]:
    """The states a board reported, a state repeated at once counted once: QoS 1 allows a report twice (sent
    again after a reconnect whose PUBACK was lost); the hub keeps the first."""
    out: list[str] = []
    for m in reports:
        if not out or out[-1] != m["state"]:
            out.append(m["state"])
    return out


def settled(fleet: Fleet, mark: float, version: str) -> None:
    """Every board born twice on `version` since mark: on trial, then in its normal run (update mode sent the
    `healthy` report and reset): the update is over for all of them, nothing more restarts."""
    def done() -> Any:
        late = {d: fleet.watch.births_since(d, mark) for d in BOARDS}
        return all(b.count(version) >= 2 for b in late.values()) or late

    wait_until(done, 60, what=f"every board born on trial and again in its normal run on {version}")
    assert fleet.versions() == dict.fromkeys(BOARDS, version), fleet.versions()


def broken_rollout(fleet: Fleet, version: str, trial: int) -> tuple[str, dict[str, Any], str, float]:
    """Roll a broken version out to every board in waves of 5, 25, 100 %; (id, the record once it ended, the
    first wave's board, when that board was born on trial (0 if never)), with the other boards checked
    untouched: never offered, never reset, still on what they ran."""
    before = fleet.versions()
    assert None not in before.values(), before
    starts = {d: r.starts for d, r in fleet.runners.items()}
    sizes = {d: r.console_size() for d, r in fleet.runners.items()}
    mark = time.monotonic()
    started = start_rollout(fleet.port, TOKEN, version, "all", waves=[5, 25, 100], trial=trial)
    rid = started["id"]
    doc = fleet.finished(rid, 180)
    assert doc["state"] == "halted", doc
    assert doc["reason"] == "wave 1: 1 of 1 boards failed, more than 10%"
    (first,) = [d for d, b in doc["boards"].items() if b["wave"] == 1]
    assert doc["boards"][first]["state"] == "rolledback", doc["boards"][first]
    assert [e["event"] for e in doc["events"]] == ["start", "wave", "halt"]
    assert doc["counts"]["waiting"] == 19
    # the first wave's board, in its own words: installed, then rolled back, then born again as what it ran
    states = fleet.watch.states(first, rid)
    assert said(states)[-2:] == ["installed", "rolledback"], (states, fleet.tail(first))
    assert {m["version"] for m in states} == {version}
    assert states[-1]["reason"] == doc["boards"][first]["reason"]
    wait_until(lambda: fleet.watch.births_since(first, mark)[-1:] == [before[first]]
               or fleet.watch.births_since(first, mark), 30, what=f"{first} born again on {before[first]}")
    assert json.loads((fleet.runners[first].folder / "ota" / "boot.json").read_text())["next"] is None  # no trial
    trial_births = [b for b in fleet.watch.births.get(first, []) if b.at >= mark and b.fw == version]
    # the rest: never offered (no report, no reset, nothing about an update on their consoles), versions kept
    for device in BOARDS:
        if device == first:
            continue
        assert doc["boards"][device]["state"] == "waiting"
        assert not fleet.watch.states(device, rid), device
        assert fleet.runners[device].starts == starts[device], (device, fleet.tail(device, sizes[device]))
        assert "ota:" not in fleet.runners[device].console(sizes[device]), fleet.tail(device, sizes[device])
        assert not (fleet.runners[device].folder / "ota" / "offer.json").exists()
        assert fleet.watch.version(device) == before[device]
    return rid, doc, first, trial_births[0].at if trial_births else 0.0


def test_a_version_that_raises_at_start_up_is_rolled_back_and_halts_the_rollout(fleet: Fleet) -> None:
    _rid, doc, first, born = broken_rollout(fleet, RAISES, TRIAL)
    assert doc["boards"][first]["reason"] == "raised at start-up: ValueError: broken on purpose"
    assert not born  # it never got as far as a birth


def test_a_version_that_never_sends_is_rolled_back_by_its_trial_timeout(fleet: Fleet) -> None:
    rid, doc, first, born = broken_rollout(fleet, SILENT, SILENT_TRIAL)
    assert doc["boards"][first]["reason"] == f"not healthy within {SILENT_TRIAL} s"
    assert born, "the silent version starts, connects and is born: it only never sends"
    rolled_at = min(t for t, m in fleet.watch.reports[first] if m["id"] == rid and m["state"] == "rolledback")
    assert rolled_at - born >= SILENT_TRIAL - 3  # the trial ran its time (counted from the loader's start)


def test_a_tampered_bundle_is_refused(fleet: Fleet) -> None:
    x, y, z, w = BOARDS[16:20]
    before = fleet.versions()
    mark = time.monotonic()
    # 1. changed before the hub loaded it: the hub refuses the release; no board hears of it
    tampered = fleet.releases / BEFORE_LOAD
    shutil.copytree(fleet.staged, tampered)
    flip(tampered / TAMPERED_FILE)
    status, answer = call(f"http://127.0.0.1:{fleet.port}", TOKEN, "POST", "/v1/rollouts",
                          {"version": BEFORE_LOAD, "to": "all"})
    assert (status, answer["field"]) == (422, "version"), answer
    assert f"{TAMPERED_FILE}: size or SHA-256 differs from the manifest" in answer["error"]
    # 2. changed after the hub loaded it (at its start): the hub will not serve it, the board refuses
    flip(fleet.releases / AFTER_LOAD / TAMPERED_FILE)
    after_load = start_rollout(fleet.port, TOKEN, AFTER_LOAD, f"devices:{x}", waves=[100], trial=TRIAL)["id"]
    # 3. changed on the way (the hub's publish; a broker would be the other place): the board's own check
    other = fleet.built[OTHER]
    index = [f.path for f in other.files].index(TAMPERED_FILE)
    keys = fleet.watch.keys
    server = fleet.hub.ota.server
    publish = server.publish

    def on_the_way(topic: str, payload: bytes, qos: int = 1) -> None:
        device = topics.parse(topic)[1]
        if device == y and ota.is_chunk(payload):
            head, data = ota.split_chunk(payload)
            if head["op"] == "chunk" and head["f"] == index and head["o"] == 0:
                changed = bytearray(data)
                changed[len(changed) // 2] ^= 0x01
                payload = ota.encode_chunk_header(head["id"], head["f"], head["o"], len(changed)) + bytes(changed)
        elif device == z and payload.startswith(b'{"op":"offer"'):  # 4. signed with another key
            m = ota.decode_offer(keys[z], SITE, z, payload)
            payload = ota.encode_offer(OTHER_KEY, SITE, z, m["id"], m["kind"], m["version"], m["manifest"],
                                       m["size"], m["trial"], m["tries"], m["ts"])
        publish(topic, payload, qos=qos)

    server.publish = on_the_way
    try:
        in_transit = start_rollout(fleet.port, TOKEN, OTHER, f"devices:{y}", waves=[100], trial=TRIAL)["id"]
        other_key = start_rollout(fleet.port, TOKEN, OTHER, f"devices:{z}", waves=[100], trial=TRIAL)["id"]
        # 5. a forged offer straight from a rogue client with a hub login, signed with another key
        forged = ota.encode_offer(OTHER_KEY, SITE, w, "r-forged", "fw", OTHER, other.manifest_sha,
                                  len(other.manifest), TRIAL, 3, int(time.time() * 1000))
        assert fleet.watch.client is not None
        fleet.watch.client.publish(topics.build(SITE, w, ota.OTA), forged, qos=1)
        docs = {rid: fleet.finished(rid, 180) for rid in (after_load, in_transit, other_key)}
        wait_until(lambda: bool(fleet.watch.states(w, "r-forged")) or fleet.tail(w), 60, what=f"{w}'s refusal")
    finally:
        server.publish = publish
    expected = {
        (x, after_load): "hub: the file changed since the release was loaded",
        (y, in_transit): f"hash mismatch: {TAMPERED_FILE}",
        (z, other_key): "bad signature",
        (w, "r-forged"): "bad signature",
    }
    for (device, rid), reason in expected.items():
        states = fleet.watch.states(device, rid)  # the board's own signed report
        assert states, (device, fleet.tail(device))
        assert (states[-1]["state"], states[-1].get("reason")) == ("refused", reason), (device, states)
        if rid in docs:
            assert docs[rid]["state"] == "halted"
            assert (docs[rid]["boards"][device]["state"], docs[rid]["boards"][device]["reason"]) == (
                "refused", reason)
        # it stays on its version: born again as what it ran, no trial, nothing left of the download
        wait_until(lambda d=device: bool(fleet.watch.births_since(d, mark)) or fleet.tail(d), 60,
                   what=f"{device} back in its normal run")
        assert set(fleet.watch.births_since(device, mark)) == {before[device]}
        folder = fleet.runners[device].folder
        assert not (folder / "ota" / "offer.json").exists()
        assert json.loads((folder / "ota" / "boot.json").read_text())["next"] is None \
            if (folder / "ota" / "boot.json").exists() else True
    assert not fleet.watch.got(z, other_key)  # an offer refused: nothing fetched
    assert not fleet.watch.got(w, "r-forged")
    assert fleet.watch.got(y, in_transit)[-1][1] == len(other.files) - 1  # fetched to the end, then refused
    assert fleet.hub.ota.server.counts["nochunk"] >= 1
    assert fleet.versions() == before


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_boards_killed_mid_transfer_resume_and_end_healthy(fleet: Fleet) -> None:
    rng = random.Random(SEED)
    new = fleet.built[KILLED]
    chunks = -(-len(new.manifest) // 512) + sum(-(-f.size // 512) for f in new.files)
    victims = sorted(rng.sample(BOARDS, 10))
    plan = {d: sorted(rng.sample(range(1, chunks), rng.choice((1, 2)))) for d in victims}
    seen = f"seed {SEED} (QALA_FLEET_SEED), kills at chunk requests {plan}"
    killed: dict[str, list[tuple[int, int]]] = {d: [] for d in victims}  # (file, offset) asked when killed
    counts = dict.fromkeys(victims, 0)

    def cut(device: str, get: dict[str, Any]) -> None:
        if device not in plan:
            return
        counts[device] += 1
        if plan[device] and counts[device] >= plan[device][0]:
            plan[device].pop(0)
            killed[device].append((get["f"], get["o"]))
            fleet.runners[device].kill()

    kills = {d: r.kills for d, r in fleet.runners.items()}
    fleet.watch.on_get = cut
    mark = time.monotonic()
    try:
        started = start_rollout(fleet.port, TOKEN, KILLED, "all", waves=[100], trial=TRIAL)
        rid = started["id"]
        doc = fleet.finished(rid, 240)
    finally:
        fleet.watch.on_get = None
    assert doc["state"] == "done", (seen, doc)
    assert {d: b["state"] for d, b in doc["boards"].items()} == dict.fromkeys(BOARDS, "healthy"), (seen, doc)
    for device in victims:
        runner = fleet.runners[device]
        assert runner.kills - kills[device] == len(killed[device]) >= 1, (seen, device, killed[device])
        # after each power cut it asked on from where its flash said, not from the start of the bundle
        asked = [(f, o) for _, f, o in fleet.watch.got(device, rid)]
        for f, o in killed[device]:
            at = asked.index((f, o))
            resumed = next((g for g in asked[at + 1:] if g != (f, o)), None)
            assert resumed is not None, (seen, device, f, o)
            assert (f, o) <= resumed, (seen, device, f, o, resumed)
            assert resumed[0] <= f + 1, (seen, device, f, o, resumed)
        states = fleet.watch.states(device, rid)
        assert said(states)[-2:] == ["installed", "healthy"], (seen, device, states)
    for device in BOARDS:
        assert {m["version"] for m in fleet.watch.states(device, rid)} == {KILLED}
    settled(fleet, mark, KILLED)
