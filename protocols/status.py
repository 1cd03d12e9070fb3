"""Status payloads (retained): birth (`online`, with capabilities and actuator limits), last will
(`offline`), `safe` mode (with the error).

The rules for the capabilities inside a birth message live in protocols/limits.py: a board applies them
to its config once at boot, the hub's decode_status applies them to every birth, and a running board never
loads them again.
"""

import json

from protocols.errors import ProtocolError, describe
from protocols.fields import (
    BOOT_MAX,
    MAX_TEXT,
    dumps_text,
    integer,
    load,
    required,
    text,
    timestamp,
)

MAX_STATUS = 2048

ONLINE = "online"
OFFLINE = "offline"
SAFE = "safe"
STATES = (ONLINE, OFFLINE, SAFE)

_STATUS_KEYS = ("v", "state", "ts", "boot", "fw", "caps", "error")


class Status:
    """Birth (`online`, with caps), last will (`offline`) or `safe` mode (with the error)."""

    def __init__(
        self,
        state: str,
        ts: int | None = None,
        boot: int | None = None,
        fw: str | None = None,
        caps: dict[str, object] | None = None,
        error: str | None = None,
    ) -> None:
        self.state = state
        self.ts = ts
        self.boot = boot
        self.fw = fw
        self.caps = caps
        self.error = error


def encode_status(
    state: str,
    ts: int | None = None,
    boot: int | None = None,
    fw: str | None = None,
    caps: dict[str, object] | None = None,
    error: str | None = None,
) -> bytes:
    """Encode a status message. `online` needs ts, boot, fw and caps; `safe` needs ts, boot, fw and error.

    Everything but `caps` is checked as decode_status would; `caps` must come from a config validated with
    protocols.limits (a board does that at boot), and the hub's decode_status checks them again.
    """
    parts = ['{"v":1,"state":"%s"' % state]
    if ts is not None:
        parts.append(',"ts":%d' % ts)
    if boot is not None:
        parts.append(',"boot":%d' % boot)
    if fw is not None:
        parts.append(',"fw":%s' % dumps_text(fw))
    if caps is not None:
        parts.append(',"caps":%s' % _dumps_caps(caps))
    if error is not None:
        parts.append(',"error":%s' % dumps_text(error[:MAX_TEXT]))
    parts.append("}")
    out = "".join(parts).encode("utf-8")
    _check(out, None)  # one set of rules: refuse to send what the hub would refuse (caps aside)
    return out


def _dumps_caps(caps: dict[str, object]) -> str:
    # json.dumps is fine here: birth messages are rare, and key order does not matter to decoders
    return json.dumps(caps, separators=(",", ":")) if not _MPY_JSON else json.dumps(caps)


try:
    json.dumps({}, separators=(",", ":"))
    _MPY_JSON = False
except TypeError:  # MicroPython builds without the separators argument
    _MPY_JSON = True


def decode_status(payload: object) -> Status:
    """Decode and validate a status message, sensor quantities included (against protocols.catalogue)."""
    from protocols import catalogue

    return _check(payload, catalogue.QUANTITIES)


def _check(payload: object, known: dict[str, tuple[str, str, int, int]] | None) -> Status:
    """Validate a status message; its caps too (with protocols.limits) when the catalogue `known` is given."""
    obj = load("status", payload, MAX_STATUS, _STATUS_KEYS)
    state = required(obj, "state")
    if state not in STATES:
        raise ProtocolError("state", "must be one of %s, got %s" % ("|".join(STATES), describe(state)))
    ts = timestamp("ts", obj["ts"]) if "ts" in obj else None
    boot = integer("boot", obj["boot"], 0, BOOT_MAX) if "boot" in obj else None
    fw = text("fw", obj["fw"]) if "fw" in obj else None
    caps = None
    if "caps" in obj:
        raw = obj["caps"]
        if known is not None:
            from protocols import limits

            caps = limits.check_caps(raw, known)
        elif isinstance(raw, dict):
            caps = raw
        else:
            raise ProtocolError("caps", "must be an object, got %s" % describe(raw))
    error = text("error", obj["error"]) if "error" in obj else None
    if state == ONLINE:
        for key in ("ts", "boot", "fw", "caps"):
            required(obj, key)
    elif state == SAFE:
        for key in ("ts", "boot", "fw", "error"):
            required(obj, key)
    return Status(state, ts, boot, fw, caps, error)
