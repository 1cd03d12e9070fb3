"""Control payloads: `cmd` (a setpoint, hub -> board) and `ack` (its outcome, board -> hub), both signed.

Version 2 (the only one encoded): each payload ends with `"sig"`, the HMAC-SHA256 of its bytes under the
board's command key, bound to the site and device and to the message kind (protocols/sign.py). A cmd
carries `n`, the hub's counter for that board (only grows); an ack carries the `n` of the command it
answers (0 if that command had none), so an ack of an earlier command cannot pass for this one.

`refusal(cmd, now, last_n, max_ttl_ms)` is the board's rule for a command whose signature is right: refused
when its counter is not above the last one the board accepted (a replay, also after a reset: the board keeps
`last_n` on flash), when the board clock is not set, when it has expired, or when its expiry lies more than
`max_ttl_ms` ahead of the board clock. It returns the reason the ack carries, or None.

`decode_cmd` / `decode_ack` take the key, the site and the device, and return only a message whose
signature is right; otherwise they raise SignatureError (a ProtocolError, field `sig`: "unsigned command",
"unsigned ack", "bad signature") whose `unverified` holds what the payload claims, so that a board can
answer the id with a rejection and the hub can log it, never act on it. Version 1 payloads (unsigned) are
read, so that their id can be answered, and always refused that way. `read_cmd` / `read_ack` check every
field but not the signature: for observers (tests, the demo's watcher) that act on nothing.

Imports protocols.fields, protocols.sign and protocols.topics; nothing of sockets or clocks.
"""

from protocols import sign
from protocols.errors import ProtocolError, describe
from protocols.fields import (
    MAX_TEXT,
    dumps_text,
    fmt_number,
    integer,
    load,
    number,
    required,
    text,
    timestamp,
)
from protocols.topics import check_id

VERSION = 2
VERSIONS = (1, 2)
MAX_CMD = 384  # a version 2 cmd of the longest ids and numbers is 256 bytes
MAX_ACK = 512  # a version 2 ack with a 200-character ASCII reason fits
N_MAX = 9007199254740991  # 2**53 - 1: exact in every JSON reader
APPLIED = "applied"
REJECTED = "rejected"
OUTCOMES = (APPLIED, REJECTED)
UNSIGNED_CMD = "unsigned command"
UNSIGNED_ACK = "unsigned ack"
_CMD_KEYS = ("v", "id", "act", "val", "ts", "exp", "n", "sig")
_ACK_KEYS = ("v", "id", "act", "st", "val", "why", "ts", "n", "sig")


class Command:
    """A setpoint for one actuator: applied at most once per id, refused after `expires` (ms).

    `n` is the hub's counter (0 in version 1); `signed` says whether the payload carried a `sig`.
    """

    def __init__(self, cmd_id: str, actuator: str, value: float, ts: int, expires: int, n: int = 0,
                 signed: bool = False) -> None:
        self.id = cmd_id
        self.actuator = actuator
        self.value = value
        self.ts = ts
        self.expires = expires
        self.n = n
        self.signed = signed


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
        n: int = 0,
        signed: bool = False,
    ) -> None:
        self.id = cmd_id
        self.actuator = actuator
        self.status = status
        self.ts = ts
        self.value = value
        self.reason = reason
        self.n = n
        self.signed = signed


class SignatureError(ProtocolError):
    """A cmd or ack without its right signature (field `sig`). `unverified` is the Command or Ack the
    payload claims to be: for answering its id or logging it, never for acting on it."""

    def __init__(self, problem: str, unverified: object) -> None:
        super().__init__("sig", problem)
        self.unverified = unverified


def check_command_id(field: str, value: object) -> str:
    """Command ids follow the id rules of topics (1-32 of A-Z a-z 0-9 _ -)."""
    return check_id(field, value)


def _versioned(kind: str, payload: object, limit: int, keys: tuple[str, ...]) -> tuple[dict[str, object], int]:
    """The message object and its counter: version 2 requires `n`; version 1 has neither `n` nor `sig`."""
    obj = load(kind, payload, limit, keys, VERSIONS)
    if obj["v"] == 1:
        for key in ("n", "sig"):
            if key in obj:
                raise ProtocolError(kind, "unknown key %s in version 1" % describe(key))
        return obj, 0
    sig = obj.get("sig")
    if sig is not None and not isinstance(sig, str):
        raise ProtocolError("sig", "must be a string of 64 hex characters, got %s" % describe(sig))
    return obj, integer("n", required(obj, "n"), 0 if kind == "ack" else 1, N_MAX)


def _limit(kind: str, out: bytes, limit: int) -> bytes:
    if len(out) > limit:
        raise ProtocolError(kind, "payload of %d bytes exceeds the %d-byte limit" % (len(out), limit))
    return out


# ----------------------------------------------------------------------------------------------- cmd


def encode_cmd(key: object, site: str, device: str, cmd_id: str, actuator: str, value: float, ts: int,
               expires: int, n: int) -> bytes:
    """A signed version 2 cmd for site/device under key (bytes or sign.Key)."""
    check_id("site", site)
    check_id("device", device)
    check_command_id("id", cmd_id)
    check_id("act", actuator)
    number("val", value)
    timestamp("ts", ts)
    timestamp("exp", expires)
    integer("n", n, 1, N_MAX)
    if expires < ts:
        raise ProtocolError("exp", "expires before it was issued")
    body = ('{"v":2,"id":"%s","act":"%s","val":%s,"ts":%d,"exp":%d,"n":%d' % (
        cmd_id, actuator, fmt_number(value), ts, expires, n)).encode("utf-8")
    return _limit("cmd", sign.seal(key, sign.CMD, site, device, body), MAX_CMD)


def read_cmd(payload: object) -> Command:
    """Every field of a cmd checked, its signature not: for observers only (see decode_cmd)."""
    obj, n = _versioned("cmd", payload, MAX_CMD, _CMD_KEYS)
    cmd_id = check_command_id("id", required(obj, "id"))
    actuator = check_id("act", required(obj, "act"))
    value = number("val", required(obj, "val"))
    ts = timestamp("ts", required(obj, "ts"))
    expires = timestamp("exp", required(obj, "exp"))
    if expires < ts:
        raise ProtocolError("exp", "expires before it was issued")
    return Command(cmd_id, actuator, value, ts, expires, n, "sig" in obj)


def _verified(message: object, signed: bool, unsigned: str, domain: bytes, payload: object, key: object,
              site: str, device: str) -> object:
    """message (what payload claims) if payload is signed for site/device under key; SignatureError if not."""
    if not signed:
        raise SignatureError(unsigned, message)
    try:
        sign.check(key, domain, site, device, payload)
    except ProtocolError as exc:
        raise SignatureError(exc.problem, message) from None
    return message


def decode_cmd(payload: object, key: object, site: str, device: str) -> Command:
    """The cmd, if signed for site/device under key; SignatureError (field `sig`) if not."""
    cmd = read_cmd(payload)
    _verified(cmd, cmd.signed, UNSIGNED_CMD, sign.CMD, payload, key, site, device)
    return cmd


def refusal(cmd: Command, now: int | None, last_n: int, max_ttl_ms: int) -> str | None:
    """Why a verified cmd must not be acted on at board time `now` (ms, None: clock not set), or None."""
    if cmd.n <= last_n:
        return "replayed: counter n=%d is not above the last accepted %d" % (cmd.n, last_n)
    if now is None:
        return "board clock not set"
    if now > cmd.expires:
        return "expired %d ms ago" % (now - cmd.expires)
    if cmd.expires - now > max_ttl_ms:
        return "expires %d s ahead, more than this board's commands.max_ttl %d s" % (
            (cmd.expires - now) // 1000, max_ttl_ms // 1000)
    return None


# ----------------------------------------------------------------------------------------------- ack


def encode_ack(
    key: object,
    site: str,
    device: str,
    cmd_id: str,
    actuator: str,
    status: str,
    ts: int,
    n: int,
    value: float | None = None,
    reason: str | None = None,
) -> bytes:
    """A signed version 2 ack from site/device under key; `n` is the answered command's counter."""
    check_command_id("id", cmd_id)
    check_id("act", actuator)
    if status not in OUTCOMES:
        raise ProtocolError("st", "must be one of %s, got %s" % ("|".join(OUTCOMES), describe(status)))
    timestamp("ts", ts)
    integer("n", n, 0, N_MAX)
    if status == APPLIED and value is None:
        raise ProtocolError("val", "required key missing (an applied ack carries the value applied)")
    if status == REJECTED and reason is None:
        raise ProtocolError("why", "required key missing (a rejection carries its reason)")
    parts = ['{"v":2,"id":"%s","act":"%s","st":"%s"' % (cmd_id, actuator, status)]
    if value is not None:
        number("val", value)
        parts.append(',"val":%s' % fmt_number(value))
    if reason is not None:
        parts.append(',"why":%s' % dumps_text(text("why", reason[:MAX_TEXT])))
    parts.append(',"ts":%d,"n":%d' % (ts, n))
    body = "".join(parts).encode("utf-8")
    return _limit("ack", sign.seal(key, sign.ACK, site, device, body), MAX_ACK)


def read_ack(payload: object) -> Ack:
    """Every field of an ack checked, its signature not: for observers only (see decode_ack)."""
    obj, n = _versioned("ack", payload, MAX_ACK, _ACK_KEYS)
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
    return Ack(cmd_id, actuator, status, ts, value, reason, n, "sig" in obj)


def decode_ack(payload: object, key: object, site: str, device: str) -> Ack:
    """The ack, if signed by site/device under key; SignatureError (field `sig`) if not."""
    ack = read_ack(payload)
    _verified(ack, ack.signed, UNSIGNED_ACK, sign.ACK, payload, key, site, device)
    return ack
