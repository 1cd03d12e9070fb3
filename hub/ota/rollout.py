"""A staged roll-out as a pure state machine: waves, per-board states, the halt, pause/resume/abort.

A roll-out offers one release (a version of kind fw or config) to a fixed list of boards, in waves of growing
share (1, 10, 50, 100 % by default). The boards are put in an order that is fixed by the roll-out's id
(sha256 of id + device), so the first wave is a spread sample of the site, not its alphabet's first boards.

Board states (the hub's view; docs/ota.md, "Read a halted roll-out"):

    waiting      its wave has not started
    offline      its wave started while it was offline: offered as soon as it is online again
    offered      the signed offer is sent; nothing heard yet
    downloading  verifying  installed      as the board reports them (installed: resetting into the trial)
    healthy      the new version (or config) confirmed healthy and committed on the board     } succeeded
    current      the board already ran that version                                          }
    refused      the board would not take it (bad signature, hash mismatch, no key, ...)     }
    rolledback   the trial failed; the board runs its previous slot again (reason)          } failed
    timedout     no final state within `board_timeout` seconds of its offer                  }
    cancelled    the roll-out halted or was aborted before the board installed it

Roll-out states: `running` -> `done` when every wave's offered boards ended (a wave ends when each board
offered in it has a final state and at least one was offered: a wave whose boards are all offline waits);
`paused` (no new wave, no new offer; boards already offered carry on) <-> `running`; `halted` when, in any
started wave, the failed boards are more than `max_failures` of the boards offered (a board still offline is
not counted): its boards not yet installed get a cancel and no later wave starts; `aborted` by an operator
from any state but itself (cancels likewise). `halted`, `aborted` and `done` start nothing more, except that
in `done` a board that was offline when its wave started is still offered when it comes back.

A board that was offered and reconnects (offline -> online) before it reported anything gets the same offer
again: an offer lost while it was away is not a board lost, and a board that has it carries on (same id). A
board that reported is not offered again: it keeps the offer on flash and resumes by itself after a reset (a
second offer reaching a board in its trial would be refused).

The machine is driven by `tick(now_ms, online)` (time-outs, waves, boards back online), `report(...)` (a
board's signed state report, already checked), and the operator's `pause`/`resume`/`abort`. Each returns
Actions for the caller to carry out: `offer`/`cancel` to a device, and `event`s (start, wave, halt, pause,
resume, abort, done) to audit. `as_dict`/`from_dict` keep it across hub restarts.

Imports the standard library only; knows nothing of MQTT, keys, files or clocks (time is always passed in).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

FORMAT = 1

WAITING = "waiting"
OFFLINE = "offline"
OFFERED = "offered"
DOWNLOADING = "downloading"
VERIFYING = "verifying"
INSTALLED = "installed"
HEALTHY = "healthy"
CURRENT = "current"
REFUSED = "refused"
ROLLEDBACK = "rolledback"
TIMEDOUT = "timedout"
CANCELLED = "cancelled"
BOARD_STATES = (WAITING, OFFLINE, OFFERED, DOWNLOADING, VERIFYING, INSTALLED, HEALTHY, CURRENT, REFUSED,
                ROLLEDBACK, TIMEDOUT, CANCELLED)
SUCCEEDED = frozenset({HEALTHY, CURRENT})
FAILED = frozenset({REFUSED, ROLLEDBACK, TIMEDOUT})
FINAL = SUCCEEDED | FAILED | {CANCELLED}
IN_FLIGHT = frozenset({OFFERED, DOWNLOADING, VERIFYING, INSTALLED})
CANCELLABLE = frozenset({OFFERED, DOWNLOADING, VERIFYING})
"""Boards a cancel still reaches: installed ones are already in their trial (the board decides then)."""

RUNNING = "running"
PAUSED = "paused"
HALTED = "halted"
ABORTED = "aborted"
DONE = "done"
ROLLOUT_STATES = (RUNNING, PAUSED, HALTED, ABORTED, DONE)
ENDED = frozenset({HALTED, ABORTED, DONE})

REPORTED = {"downloading": DOWNLOADING, "verifying": VERIFYING, "installed": INSTALLED, "healthy": HEALTHY,
            "current": CURRENT, "refused": REFUSED, "rolledback": ROLLEDBACK, "cancelled": CANCELLED}
"""A board's report state (protocols.ota.STATES) -> the board's state here."""
DEFAULT_WAVES = (1.0, 10.0, 50.0, 100.0)
DEFAULT_MAX_FAILURES = 0.1
MAX_EVENTS = 200
"""Events kept in a roll-out's record (the audit in InfluxDB keeps all)."""


class RolloutError(ValueError):
    """An operator's request the roll-out cannot take now; `status` is the HTTP status that says so."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Action:
    """What the caller must do: `offer`/`cancel` to `device`, or record the `event` `what` (with `detail`)."""

    kind: str
    device: str = ""
    what: str = ""
    detail: str = ""


@dataclass
class Board:
    state: str = WAITING
    wave: int = 0
    since: int = 0
    deadline: int = 0
    reason: str = ""
    done: int = 0
    total: int = 0
    online: bool = False
    offers: int = 0


def plan_waves(count: int, percents: Iterable[float]) -> list[int]:
    """Cumulative board counts that end each wave (each wave at least one board; empty waves dropped)."""
    out: list[int] = []
    for percent in percents:
        upto = min(count, max(math.ceil(count * percent / 100.0 - 1e-9), (out[-1] if out else 0) + 1))
        if not out or upto > out[-1]:
            out.append(upto)
    return out


def check_waves(percents: list[float]) -> list[float]:
    """Wave shares as given (percent of the targets, cumulative), or RolloutError(400) saying the rule."""
    if not percents or any(not isinstance(p, (int, float)) or isinstance(p, bool) or not math.isfinite(p)
                           for p in percents):
        raise RolloutError("waves: a list of percentages, e.g. 1,10,50,100", 400)
    if any(p <= 0 or p > 100 for p in percents) or any(b <= a for a, b in itertools.pairwise(percents)):
        raise RolloutError("waves: each share in (0, 100], growing (cumulative: 1,10,50,100)", 400)
    if percents[-1] != 100:
        raise RolloutError("waves: the last wave must be 100 (every board of the selector)", 400)
    return [float(p) for p in percents]


def order(rid: str, devices: Iterable[str]) -> list[str]:
    """The boards in the roll-out's order: fixed by its id, unrelated to their names."""
    return sorted(set(devices), key=lambda d: (hashlib.sha256(f"{rid}/{d}".encode()).digest(), d))


@dataclass
class Rollout:
    id: str
    version: str
    kind: str
    selector: str
    devices: list[str]
    """In the roll-out's order; waves take them from the front."""
    percents: list[float]
    waves: list[int]
    max_failures: float
    trial: int
    tries: int
    board_timeout: int
    created: int
    by: str = ""
    state: str = RUNNING
    wave: int = -1
    """Index of the latest started wave (-1: none yet)."""
    reason: str = ""
    """Why it halted or who aborted it."""
    updated: int = 0
    boards: dict[str, Board] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------------------------ making one

    @classmethod
    def new(cls, rid: str, version: str, kind: str, selector: str, devices: Iterable[str], *, now_ms: int,
            percents: Iterable[float] = DEFAULT_WAVES, max_failures: float = DEFAULT_MAX_FAILURES, trial: int = 300,
            tries: int = 3, board_timeout: int = 3600, by: str = "") -> Rollout:
        """A roll-out not yet started (call `start`); RolloutError(400/422) for bad parameters or no boards."""
        shares = check_waves(list(percents))
        if not 0 <= max_failures <= 1:
            raise RolloutError("max_failures: a share of a wave's boards in 0..1 (0.1: halt above 10 %)", 400)
        targets = order(rid, devices)
        if not targets:
            raise RolloutError(f"selector {selector!r} matches no provisioned board", 422)
        rollout = cls(rid, version, kind, selector, targets, shares, plan_waves(len(targets), shares), max_failures,
                      trial, tries, board_timeout, now_ms, by, updated=now_ms)
        for i, device in enumerate(targets):
            rollout.boards[device] = Board(wave=rollout.wave_of(i), since=now_ms)
        return rollout

    def wave_of(self, index: int) -> int:
        return next(w for w, upto in enumerate(self.waves) if index < upto)

    def start(self, now_ms: int, online: Callable[[str], bool]) -> list[Action]:
        """The start event and the first wave's offers."""
        actions = [self._event(now_ms, "start", f"{self.kind} {self.version} to {len(self.devices)} boards "
                               f"({self.selector}) waves {','.join(f'{p:g}' for p in self.percents)} "
                               f"max_failures {self.max_failures:g}", self.by)]
        return actions + self.tick(now_ms, online)

    # ------------------------------------------------------------------------------ inputs

    def tick(self, now_ms: int, online: Callable[[str], bool]) -> list[Action]:
        """Time-outs, boards back online, the halt check and the next wave."""
        actions: list[Action] = []
        for device, board in self.boards.items():
            was, board.online = board.online, online(device)
            if board.state in IN_FLIGHT and board.deadline and now_ms >= board.deadline:
                if board.state in CANCELLABLE:
                    actions.append(Action("cancel", device))
                self._set(board, TIMEDOUT, now_ms, f"no final state within {self.board_timeout} s of the offer")
            elif board.state == OFFLINE and board.online and self.state in (RUNNING, DONE):
                actions += self._offer(device, board, now_ms)
            elif board.state == OFFERED and board.online and not was and self.state not in ENDED:
                board.offers += 1  # back after a disconnect: the offer again (the board resumes the same id)
                actions.append(Action("offer", device))
        return actions + self._advance(now_ms, online)

    def report(self, device: str, state: str, now_ms: int, *, reason: str = "", done: int | None = None,
               total: int | None = None) -> list[Action]:
        """A board's report for this roll-out (signature already checked); unknown boards and states: []."""
        board = self.boards.get(device)
        target = REPORTED.get(state)
        if board is None or target is None or board.state == WAITING:
            return []
        if board.state in FINAL and not (board.state == TIMEDOUT and target in FINAL):
            return []  # a final state stays, except that a board's real outcome replaces a time-out guess
        if target in (DOWNLOADING, VERIFYING) and board.state == INSTALLED:
            return []  # a late progress report
        board.done = done if done is not None else board.done
        board.total = total if total is not None else board.total
        self._set(board, target, now_ms, reason if target in FAILED else "")
        return self._advance(now_ms, None)

    def pause(self, now_ms: int, by: str) -> list[Action]:
        if self.state != RUNNING:
            raise RolloutError(f"roll-out {self.id} is {self.state}: only a running one can be paused")
        self.state = PAUSED
        return [self._event(now_ms, "pause", "", by)]

    def resume(self, now_ms: int, by: str, online: Callable[[str], bool]) -> list[Action]:
        if self.state != PAUSED:
            raise RolloutError(f"roll-out {self.id} is {self.state}: only a paused one can be resumed"
                               + (" (start a new roll-out of the version; boards that have it answer current)"
                                  if self.state == HALTED else ""))
        self.state = RUNNING
        return [self._event(now_ms, "resume", "", by), *self.tick(now_ms, online)]

    def abort(self, now_ms: int, by: str) -> list[Action]:
        if self.state == ABORTED:
            raise RolloutError(f"roll-out {self.id} is already aborted")
        self.state = ABORTED
        self.reason = f"aborted by {by}" if by else "aborted"
        return [self._event(now_ms, "abort", "", by), *self._cancel_all(now_ms, "the roll-out was aborted")]

    # ------------------------------------------------------------------------------ the machine

    def _advance(self, now_ms: int, online: Callable[[str], bool] | None) -> list[Action]:
        if self.state not in (RUNNING, PAUSED, DONE):
            return []
        actions: list[Action] = []
        for wave in range(self.wave + 1):
            failed, offered = self._share(wave)
            if offered and failed / offered > self.max_failures and self.state != DONE:
                self.state = HALTED
                self.reason = (f"wave {wave + 1}: {failed} of {offered} boards failed, more than "
                               f"{self.max_failures:.0%}")
                actions.append(self._event(now_ms, "halt", self.reason))
                return actions + self._cancel_all(now_ms, "the roll-out halted")
        if self.state != RUNNING or online is None:
            return actions
        while self.wave < 0 or self._wave_ended(self.wave):
            if self.wave == len(self.waves) - 1:
                self.state = DONE
                left = sum(1 for b in self.boards.values() if b.state == OFFLINE)
                actions.append(self._event(now_ms, "done", f"{self._count(SUCCEEDED)} succeeded, "
                                           f"{self._count(FAILED)} failed, {left} offline"))
                break
            self.wave += 1
            first = self.waves[self.wave - 1] if self.wave else 0
            members = self.devices[first:self.waves[self.wave]]
            actions.append(self._event(now_ms, "wave", f"wave {self.wave + 1} of {len(self.waves)}: "
                                       f"{len(members)} boards"))
            for device in members:
                board = self.boards[device]
                board.online = online(device)
                if board.online:
                    actions += self._offer(device, board, now_ms)
                else:
                    self._set(board, OFFLINE, now_ms)
        return actions

    def _offer(self, device: str, board: Board, now_ms: int) -> list[Action]:
        self._set(board, OFFERED, now_ms)
        board.deadline = now_ms + self.board_timeout * 1000
        board.offers += 1
        return [Action("offer", device)]

    def _cancel_all(self, now_ms: int, why: str) -> list[Action]:
        actions = []
        for device, board in self.boards.items():
            if board.state in CANCELLABLE:
                self._set(board, CANCELLED, now_ms, why)
                actions.append(Action("cancel", device))
        return actions

    def _share(self, wave: int) -> tuple[int, int]:
        """(failed, offered) boards of a wave."""
        failed = offered = 0
        for board in self.boards.values():
            if board.wave == wave and board.state not in (WAITING, OFFLINE):
                offered += 1
                failed += board.state in FAILED
        return failed, offered

    def _wave_ended(self, wave: int) -> bool:
        """Every board offered has a final state, and at least one was offered (a wave whose boards are all
        offline waits for one to come back: a version is never passed on untried)."""
        members = [b for b in self.boards.values() if b.wave == wave]
        return any(b.state != OFFLINE for b in members) and all(b.state in FINAL or b.state == OFFLINE
                                                                 for b in members)

    def _set(self, board: Board, state: str, now_ms: int, reason: str = "") -> None:
        board.state = state
        board.since = now_ms
        board.reason = reason
        if state not in IN_FLIGHT:
            board.deadline = 0
        self.updated = now_ms

    def _event(self, now_ms: int, what: str, detail: str, by: str = "") -> Action:
        self.events.append({"ts": now_ms, "event": what, "detail": detail, "by": by, "wave": self.wave + 1})
        del self.events[:-MAX_EVENTS]
        self.updated = now_ms
        return Action("event", what=what, detail=detail)

    def _count(self, states: frozenset[str]) -> int:
        return sum(1 for b in self.boards.values() if b.state in states)

    # ------------------------------------------------------------------------------ reading it

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def offered(self, device: str) -> bool:
        board = self.boards.get(device)
        return board is not None and board.state not in (WAITING, OFFLINE)

    def counts(self) -> dict[str, int]:
        """Boards per state (every state named, 0 included), `targeted`, and the sums `succeeded`, `failed`."""
        out = dict.fromkeys(BOARD_STATES, 0)
        for board in self.boards.values():
            out[board.state] += 1
        out["targeted"] = len(self.boards)
        out["succeeded"] = out[HEALTHY] + out[CURRENT]
        out["failed"] = out[REFUSED] + out[ROLLEDBACK] + out[TIMEDOUT]
        return out

    def summary(self) -> dict[str, Any]:
        """The roll-out without its boards (GET /v1/rollouts)."""
        return {"id": self.id, "version": self.version, "kind": self.kind, "selector": self.selector,
                "state": self.state, "reason": self.reason, "wave": self.wave + 1, "waves": len(self.waves),
                "percents": self.percents, "wave_sizes": self.waves, "max_failures": self.max_failures,
                "trial": self.trial, "tries": self.tries, "board_timeout": self.board_timeout,
                "created": self.created, "updated": self.updated, "by": self.by, "counts": self.counts()}

    def detail(self) -> dict[str, Any]:
        """The roll-out with every board's state and its events (GET /v1/rollouts/{id})."""
        boards = {}
        for device in self.devices:
            b = self.boards[device]
            view: dict[str, Any] = {"state": b.state, "wave": b.wave + 1, "since": b.since}
            if b.reason:
                view["reason"] = b.reason
            if b.state == DOWNLOADING and b.total:
                view["done"], view["total"] = b.done, b.total
            boards[device] = view
        return self.summary() | {"boards": boards, "events": list(self.events)}

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "id": self.id, "version": self.version, "kind": self.kind,
                "selector": self.selector, "devices": self.devices, "percents": self.percents, "waves": self.waves,
                "max_failures": self.max_failures, "trial": self.trial, "tries": self.tries,
                "board_timeout": self.board_timeout, "created": self.created, "by": self.by, "state": self.state,
                "wave": self.wave, "reason": self.reason, "updated": self.updated,
                "boards": {d: vars(b).copy() for d, b in self.boards.items()}, "events": self.events}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Rollout:
        """A roll-out as `as_dict` wrote it; ValueError (KeyError, TypeError) for anything else."""
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT}")
        boards = {str(d): Board(**b) for d, b in doc["boards"].items()}
        rollout = cls(str(doc["id"]), str(doc["version"]), str(doc["kind"]), str(doc["selector"]),
                      [str(d) for d in doc["devices"]], [float(p) for p in doc["percents"]],
                      [int(w) for w in doc["waves"]], float(doc["max_failures"]), int(doc["trial"]),
                      int(doc["tries"]), int(doc["board_timeout"]), int(doc["created"]), str(doc["by"]),
                      str(doc["state"]), int(doc["wave"]), str(doc["reason"]), int(doc["updated"]), boards,
                      list(doc["events"]))
        if rollout.state not in ROLLOUT_STATES or set(boards) != set(rollout.devices) or \
                any(b.state not in BOARD_STATES for b in boards.values()):
            raise ValueError("states or boards do not add up")
        return rollout
