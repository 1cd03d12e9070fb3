"""Per-device sequence tracking: gaps, duplicates and late arrivals from telemetry `(boot, seq)`.

A board numbers its telemetry messages 0, 1, 2... from each boot, and `(boot, seq)` identifies a message.
The tracker keeps, per device, the current boot, the highest seq seen and a bounded window of the seqs that
are still missing, so that:
- a jump forward counts the skipped messages as a gap (`gaps`),
- a message already seen counts as a duplicate (redelivery after a hub restart; stored again, harmlessly,
  because InfluxDB overwrites a point with the same series and timestamp),
- a missing message that arrives later (a board replaying its buffer) counts as `late`; `gaps - late` is
  roughly what is still missing,
- a higher boot restarts the numbering (a reset is not a gap); a lower boot is a late message from a
  previous boot.

State lives in memory only: after a hub restart the first message of each device sets the baseline.
Pure: no I/O, no asyncio, no imports beyond the standard library.
"""

from __future__ import annotations

from enum import Enum

WINDOW = 4096
"""How far below the highest seq a missing message is still remembered (older ones are forgotten)."""


class Verdict(Enum):
    FIRST = "first"
    NEXT = "next"
    GAP = "gap"
    DUPLICATE = "duplicate"
    LATE = "late"
    REBOOT = "reboot"


class _Device:
    __slots__ = ("boot", "high", "missing")

    def __init__(self, boot: int, seq: int) -> None:
        self.boot = boot
        self.high = seq
        self.missing: set[int] = set()


class SequenceTracker:
    """Feed every telemetry message's (device, boot, seq) to `see`; read the counters."""

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self._devices: dict[str, _Device] = {}
        self.gaps = 0
        """Messages ever skipped by a jump forward (monotonic; a late arrival counts in `late`)."""
        self.duplicates = 0
        self.late = 0
        self.reboots = 0

    def see(self, device: str, boot: int, seq: int) -> Verdict:  # noqa: PLR0911 - one return per verdict
        state = self._devices.get(device)
        if state is None:
            self._devices[device] = _Device(boot, seq)
            return Verdict.FIRST
        if boot != state.boot:
            if boot < state.boot:
                self.late += 1
                return Verdict.LATE
            self._devices[device] = _Device(boot, seq)
            self.reboots += 1
            return Verdict.REBOOT
        high = state.high
        if seq == high + 1:
            state.high = seq
            self._forget(state)
            return Verdict.NEXT
        if seq > high:
            skipped = seq - high - 1
            self.gaps += skipped
            state.missing.update(range(max(high + 1, seq - self.window), seq))
            state.high = seq
            self._forget(state)
            return Verdict.GAP
        if seq in state.missing:
            state.missing.discard(seq)
            self.late += 1
            return Verdict.LATE
        self.duplicates += 1
        return Verdict.DUPLICATE

    def _forget(self, state: _Device) -> None:
        # Cheap on the hot path: prune the window only every 256 messages (or when it is large).
        if state.missing and (state.high & 0xFF == 0 or len(state.missing) > self.window):
            floor = state.high - self.window
            state.missing = {s for s in state.missing if s > floor}

    def missing(self, device: str) -> int:
        """How many messages of `device` are missing now."""
        state = self._devices.get(device)
        return 0 if state is None else len(state.missing)
