"""What the hub confirms to each board: per device and boot, the highest seq up to which every message is spooled.

The service calls `spooled(ids)` with the (device, boot, seq) of a batch's telemetry once the batch is in the
spool, fsynced, and `due()` once a round (`hub.confirm_interval`, 1 s) for the confirmations to publish
(protocols/confirm.py): for each device and boot whose mark moved, the new mark; `again(items)` if they could
not go out. A duplicate at or below the mark means the board resends what it holds, so it missed the last
confirmation (QoS 0): the mark is due again. A mark moves only over a run without holes: a seq missing
above it holds it back, so a message lost between the board and the hub (a broker crash) is never confirmed
past and the board sends it again. A hole that stays longer than `gap_timeout` (the board dropped those
records when its buffer was full, or lost them in a power cut) is given up: the mark jumps over it and the
missing messages are counted in `gaps_given_up`.

`save(path)` writes the marks (atomically, fsynced) and `load(path)` reads them back at start: the service
saves before it publishes, so no board is ever told more than a restarted hub knows. A boot never seen starts
below 0: a board numbers its messages from 0 at each boot.

Pure but for `save`/`load`; knows nothing of MQTT or InfluxDB. Imports hub.atomic (the file write) and the
standard library.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from hub.atomic import write_atomic

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

log = logging.getLogger(__name__)

BOOTS = 4
"""Boots tracked per device (the newest): a board's buffer holds messages of a few boots at most."""
AHEAD = 100_000
"""Seqs remembered above a hole per boot; past that the hole is given up at once."""
FORMAT = 1


class _Boot:
    __slots__ = ("ahead", "gap_since", "mark", "sent")

    def __init__(self, mark: int = -1) -> None:
        self.mark = mark
        self.sent = mark
        self.ahead: set[int] = set()
        self.gap_since = 0.0


class Confirmations:
    def __init__(self, gap_timeout: float = 600.0) -> None:
        self.gap_timeout = gap_timeout
        self._devices: dict[str, dict[int, _Boot]] = {}
        self._moved: set[str] = set()
        self.gaps_given_up = 0
        """Messages a hole stood for when it was given up (never received, confirmed past)."""

    def mark(self, device: str, boot: int) -> int:
        """The confirmed seq of a device's boot (-1: nothing yet)."""
        b = self._devices.get(device, {}).get(boot)
        return -1 if b is None else b.mark

    def spooled(self, ids: Iterable[tuple[str, int, int]], now: float) -> None:
        """(device, boot, seq) of telemetry now in the spool, fsynced."""
        devices = self._devices
        moved = self._moved
        for device, boot, seq in ids:
            boots = devices.get(device)
            if boots is None:
                boots = devices[device] = {}
            b = boots.get(boot)
            if b is None:
                b = boots[boot] = _Boot()
                if len(boots) > BOOTS:
                    del boots[min(boots)]
            if seq <= b.mark:  # a duplicate: the board resends what it holds, so it missed the confirmation
                b.sent = min(b.sent, b.mark - 1)  # (QoS 0, lost): say it again in the next round
                moved.add(device)
                continue
            if seq == b.mark + 1:
                b.mark = seq
                ahead = b.ahead
                while ahead and b.mark + 1 in ahead:
                    ahead.discard(b.mark + 1)
                    b.mark += 1
                moved.add(device)
            else:
                if not b.ahead:
                    b.gap_since = now
                b.ahead.add(seq)
                if len(b.ahead) > AHEAD:
                    self._give_up(b, now)
                    moved.add(device)

    def _give_up(self, b: _Boot, now: float) -> None:
        first = min(b.ahead)
        self.gaps_given_up += first - b.mark - 1
        b.mark = first - 1
        while b.mark + 1 in b.ahead:
            b.ahead.discard(b.mark + 1)
            b.mark += 1
        b.gap_since = now

    def due(self, now: float) -> list[tuple[str, int, int]]:
        """(device, boot, seq) confirmations to send now: marks that moved since they were last sent; holes
        older than gap_timeout are given up first."""
        for device, boots in self._devices.items():
            for b in boots.values():
                if b.ahead and now - b.gap_since >= self.gap_timeout:
                    log.warning("confirmation: a hole given up device=%s after=%d missing_from=%d", device, b.mark,
                                b.mark + 1)
                    self._give_up(b, now)
                    self._moved.add(device)
        out = []
        for device in self._moved:
            for boot, b in self._devices.get(device, {}).items():
                if b.mark > b.sent:
                    out.append((device, boot, b.mark))
                    b.sent = b.mark
        self._moved = set()
        return out

    def again(self, items: Iterable[tuple[str, int, int]]) -> None:
        """Confirmations from `due()` that could not go out (the marks were not saved): due again next round."""
        for device, boot, seq in items:
            b = self._devices.get(device, {}).get(boot)
            if b is not None:
                b.sent = min(b.sent, seq - 1)
                self._moved.add(device)

    def save(self, path: Path) -> None:
        """The marks, written whole and fsynced (OSError if the disk refuses)."""
        doc = {"format": FORMAT, "devices": {d: {str(boot): b.mark for boot, b in boots.items()}
                                             for d, boots in self._devices.items()}}
        write_atomic(path, json.dumps(doc, separators=(",", ":")).encode())

    def load(self, path: Path) -> None:
        """The marks a previous run saved (nothing if there are none or the file is damaged: logged)."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            devices = doc["devices"] if doc.get("format") == FORMAT else {}
            for device, boots in devices.items():
                self._devices[str(device)] = {int(boot): _Boot(int(mark)) for boot, mark in boots.items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.error("confirmation: marks not read, starting without them path=%s error=%s", path, exc)  # noqa: TRY400 - one line
