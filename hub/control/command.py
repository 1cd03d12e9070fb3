"""The life cycle of one command, as data and pure functions (no I/O, no clock of its own).

    pending --send--> sent --send (retry, same id)--> sent
    pending --reject--> rejected            (refused by the hub before anything was sent)
    sent --applied--> applied | --rejected--> rejected | --timeout--> timed_out

Each command ends in exactly one final state. `TRANSITIONS` is the whole state machine: `step()` refuses any
other move with TransitionError, so an ack for a command that is already final (a board that acks twice,
a late ack after a time-out) cannot change its outcome. Times are hub-clock milliseconds passed in by the
caller. `due()` says what a sent command needs at a given time: a resend (same id: the board applies an id
at most once) or a time-out, once the command has expired (see `due`).
"""

from __future__ import annotations

from dataclasses import dataclass

PENDING = "pending"
SENT = "sent"
APPLIED = "applied"
REJECTED = "rejected"
TIMED_OUT = "timed_out"
FINAL = (APPLIED, REJECTED, TIMED_OUT)

# (state, event) -> next state; nothing else is allowed.
TRANSITIONS: dict[tuple[str, str], str] = {
    (PENDING, "send"): SENT,
    (PENDING, "reject"): REJECTED,
    (SENT, "send"): SENT,
    (SENT, "applied"): APPLIED,
    (SENT, "rejected"): REJECTED,
    (SENT, "timeout"): TIMED_OUT,
}

RESEND = "resend"
TIMEOUT = "timeout"


class TransitionError(ValueError):
    """An event that the command's current state does not allow (e.g. a second ack)."""


@dataclass
class Command:
    """One setpoint command and everything that happened to it."""

    id: str
    device: str
    actuator: str
    value: float
    transport: str
    """`mqtt` or `modbus`."""
    source: str
    """Who asked: `api:<role>`, `cli:<role>` (the API token's role, hub.control.api), `rule:<name>`,
    `schedule:<name>`."""
    created_ms: int
    expires_ms: int
    retries: int = 2
    ack_timeout_ms: int = 5000
    state: str = PENDING
    attempts: int = 0
    sent_ms: int | None = None
    """When the latest attempt was sent."""
    done_ms: int | None = None
    applied: float | None = None
    """The value the device reports it applied (may differ from `value`, e.g. after rounding)."""
    reason: str | None = None
    n: int = 0
    """The signed cmd's counter (hub.control.signing), taken at the first send; 0 before, and for Modbus."""

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @property
    def latency_ms(self) -> int | None:
        """From creation to the final state."""
        return None if self.done_ms is None else self.done_ms - self.created_ms

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "device": self.device, "actuator": self.actuator, "value": self.value,
            "transport": self.transport, "source": self.source, "state": self.state, "attempts": self.attempts,
            "created_ms": self.created_ms, "expires_ms": self.expires_ms, "done_ms": self.done_ms,
            "applied": self.applied, "reason": self.reason, "latency_ms": self.latency_ms,
        }


def step(cmd: Command, event: str, now_ms: int, *, value: float | None = None, reason: str | None = None) -> None:
    """Apply one event to cmd in place; TransitionError if the state machine does not allow it."""
    nxt = TRANSITIONS.get((cmd.state, event))
    if nxt is None:
        raise TransitionError(f"command {cmd.id}: {event} not allowed in state {cmd.state}")
    cmd.state = nxt
    if event == "send":
        cmd.attempts += 1
        cmd.sent_ms = now_ms
    if nxt in FINAL:
        cmd.done_ms = now_ms
        cmd.applied = value if nxt == APPLIED else None
        cmd.reason = reason


def due(cmd: Command, now_ms: int) -> str | None:
    """RESEND, TIMEOUT or None for a command at now_ms (only `sent` commands are ever due).

    Resends (same id) every `ack_timeout_ms` while attempts remain and the command has not expired. The
    time-out comes only at `expires_ms + ack_timeout_ms`: the board refuses the command after `expires_ms`
    by its own clock, so a command the hub calls timed out can no longer be applied by a board whose clock
    is within `ack_timeout_ms` of the hub's (an ack still arriving later is logged as late).
    """
    if cmd.state != SENT or cmd.sent_ms is None:
        return None
    if now_ms >= cmd.expires_ms + cmd.ack_timeout_ms:
        return TIMEOUT
    if cmd.attempts <= cmd.retries and now_ms < cmd.expires_ms and now_ms - cmd.sent_ms >= cmd.ack_timeout_ms:
        return RESEND
    return None


def next_due_ms(cmd: Command) -> int | None:
    """The hub-clock time at which `due` may next return something, for the service's timer."""
    if cmd.state != SENT or cmd.sent_ms is None:
        return None
    end = cmd.expires_ms + cmd.ack_timeout_ms
    if cmd.attempts <= cmd.retries and cmd.sent_ms + cmd.ack_timeout_ms < cmd.expires_ms:
        return min(end, cmd.sent_ms + cmd.ack_timeout_ms)
    return end
