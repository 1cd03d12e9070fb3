"""Updates over the air on real boards: the unix `micropython` with the board heap, slotted by install_unix, on
the provisioned (TLS) mosquitto, against a stand-in for the hub's OTA server (tests/firmware/otarig.py).

What they show (docs/ota.md, "On the board"): an update from slot a to b, committed once the hub confirmed a
record of the new version's boot; a tampered file and an offer signed with another key refused; a version that
raises at start-up and one that never sends rolled back; a board killed mid-transfer resuming; a bad remote
config rolled back and a good one committed; a corrupt `ota/boot.json` still booting; a trial that keeps
resetting rolled back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests._plugins.trust import store_of
from tests.firmware.boards import BOARD_HEAP, board_config
from tests.firmware.otarig import Responder, SlotBoard, bundle

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
    assert board.exits == [3]  # one reset: into the trial
    record = board.boot_record()
    assert (record["cur"], record["new"], record["version"]) == ("b", None, NEW)
    assert (board.dir / "b" / "manifest").is_file()
    assert (board.dir / "a" / "manifest").is_file()  # the old slot is untouched
    assert not (board.dir / "ota" / "offer").exists()
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
