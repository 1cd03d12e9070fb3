"""Updates over the air on real boards: the unix `micropython` with the board heap, slotted by install_unix, on
the provisioned (TLS) mosquitto, against a stand-in for the hub's OTA server (tests/firmware/otarig.py).

What they show (docs/ota.md, "On the board"): an update from slot a to b, committed once the hub confirmed a
record of the new version's boot; a tampered file and an offer signed with another key refused; a version that
raises at start-up and one that never sends rolled back; a board killed mid-transfer resuming; a bad remote
config rolled back and a good one committed; a corrupt `ota/boot.json` still booting; a trial that keeps
resetting rolled back.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from protocols import ota
from tests._plugins.trust import store_of
from tests.firmware.boards import BOARD_HEAP, board_config
from tests.firmware.otarig import Gate, Responder, SlotBoard, bundle, config_bundle

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from simulators.services import Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.micropython]

DEVICE = "t1"
OLD = "0.1.0"
NEW = "0.2.0"
# a version whose Board raises while it is made: before any task runs
RAISES = (("firmware/app.py", "        self.hw = impl\n", "        raise ValueError('broken on purpose')\n"),)
# a version that samples but never publishes: its sender waits forever
SILENT = (("firmware/app.py", "        buf = self.buf\n        while True:\n            rec = buf.next()\n",
           ("        buf = self.buf\n        await asyncio.Event().wait()\n        while True:\n"
            "            rec = buf.next()\n")),)


def config(broker: Mosquitto, **overrides: Any) -> dict[str, Any]:
    cfg = board_config(broker, DEVICE, **overrides)
    cfg["buffer"] = {**cfg["buffer"], "confirm": True}  # the hub's confirmation proves a trial healthy
    cfg["sensors"] = {"air1": {"driver": "sim", "interval": 0.5, "quantities": ["pm25"]}}
    return cfg


@pytest.fixture
def mosquitto(mosquitto_factory: Any) -> Mosquitto:
    """The provisioned broker with Nagle off, as docs/ota.md ("Speed") tells a site to run it: a chunk's round
    trip without TCP's delayed acknowledgement (a download about half as long)."""
    broker: Mosquitto = mosquitto_factory(extra_config=["set_tcp_nodelay true"])
    return broker


@pytest.fixture
def rig(mosquitto: Mosquitto) -> Iterator[Responder]:
    store = store_of(mosquitto)
    assert store is not None
    identity = store.board(DEVICE)
    assert identity is not None
    responder = Responder(mosquitto, {DEVICE: identity.cmd_key})
    yield responder
    responder.close()


@pytest.fixture
def boards() -> Iterator[list[SlotBoard]]:
    started: list[SlotBoard] = []
    yield started
    for b in started:
        b.stop()


def started(boards: list[SlotBoard], board: SlotBoard) -> SlotBoard:
    boards.append(board)
    return board.start()


def test_update_from_a_to_b_committed_after_the_hub_confirms(
    mosquitto: Mosquitto, rig: Responder, boards: list[SlotBoard], tmp_path: Path
) -> None:
    board = started(boards, SlotBoard(tmp_path / "board", bundle(OLD), config(mosquitto), BOARD_HEAP))
    rig.wait_birth(DEVICE, OLD, 30, board)
    assert not (board.dir / "ota" / "boot.json").exists()  # a fresh install: slot a, no trial
    rig.offer(DEVICE, "r1", bundle(NEW))
    installed = rig.wait_state(DEVICE, "installed", 120, board)
    assert installed["version"] == NEW
    downloading = [m for m in rig.states_of(DEVICE) if m["state"] == "downloading"]
    assert 2 <= len(downloading) <= 11  # at most one report per 10 %
    assert downloading[0]["done"] == 0
    assert all(m["total"] == downloading[0]["total"] for m in downloading)
    assert [m["state"] for m in rig.states_of(DEVICE)][-2:] == ["verifying", "installed"]
    rig.wait_birth(DEVICE, NEW, 60, board)
    healthy = rig.wait_state(DEVICE, "healthy", 60, board)
    assert (healthy["id"], healthy["version"]) == ("r1", NEW)
    # the healthy report went from update mode (the loader committed and reset); then a reset into the normal run
    deadline = time.monotonic() + 60
    while sum(1 for _, fw in rig.births if fw == NEW) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    # four resets: into update mode for the download, into the trial, into update mode for the report, back
    assert board.exits == [3, 3, 3, 3]
    record = board.boot_record()
    assert (record["boot"], record["next"], record["version"]) == ("b", None, NEW)
    assert (board.dir / "b" / "manifest").is_file()
    assert (board.dir / "a" / "manifest").is_file()  # the old slot is untouched
    assert not (board.dir / "ota" / "offer.json").exists()
    assert not rig.bad, rig.bad
    # the next power-up runs the committed slot, without a trial and without reporting again
    board.stop()
    before = rig.birth_count(DEVICE)
    board.start()
    rig.wait_birth(DEVICE, NEW, 30, board, after=before)
    assert sum(1 for m in rig.states_of(DEVICE) if m["state"] == "healthy") == 1
    # the running version offered again: "current", nothing fetched
    gets = len(rig.gets)
    rig.offer(DEVICE, "r2", bundle(NEW))
    assert rig.wait_state(DEVICE, "current", 20, board)["id"] == "r2"
    assert len(rig.gets) == gets
    assert "Traceback" not in board.output()


def test_a_tampered_file_or_manifest_is_refused(
    mosquitto: Mosquitto, rig: Responder, boards: list[SlotBoard], tmp_path: Path
) -> None:
    board = started(boards, SlotBoard(tmp_path / "board", bundle(OLD), config(mosquitto), BOARD_HEAP))
    rig.wait_birth(DEVICE, OLD, 30, board)
    # one byte changed in a file after the release was made: its manifest no longer matches
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle(NEW), tampered)
    app = tampered / "firmware" / "app.mpy"
    data = bytearray(app.read_bytes())
    data[len(data) // 2] ^= 0x01
    app.write_bytes(bytes(data))
    rig.offer(DEVICE, "r1", tampered)
    refused = rig.wait_state(DEVICE, "refused", 120, board, rid="r1")
    assert refused["reason"] == "hash mismatch: firmware/app.mpy"
    assert [m["state"] for m in rig.states_of(DEVICE)][-2:] == ["verifying", "refused"]
    assert not any((board.dir / "b").iterdir())  # the slot emptied, nothing of it left
    assert not (board.dir / "ota" / "offer.json").exists()
    assert not (board.dir / "ota" / "boot.json").exists()
    # one byte changed in the manifest on the way: it no longer has the hash the signed offer names
    def flip(rid: str, f: int, part: bytes) -> bytes:
        if f == -1 and rid == "r2":
            return part.replace(b"version 0.2.0", b"version 0.2.1")
        return part

    rig.tamper = flip
    rig.offer(DEVICE, "r2", bundle(NEW))
    refused = rig.wait_state(DEVICE, "refused", 60, board, rid="r2")
    assert refused["reason"] == "hash mismatch: manifest"
    assert not any(m["f"] >= 0 for d, m in rig.gets if m["id"] == "r2")  # no file fetched
    assert set(board.exits) == {3}  # resets into update mode and back; never into a trial
    assert {fw for _, fw in rig.births} == {OLD}
    assert board.process is not None
    assert board.process.poll() is None
    assert "Traceback" not in board.output()


def test_an_offer_signed_with_another_key_or_replayed_is_refused(
    mosquitto: Mosquitto, rig: Responder, boards: list[SlotBoard], tmp_path: Path
) -> None:
    board = started(boards, SlotBoard(tmp_path / "board", bundle(OLD), config(mosquitto), BOARD_HEAP))
    rig.wait_birth(DEVICE, OLD, 30, board)
    rig.offer(DEVICE, "r1", bundle(NEW), key=bytes(range(100, 132)))
    refused = rig.wait_state(DEVICE, "refused", 30, board, rid="r1")
    assert refused["reason"] == "bad signature"
    rig.offer(DEVICE, "r2", bundle(NEW), ts=int(time.time() * 1000) - 2 * 86400000)
    refused = rig.wait_state(DEVICE, "refused", 30, board, rid="r2")
    assert refused["reason"].startswith("too old: offered 48 h")
    assert not rig.gets  # nothing was fetched
    assert not (board.dir / "ota" / "offer.json").exists()
    assert set(board.exits) == {3}  # resets into update mode and back
    assert {fw for _, fw in rig.births} == {OLD}


def test_a_version_that_raises_at_start_up_is_rolled_back(
    mosquitto: Mosquitto, rig: Responder, boards: list[SlotBoard], tmp_path: Path
) -> None:
    board = started(boards, SlotBoard(tmp_path / "board", bundle(OLD), config(mosquitto), BOARD_HEAP))
    rig.wait_birth(DEVICE, OLD, 30, board)
    before = rig.birth_count(DEVICE)
    rig.offer(DEVICE, "r1", bundle("0.3.0", RAISES))
    rig.wait_state(DEVICE, "installed", 120, board)
    rolled = rig.wait_state(DEVICE, "rolledback", 60, board)
    assert (rolled["id"], rolled["version"]) == ("r1", "0.3.0")
    assert rolled["reason"] == "raised at start-up: ValueError: broken on purpose"
    rig.wait_birth(DEVICE, OLD, 30, board, after=before)  # update mode has no birth
    # into update mode, into the trial, out of it into update mode (the report), into the old version
    assert board.exits == [3, 3, 3, 3]
    record = board.boot_record()
    assert (record["boot"], record["next"]) == ("a", None)
    assert not (board.dir / "b" / "manifest").exists()  # a rolled-back slot is never taken for a working one
    wait_gone(board.dir / "ota" / "last.json", 10)


def test_a_version_that_never_sends_is_rolled_back_after_its_trial(
    mosquitto: Mosquitto, rig: Responder, boards: list[SlotBoard], tmp_path: Path
) -> None:
    board = started(boards, SlotBoard(tmp_path / "board", bundle(OLD), config(mosquitto), BOARD_HEAP))
    rig.wait_birth(DEVICE, OLD, 30, board)
    rig.offer(DEVICE, "r1", bundle("0.4.0", SILENT), trial=10)
    rig.wait_state(DEVICE, "installed", 120, board)
    trial = rig.wait_birth(DEVICE, "0.4.0", 30, board)  # it starts, connects, is born: but sends nothing
    started_at = time.monotonic()
    rolled = rig.wait_state(DEVICE, "rolledback", 60, board)
    assert rolled["reason"] == "not healthy within 10 s"
    assert time.monotonic() - started_at >= 5
    rig.wait_birth(DEVICE, OLD, 30, board, after=trial + 1)
    assert board.exits == [3, 3, 3, 3]
    assert board.boot_record()["next"] is None
    assert not any(m["state"] == "healthy" for m in rig.states_of(DEVICE))


def test_a_board_killed_mid_transfer_resumes(
    mosquitto: Mosquitto, rig: Responder, boards: list[SlotBoard], tmp_path: Path
) -> None:
    board = started(boards, SlotBoard(tmp_path / "board", bundle(OLD), config(mosquitto), BOARD_HEAP))
    rig.wait_birth(DEVICE, OLD, 30, board)
    rig.delay = 0.01
    files = len(ota.parse_manifest((bundle(NEW) / "manifest").read_bytes())["files"])
    cuts = [files // 4, (2 * files) // 3]  # power cuts at two points of the transfer
    killed: list[dict[str, Any]] = []

    def cut(_device: str, get: dict[str, Any]) -> None:
        if cuts and get["f"] >= cuts[0] and get["o"] > 0:
            cuts.pop(0)
            killed.append(get)
            threading.Thread(target=board.kill).start()

    rig.on_get = cut
    rig.offer(DEVICE, "r1", bundle(NEW))
    for n in range(2):
        deadline = time.monotonic() + 120
        while len(killed) <= n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(killed) > n, board.output()[-3000:]
        while board.process is not None and board.process.poll() is None:
            time.sleep(0.05)
        gets = len(rig.gets)
        board.start()  # the power comes back
        deadline = time.monotonic() + 60
        while len(rig.gets) <= gets and time.monotonic() < deadline:
            time.sleep(0.05)
        first = rig.gets[gets][1]
        # carried on from where the flash says it got to: not from the start of the bundle
        assert (first["f"], first["o"]) >= (killed[n]["f"], 0), (first, killed[n])
        assert first["f"] >= 0
    rig.wait_state(DEVICE, "installed", 120, board)
    rig.wait_birth(DEVICE, NEW, 60, board)
    rig.wait_state(DEVICE, "healthy", 60, board)
    served = {(m["f"], m["o"]) for d, m in rig.gets}
    assert len(rig.gets) - len(served) <= 6  # few chunks asked twice (the ones the cuts interrupted)
    assert board.boot_record()["boot"] == "b"


def test_a_bad_remote_config_is_rolled_back_and_a_good_one_committed(
    mosquitto: Mosquitto, rig: Responder, boards: list[SlotBoard], tmp_path: Path
) -> None:
    cfg = config(mosquitto)
    board = started(boards, SlotBoard(tmp_path / "board", bundle(OLD), cfg, BOARD_HEAP))
    rig.wait_birth(DEVICE, OLD, 30, board)
    original = (board.dir / "board.json").read_text()
    bad = json.loads(json.dumps(cfg))
    bad["sensors"]["air1"]["driver"] = "nope"
    rig.offer(DEVICE, "c1", config_bundle(tmp_path / "c1", bad, "c1"))
    rig.wait_state(DEVICE, "installed", 60, board)
    rolled = rig.wait_state(DEVICE, "rolledback", 60, board)
    assert rolled["reason"].startswith("config: sensors.air1.driver: no driver 'nope'"), rolled
    assert (board.dir / "board.json").read_text() == original
    assert not (board.dir / "ota" / "board.new.json").exists()
    births = rig.birth_count(DEVICE)
    rig.wait_birth(DEVICE, OLD, 30, board, after=births - 1)
    # a good one: another sensor; committed on the hub's confirmation, the old config kept beside it
    good = json.loads(json.dumps(cfg))
    good["sensors"]["air2"] = {"driver": "sim", "interval": 0.5, "quantities": ["co2"]}
    rig.offer(DEVICE, "c2", config_bundle(tmp_path / "c2", good, "c2"))
    rig.wait_state(DEVICE, "healthy", 120, board, rid="c2")
    assert json.loads((board.dir / "board.json").read_text())["sensors"]["air2"]["quantities"] == ["co2"]
    assert (board.dir / "board.old.json").read_text() == original
    record = board.boot_record()
    assert (record["boot"], record["next"], record["config"]) == ("a", None, "c2")
    rig.offer(DEVICE, "c3", config_bundle(tmp_path / "c3", good, "c2"))
    assert rig.wait_state(DEVICE, "current", 30, board)["id"] == "c3"


def test_a_corrupt_boot_record_still_boots(
    mosquitto: Mosquitto, rig: Responder, boards: list[SlotBoard], tmp_path: Path
) -> None:
    """A power cut while ota/boot.json was written leaves it whole (tmp file + rename); a damaged flash may not.
    Whatever it holds, the board boots a complete slot."""
    board = SlotBoard(tmp_path / "board", bundle(OLD), config(mosquitto), BOARD_HEAP)
    (board.dir / "ota" / "boot.json").write_bytes(b'{"boot": "b", "next": "a", "co')  # cut mid-write
    (board.dir / "ota" / "boot.json.tmp").write_bytes(b"\x00" * 17)
    started(boards, board)
    rig.wait_birth(DEVICE, OLD, 30, board)
    board.stop()
    # another slot complete too (both were proved healthy once): a, the first, is taken; garbage in the record
    shutil.copytree(bundle(NEW), board.dir / "b", dirs_exist_ok=True)
    (board.dir / "ota" / "boot.json").write_bytes(b"\xff\xfe garbage")
    before = rig.birth_count(DEVICE)
    board.start()
    rig.wait_birth(DEVICE, OLD, 30, board, after=before)
    board.stop()
    # a record that names a slot that does not exist: the loader's checks refuse it as well
    (board.dir / "ota" / "boot.json").write_text('{"boot": "c", "next": null}')
    before = rig.birth_count(DEVICE)
    board.start()
    rig.wait_birth(DEVICE, OLD, 30, board, after=before)
    assert board.exits == []


def test_a_trial_that_keeps_resetting_is_rolled_back(
    mosquitto: Mosquitto, rig: Responder, boards: list[SlotBoard], tmp_path: Path
) -> None:
    """The loader counts a trial's boots on flash: the 4th boot of a trial with tries 3 runs the old slot."""
    board = SlotBoard(tmp_path / "board", bundle(OLD), config(mosquitto), BOARD_HEAP)
    shutil.copytree(bundle(NEW), board.dir / "b", dirs_exist_ok=True)
    (board.dir / "b" / "manifest").rename(board.dir / "b" / "manifest.new")
    (board.dir / "ota" / "boot.json").write_text(json.dumps(
        {"boot": "a", "next": "b", "kind": "fw", "count": 3, "max": 3, "timeout": 300, "id": "r7", "version": NEW}))
    started(boards, board)
    rolled = rig.wait_state(DEVICE, "rolledback", 30, board)
    assert (rolled["id"], rolled["version"], rolled["reason"]) == ("r7", NEW, "reset 3 times in a row")
    rig.wait_birth(DEVICE, OLD, 30, board)
    assert board.boot_record()["next"] is None


def test_a_cancelled_download_stops_and_the_board_goes_back_to_work(
    mosquitto: Mosquitto, rig: Responder, boards: list[SlotBoard], tmp_path: Path
) -> None:
    """A roll-out aborted while a board downloads: the hub's signed cancel stops the download, the board reports
    `cancelled`, forgets the offer and resets into its running version; a later offer of the same bundle resumes
    what is on flash."""
    board = started(boards, SlotBoard(tmp_path / "board", bundle(OLD), config(mosquitto), BOARD_HEAP))
    rig.wait_birth(DEVICE, OLD, 30, board)
    rig.delay = 0.05
    rig.offer(DEVICE, "r1", bundle(NEW))
    deadline = time.monotonic() + 60
    while len(rig.gets) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    before = rig.birth_count(DEVICE)
    rig.cancel(DEVICE, "r1")
    cancelled = rig.wait_state(DEVICE, "cancelled", 30, board)
    assert (cancelled["id"], cancelled["version"]) == ("r1", NEW)
    rig.wait_birth(DEVICE, OLD, 30, board, after=before)
    assert not (board.dir / "ota" / "offer.json").exists()
    assert board.boot_record()["next"] is None if (board.dir / "ota" / "boot.json").exists() else True
    assert not (board.dir / "b" / "manifest").exists()
    gets = len(rig.gets)
    rig.delay = 0
    rig.offer(DEVICE, "r2", bundle(NEW))
    rig.wait_state(DEVICE, "healthy", 120, board, rid="r2")
    resumed = rig.gets[gets][1]
    assert resumed["f"] >= 0, resumed  # the manifest and the files before it were on flash already
    assert "Traceback" not in board.output()


def test_a_report_without_an_uplink_waits_for_the_next_connection(
    mosquitto: Mosquitto, rig: Responder, boards: list[SlotBoard], tmp_path: Path
) -> None:
    """A trial's end leaves its report in ota/last.json; update mode, which sends it, finds no broker: after
    stall_after / 2 it leaves the report in ota/last.wait and the board goes back to work, and once the running
    board has connected it resets into update mode again, which sends it."""
    gate = Gate(mosquitto.host, mosquitto.port)
    cfg = config(mosquitto, stall_after=10)
    cfg["mqtt"]["port"] = gate.port
    cfg["mqtt"]["server_hostname"] = mosquitto.host
    board = SlotBoard(tmp_path / "board", bundle(OLD), cfg, BOARD_HEAP)
    (board.dir / "ota" / "last.json").write_text(json.dumps({"id": "r9", "version": NEW, "reason": "a reason"}))
    started(boards, board)
    try:
        wait_gone(board.dir / "ota" / "last.json", 30)  # update mode gave up: no broker
        assert (board.dir / "ota" / "last.wait").is_file(), board.output()[-2000:]
        assert "the report could not be sent" in board.output()
        assert not rig.states_of(DEVICE)
        gate.open()
        rolled = rig.wait_state(DEVICE, "rolledback", 60, board)
        assert (rolled["id"], rolled["version"], rolled["reason"]) == ("r9", NEW, "a reason")
        assert not (board.dir / "ota" / "last.wait").exists()
        rig.wait_birth(DEVICE, OLD, 30, board)  # the connect that sent it to update mode had no birth: it reset first
        assert board.exits == [3, 3, 3], board.output()[-2000:]  # out of update mode, into it again, out
    finally:
        gate.close()


def wait_gone(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not path.exists(), path
