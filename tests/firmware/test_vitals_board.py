"""A board that cannot work says so: the real firmware under `micropython` with a memory leak (the `sim`
driver's `leak` option keeps 4 KB more on every read) runs out of heap, its tasks fail with MemoryError; it
resets itself (on the unix port: exits with hw RESET_EXIT) with the reason in its console and the count on
flash, and after the restart its health reports `self_resets`.

The landed firmware fed its watchdog from a task of its own: such a board stayed up with every task
restarting after each MemoryError and nothing sent ("alive but silent"), and never reset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.firmware.boards import Board, Watcher, board_config, health

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.services import Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.micropython]

RESET_EXIT = 3  # firmware/hw/unix.py


def test_a_board_out_of_memory_resets_itself_and_counts_it(tmp_path: Path, mosquitto: Mosquitto) -> None:
    leaking = board_config(mosquitto, stall_after=10, actuators={})
    leaking["sensors"] = {"air1": {"driver": "sim", "interval": 0.2, "quantities": ["pm25"],
                                   "options": {"leak": 4096}}}
    board = Board(tmp_path / "board", leaking)
    board.start()
    assert board.process is not None
    try:
        code = board.process.wait(90)
    except Exception:
        board.kill()
        raise AssertionError("the board did not reset itself:\n" + board.output()[-3000:]) from None
    out = board.output()
    assert code == RESET_EXIT, out[-3000:]
    assert "MemoryError" in out
    assert "resetting the board (self reset 1)" in out, out[-3000:]
    reason = next(line for line in out.splitlines() if "resetting the board" in line)
    assert any(why in reason for why in ("out of memory", "sender stalled", "sampler stalled")), reason
    assert (tmp_path / "board" / "t1.state" / "self_resets").read_text() == "1"

    # the board comes back (fixed config here) and its health says it reset itself once
    fixed = board_config(mosquitto, actuators={})
    watcher = Watcher(mosquitto, "w-vitals", "qala/+/t1/telemetry")
    again = Board(tmp_path / "board", fixed)
    again.start()
    try:
        watcher.wait_for(lambda: any(h.get("self_resets") == 1 for h in health(watcher)), 30,
                         "a health report with self_resets 1", again)
        assert all(h.get("lagging") == 0 for h in health(watcher))
        assert again.alive
    finally:
        again.stop()
        watcher.close()
