"""hub/ingest/confirm.py: the marks the hub confirms to boards. Pure: ids in, confirmations out, a file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.ingest.confirm import BOOTS, Confirmations

if TYPE_CHECKING:
    from pathlib import Path


def ids(device: str, boot: int, seqs: range | list[int]) -> list[tuple[str, int, int]]:
    return [(device, boot, s) for s in seqs]


def test_a_contiguous_run_is_confirmed_once_per_round() -> None:
    c = Confirmations()
    c.spooled(ids("t1", 0, range(5)), now=0)
    c.spooled(ids("t2", 3, range(2)), now=0)
    assert sorted(c.due(now=1)) == [("t1", 0, 4), ("t2", 3, 1)]
    assert c.due(now=2) == []  # nothing moved: nothing sent
    c.spooled(ids("t1", 0, [5]), now=2)
    assert c.due(now=3) == [("t1", 0, 5)]


def test_a_hole_holds_the_mark_back_until_it_fills() -> None:
    c = Confirmations()
    c.spooled(ids("t1", 0, [0, 1, 2, 5, 6]), now=0)  # 3 and 4 lost on the way (a broker crash)
    assert c.due(now=1) == [("t1", 0, 2)]
    assert c.mark("t1", 0) == 2
    c.spooled(ids("t1", 0, [7]), now=2)
    assert c.due(now=3) == []
    c.spooled(ids("t1", 0, [3, 4]), now=4)  # the board sent them again
    assert c.due(now=5) == [("t1", 0, 7)]
    assert c.gaps_given_up == 0


def test_a_duplicate_repeats_the_confirmation_the_board_missed() -> None:
    c = Confirmations()
    c.spooled(ids("t1", 0, range(3)), now=0)
    assert c.due(now=1) == [("t1", 0, 2)]  # lost on its way (QoS 0) while the board was still connected
    c.spooled(ids("t1", 0, range(3)), now=31)  # so the board resends what it holds
    assert c.due(now=32) == [("t1", 0, 2)]  # the same mark again
    assert c.mark("t1", 0) == 2
    assert c.due(now=33) == []


def test_confirmations_that_could_not_go_out_are_due_again() -> None:
    c = Confirmations()
    c.spooled(ids("t1", 0, range(3)), now=0)
    due = c.due(now=1)
    c.again(due)  # the marks file could not be saved
    assert c.due(now=2) == [("t1", 0, 2)]


def test_a_hole_older_than_gap_timeout_is_given_up_and_counted() -> None:
    c = Confirmations(gap_timeout=60)
    c.spooled(ids("t1", 0, [0, 1, 4, 5]), now=100)  # 2 and 3 dropped by the board (its buffer was full)
    assert c.due(now=101) == [("t1", 0, 1)]
    assert c.due(now=159) == []
    assert c.due(now=160) == [("t1", 0, 5)]
    assert c.gaps_given_up == 2


def test_a_new_boot_starts_from_nothing_and_old_boots_are_forgotten() -> None:
    c = Confirmations()
    c.spooled(ids("t1", 0, range(3)), now=0)
    c.spooled(ids("t1", 1, range(2)), now=0)  # the board rebooted; its buffer still holds boot 0's tail
    assert sorted(c.due(now=1)) == [("t1", 0, 2), ("t1", 1, 1)]
    for boot in range(2, 2 + BOOTS):
        c.spooled(ids("t1", boot, [0]), now=2)
    assert c.mark("t1", 0) == -1  # only the newest BOOTS boots are kept
    assert c.mark("t1", 1 + BOOTS) == 0


def test_marks_survive_a_restart(tmp_path: Path) -> None:
    c = Confirmations()
    c.spooled(ids("t1", 7, range(10)), now=0)
    c.spooled(ids("t1", 7, [12]), now=0)  # above a hole: not confirmed, so not saved as confirmed
    c.due(now=1)
    path = tmp_path / "confirmed.json"
    c.save(path)
    again = Confirmations()
    again.load(path)
    assert again.mark("t1", 7) == 9
    again.spooled(ids("t1", 7, [10, 11, 12]), now=2)
    assert again.due(now=3) == [("t1", 7, 12)]


def test_a_damaged_marks_file_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "confirmed.json"
    path.write_text('{"format":1,"devices":{"t1":{"x":')
    c = Confirmations()
    c.load(path)  # no exception: the hub starts, boards resend what it does not confirm
    assert c.mark("t1", 0) == -1
    c.load(tmp_path / "missing.json")
