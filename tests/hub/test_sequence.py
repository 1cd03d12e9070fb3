"""Sequence tracking: gaps, duplicates, late arrivals and reboots per device."""

from __future__ import annotations

from hub.ingest.sequence import SequenceTracker, Verdict


def test_in_order_counts_nothing() -> None:
    t = SequenceTracker()
    assert t.see("d", 1, 0) is Verdict.FIRST
    assert [t.see("d", 1, s) for s in range(1, 5)] == [Verdict.NEXT] * 4
    assert (t.gaps, t.duplicates, t.late) == (0, 0, 0)


def test_gap_then_late_arrival() -> None:
    t = SequenceTracker()
    t.see("d", 1, 0)
    assert t.see("d", 1, 5) is Verdict.GAP
    assert t.gaps == 4
    assert t.missing("d") == 4
    assert t.see("d", 1, 3) is Verdict.LATE
    assert t.late == 1
    assert t.missing("d") == 3


def test_duplicates() -> None:
    t = SequenceTracker()
    t.see("d", 1, 0)
    t.see("d", 1, 1)
    assert t.see("d", 1, 1) is Verdict.DUPLICATE
    assert t.see("d", 1, 0) is Verdict.DUPLICATE
    assert t.duplicates == 2
    assert t.gaps == 0


def test_reboot_is_not_a_gap_and_old_boot_is_late() -> None:
    t = SequenceTracker()
    t.see("d", 1, 100)
    assert t.see("d", 2, 0) is Verdict.REBOOT
    assert t.reboots == 1
    assert t.gaps == 0
    assert t.see("d", 1, 101) is Verdict.LATE


def test_devices_are_independent() -> None:
    t = SequenceTracker()
    t.see("a", 1, 0)
    t.see("b", 1, 10)
    assert t.see("a", 1, 1) is Verdict.NEXT
    assert t.see("b", 1, 11) is Verdict.NEXT


def test_missing_window_is_bounded() -> None:
    t = SequenceTracker(window=100)
    t.see("d", 1, 0)
    t.see("d", 1, 1_000_000)
    assert t.gaps == 999_999
    assert t.missing("d") <= 100
    for s in range(1_000_001, 1_000_600):
        t.see("d", 1, s)
    assert t.missing("d") <= 100
