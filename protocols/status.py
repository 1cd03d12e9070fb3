"""Status payloads (retained): birth (`online`, with capabilities and actuator limits), last will
(`offline`), `safe` mode (with the error). Also the actuator-limit rules shared by birth messages, board
configs and hub device profiles (`check_actuator`).
"""

import json

from protocols.errors import ProtocolError, describe
from protocols.fields import (
    BOOT_MAX,
    MAX_TEXT,
    closed_object,
    dumps_text,
    integer,
    load,
    mapping,
    number,
    required,
    text,
    timestamp,
)
from protocols.topics import check_id

MAX_STATUS = 2048
MAX_ACTUATORS = 16
MAX_SENSORS = 16

ONLINE = "online"
OFFLINE = "offline"
SAFE = "safe"
STATES = (ONLINE, OFFLINE, SAFE)
ACTUATOR_KINDS = ("relay", "pwm", "valve")

_STATUS_KEYS = ("v", "state", "ts", "boot", "fw", "caps", "error")
_CAPS_KEYS = ("sensors", "actuators", "uplink", "failsafe_after")
_SENSOR_KEYS = ("driver", "q")
_ACTUATOR_KEYS = ("kind", "unit", "min", "max", "failsafe", "rate", "min_on", "min_off")
_UPLINKS = ("mqtt", "modbus")


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


def _check_caps(value: object, known: dict[str, tuple[str, str, int, int]] | None) -> dict[str, object]:
    """Validate a birth message's caps; sensor quantities against `known` (the catalogue) when given."""
    caps = closed_object("caps", value, _CAPS_KEYS)
    sensors = mapping("caps.sensors", caps.get("sensors", {}), MAX_SENSORS)
    for name in sensors:
        where = "caps.sensors." + name
        sensor = closed_object(where, sensors[name], _SENSOR_KEYS)
        check_id(where + ".driver", required(sensor, "driver", where + "."))
        quantities = required(sensor, "q", where + ".")
        if not isinstance(quantities, list):
            raise ProtocolError(where + ".q", "must be a list of quantities")
        for quantity in quantities:
            if known is None:
                check_id(where + ".q", quantity)
            elif quantity not in known:
                raise ProtocolError(where + ".q", "unknown quantity %s" % describe(quantity))
    actuators = mapping("caps.actuators", caps.get("actuators", {}), MAX_ACTUATORS)
    for name in actuators:
        check_actuator(name, actuators[name], "caps.actuators.")
    if "uplink" in caps and caps["uplink"] not in _UPLINKS:
        raise ProtocolError("caps.uplink", "must be one of %s" % "|".join(_UPLINKS))
    if "failsafe_after" in caps and number("caps.failsafe_after", caps["failsafe_after"]) <= 0:
        raise ProtocolError("caps.failsafe_after", "must be positive seconds")
    return caps


def check_actuator(name: str, spec: object, prefix: str = "") -> dict[str, object]:
    """Validate one actuator's limits: kind, min <= failsafe <= max, optional rate and min on/off times.

    Shared by the birth message, the board config and the hub's device profiles, so that all three agree.
    """
    where = prefix + str(name)
    check_id(where, name)
    spec = closed_object(where, spec, _ACTUATOR_KEYS)
    kind = required(spec, "kind", where + ".")
    if kind not in ACTUATOR_KINDS:
        raise ProtocolError(where + ".kind", "must be one of %s, got %s" % ("|".join(ACTUATOR_KINDS), describe(kind)))
    lo = number(where + ".min", required(spec, "min", where + "."))
    hi = number(where + ".max", required(spec, "max", where + "."))
    if lo > hi:
        raise ProtocolError(where, "min %s is above max %s" % (describe(lo), describe(hi)))
    safe = number(where + ".failsafe", required(spec, "failsafe", where + "."))
    if not lo <= safe <= hi:
        raise ProtocolError(where + ".failsafe", "%s is outside min..max" % describe(safe))
    if "unit" in spec:
        text(where + ".unit", spec["unit"])
    for key in ("rate", "min_on", "min_off"):
        if key in spec and number(where + "." + key, spec[key]) < 0:
            raise ProtocolError(where + "." + key, "must not be negative")
    return spec


def encode_status(
    state: str,
    ts: int | None = None,
    boot: int | None = None,
    fw: str | None = None,
    caps: dict[str, object] | None = None,
    error: str | None = None,
) -> bytes:
    """Encode a status message. `online` needs ts, boot, fw and caps; `safe` needs ts, boot, fw and error.

    Sensor quantities in caps are checked for form only: a board checks them against the catalogue when it
    validates its config, and the hub's decode_status checks them again.
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
    _check(out, None)  # one set of rules: refuse to send what the hub would refuse (catalogue aside)
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
    obj = load("status", payload, MAX_STATUS, _STATUS_KEYS)
    state = required(obj, "state")
    if state not in STATES:
        raise ProtocolError("state", "must be one of %s, got %s" % ("|".join(STATES), describe(state)))
    ts = timestamp("ts", obj["ts"]) if "ts" in obj else None
    boot = integer("boot", obj["boot"], 0, BOOT_MAX) if "boot" in obj else None
    fw = text("fw", obj["fw"]) if "fw" in obj else None
    caps = _check_caps(obj["caps"], known) if "caps" in obj else None
    error = text("error", obj["error"]) if "error" in obj else None
    if state == ONLINE:
        for key in ("ts", "boot", "fw", "caps"):
            required(obj, key)
    elif state == SAFE:
        for key in ("ts", "boot", "fw", "error"):
            required(obj, key)
    return Status(state, ts, boot, fw, caps, error)
