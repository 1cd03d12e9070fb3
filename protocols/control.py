"""Control payloads: `cmd` (a setpoint, hub -> board) and `ack` (its outcome, board -> hub)."""

from protocols.errors import ProtocolError, describe
from protocols.fields import (
    MAX_TEXT,
    dumps_text,
    fmt_number,
    load,
    number,
    required,
    text,
    timestamp,
)
from protocols.topics import check_id

MAX_CMD = 256
MAX_ACK = 256
APPLIED = "applied"
REJECTED = "rejected"
OUTCOMES = (APPLIED, REJECTED)
_CMD_KEYS = ("v", "id", "act", "val", "ts", "exp")
_ACK_KEYS = ("v", "id", "act", "st", "val", "why", "ts")


class Command:
    """A setpoint for one actuator: applied at most once per id, refused after `expires` (ms)."""

    def __init__(self, cmd_id: str, actuator: str, value: float, ts: int, expires: int) -> None:
        self.id = cmd_id
        self.actuator = actuator
        self.value = value
        self.ts = ts
        self.expires = expires


class Ack:
    """A board's answer to a command id: applied (with the value applied) or rejected (with why)."""

    def __init__(
        self,
        cmd_id: str,
        actuator: str,
        status: str,
        ts: int,
        value: float | None = None,
        reason: str | None = None,
    ) -> None:
        self.id = cmd_id
        self.actuator = actuator
        self.status = status
        self.ts = ts
        self.value = value
        self.reason = reason


def check_command_id(field: str, value: object) -> str:
    """Command ids follow the id rules of topics (1-32 of A-Z a-z 0-9 _ -)."""
    return check_id(field, value)


def encode_cmd(cmd_id: str, actuator: str, value: float, ts: int, expires: int) -> bytes:
    check_command_id("id", cmd_id)
    check_id("act", actuator)
    number("val", value)
    timestamp("ts", ts)
    timestamp("exp", expires)
    if expires < ts:
        raise ProtocolError("exp", "expires before it was issued")
    return ('{"v":1,"id":"%s","act":"%s","val":%s,"ts":%d,"exp":%d}' % (
        cmd_id, actuator, fmt_number(value), ts, expires)).encode("utf-8")


def decode_cmd(payload: object) -> Command:
    obj = load("cmd", payload, MAX_CMD, _CMD_KEYS)
    cmd_id = check_command_id("id", required(obj, "id"))
    actuator = check_id("act", required(obj, "act"))
    value = number("val", required(obj, "val"))
    ts = timestamp("ts", required(obj, "ts"))
    expires = timestamp("exp", required(obj, "exp"))
    if expires < ts:
        raise ProtocolError("exp", "expires before it was issued")
    return Command(cmd_id, actuator, value, ts, expires)


# ----------------------------------------------------------------------------------------------- ack


def encode_ack(
    cmd_id: str,
    actuator: str,
    status: str,
    ts: int,
    value: float | None = None,
    reason: str | None = None,
) -> bytes:
    check_command_id("id", cmd_id)
    check_id("act", actuator)
    timestamp("ts", ts)
    parts = ['{"v":1,"id":"%s","act":"%s","st":"%s"' % (cmd_id, actuator, status)]
    if value is not None:
        number("val", value)
        parts.append(',"val":%s' % fmt_number(value))
    if reason is not None:
        parts.append(',"why":%s' % dumps_text(reason[:MAX_TEXT]))
    parts.append(',"ts":%d}' % ts)
    out = "".join(parts).encode("utf-8")
    decode_ack(out)
    return out


def decode_ack(payload: object) -> Ack:
    obj = load("ack", payload, MAX_ACK, _ACK_KEYS)
    cmd_id = check_command_id("id", required(obj, "id"))
    actuator = check_id("act", required(obj, "act"))
    status = required(obj, "st")
    if status not in OUTCOMES:
        raise ProtocolError("st", "must be one of %s, got %s" % ("|".join(OUTCOMES), describe(status)))
    ts = timestamp("ts", required(obj, "ts"))
    value = number("val", obj["val"]) if "val" in obj else None
    reason = text("why", obj["why"]) if "why" in obj else None
    if status == APPLIED and value is None:
        raise ProtocolError("val", "required key missing (an applied ack carries the value applied)")
    if status == REJECTED and reason is None:
        raise ProtocolError("why", "required key missing (a rejection carries its reason)")
    return Ack(cmd_id, actuator, status, ts, value, reason)
