"""Payload codec for the four message kinds: telemetry, status, cmd, ack.

Compact JSON, version 1 (`"v":1`), one object per MQTT message. `encode_*` build the bytes (keys in a fixed
order, no spaces), `decode_*` validate every field and return a small message object. Bad input of any kind
(not UTF-8, not JSON, wrong type, missing or unknown key, NaN/Infinity, out-of-range number, oversize
message) raises ProtocolError naming the field; decoders raise nothing else. docs/protocol.md is the
human-readable version of this module.

Versioning: the field set of a version is closed, so a misspelt key is an error rather than silently lost.
A new field or meaning bumps `v`; decoders accept every version they know and name the newest one they
understand when refusing a message from the future.
"""

import json
import math

from protocols import catalogue
from protocols.errors import ProtocolError, describe
from protocols.topics import check_id

VERSION = 1
VERSIONS = (1,)

# Size limits in bytes, per kind. A board never needs more; the hub refuses more before parsing.
MAX_TELEMETRY = 1024
MAX_STATUS = 2048
MAX_CMD = 256
MAX_ACK = 256
MAX_READINGS = 32
MAX_TEXT = 200  # free text: firmware version, refusal reasons, safe-mode errors
MAX_ACTUATORS = 16
MAX_SENSORS = 16

# Board timestamps are integer milliseconds since the Unix epoch, between 2020-01-01 and 2100-01-01:
# a board whose clock was never set (1970 or 2000) is caught here rather than stored decades off.
TS_MIN = 1577836800000
TS_MAX = 4102444800000
SEQ_MAX = 0x3FFFFFFF  # fits a MicroPython small int on 32-bit ports: 34 years at 1 Hz
BOOT_MAX = 0x3FFFFFFF

# status states
ONLINE = "online"
OFFLINE = "offline"
SAFE = "safe"
STATES = (ONLINE, OFFLINE, SAFE)

# ack outcomes
APPLIED = "applied"
REJECTED = "rejected"
OUTCOMES = (APPLIED, REJECTED)

# actuator kinds
ACTUATOR_KINDS = ("relay", "pwm", "valve")

_TELEMETRY_KEYS = ("v", "seq", "ts", "boot", "s", "r", "q")
_STATUS_KEYS = ("v", "state", "ts", "boot", "fw", "caps", "error")
_CMD_KEYS = ("v", "id", "act", "val", "ts", "exp")
_ACK_KEYS = ("v", "id", "act", "st", "val", "why", "ts")
_CAPS_KEYS = ("sensors", "actuators", "uplink", "failsafe_after")
_SENSOR_KEYS = ("driver", "q")
_ACTUATOR_KEYS = ("kind", "unit", "min", "max", "failsafe", "rate", "min_on", "min_off")
_UPLINKS = ("mqtt", "modbus")


class Telemetry:
    """One sample of one sensor: readings are (quantity, value, quality) with value always a float."""

    def __init__(self, seq: int, ts: int, boot: int, sensor: str, readings: list[tuple[str, float, str]]) -> None:
        self.seq = seq
        self.ts = ts
        self.boot = boot
        self.sensor = sensor
        self.readings = readings


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


# ---------------------------------------------------------------------------------------------- checks


def _number(field: str, value: object) -> float:
    # bool is a subclass of int in CPython but not in MicroPython: test it first on both
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(field, "must be a number, got %s" % describe(value))
    try:
        f = float(value)
    except OverflowError:
        raise ProtocolError(field, "number too large") from None
    if math.isnan(f) or math.isinf(f):
        raise ProtocolError(field, "must be finite, got %s" % describe(value))
    return f


def _int(field: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(field, "must be an integer, got %s" % describe(value))
    if value < lo or value > hi:
        raise ProtocolError(field, "out of range %d..%d: %s" % (lo, hi, describe(value)))
    return value


def _ts(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(field, "must be integer milliseconds since 1970, got %s" % describe(value))
    if value < TS_MIN or value > TS_MAX:
        raise ProtocolError(field, "not between 2020 and 2100 (board clock not set?): %s" % describe(value))
    return value


def _text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise ProtocolError(field, "must be a string, got %s" % describe(value))
    if len(value) > MAX_TEXT:
        raise ProtocolError(field, "longer than %d characters" % MAX_TEXT)
    try:
        value.encode("utf-8")  # CPython lets JSON smuggle in lone surrogates; refuse them here
    except UnicodeError:
        raise ProtocolError(field, "not valid Unicode") from None
    return value


def _mapping(field: str, value: object, limit: int) -> dict[str, object]:
    """A JSON object whose keys are ids (sensor or actuator names), at most `limit` of them."""
    if not isinstance(value, dict):
        raise ProtocolError(field, "must be an object, got %s" % describe(value))
    if len(value) > limit:
        raise ProtocolError(field, "more than %d entries" % limit)
    for key in value:
        check_id(field + "." + str(key), key)
    return value


def _obj(field: str, value: object, allowed: tuple[str, ...]) -> dict[str, object]:
    """A JSON object with a closed set of keys."""
    if not isinstance(value, dict):
        raise ProtocolError(field, "must be an object, got %s" % describe(value))
    for key in value:
        if key not in allowed:
            raise ProtocolError(field, "unknown key %s" % describe(key))
    return value


def _required(obj: dict[str, object], key: str, where: str = "") -> object:
    if key not in obj:
        raise ProtocolError(where + key, "required key missing")
    return obj[key]


def _load(kind: str, payload: object, limit: int, allowed: tuple[str, ...]) -> dict[str, object]:
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise ProtocolError(kind, "payload must be bytes, got %s" % describe(type(payload)))
    if len(payload) > limit:
        raise ProtocolError(kind, "payload of %d bytes exceeds the %d-byte limit" % (len(payload), limit))
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeError:
        raise ProtocolError(kind, "payload is not valid UTF-8") from None
    try:
        obj = json.loads(text)
    except Exception:  # noqa: BLE001 - ValueError, RecursionError or RuntimeError, by interpreter
        raise ProtocolError(kind, "payload is not valid JSON") from None
    msg = _obj(kind, obj, allowed)
    version = _required(msg, "v")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProtocolError("v", "must be an integer version, got %s" % describe(version))
    if version not in VERSIONS:
        raise ProtocolError("v", "version %d not supported (this side knows up to %d)" % (version, VERSION))
    return msg


def _dumps_text(value: str) -> str:
    # json.dumps escapes quotes, backslashes and control characters the same on both interpreters
    return json.dumps(value)


def _fmt_number(value: float) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return "%d" % value
    return repr(float(value))


# ----------------------------------------------------------------------------------------- telemetry


def encode_telemetry(seq: int, ts: int, boot: int, sensor: str, readings: list[tuple]) -> bytes:  # type: ignore[type-arg]
    """Encode one sensor sample; `readings` is a list of (quantity, value) or (quantity, value, quality).

    Raises ProtocolError for anything decode would refuse, so a board finds its own bugs, not the hub.
    """
    _int("seq", seq, 0, SEQ_MAX)
    _ts("ts", ts)
    _int("boot", boot, 0, BOOT_MAX)
    check_id("s", sensor)
    if not readings:
        raise ProtocolError("r", "at least one reading is required")
    if len(readings) > MAX_READINGS:
        raise ProtocolError("r", "more than %d readings" % MAX_READINGS)
    parts = ['{"v":1,"seq":%d,"ts":%d,"boot":%d,"s":"%s","r":{' % (seq, ts, boot, sensor)]
    flags = []
    first = True
    for reading in readings:
        quantity = reading[0]
        catalogue.info(quantity)
        value = _number("r." + quantity, reading[1])
        if not first:
            parts.append(",")
        first = False
        parts.append('"%s":%s' % (quantity, _fmt_number(reading[1]) if value == reading[1] else repr(value)))
        if len(reading) > 2 and reading[2] != catalogue.OK:
            if reading[2] not in catalogue.QUALITIES:
                raise ProtocolError("q." + quantity, "unknown quality %s" % describe(reading[2]))
            flags.append('"%s":"%s"' % (quantity, reading[2]))
    parts.append("}")
    if flags:
        parts.append(',"q":{')
        parts.append(",".join(flags))
        parts.append("}")
    parts.append("}")
    out = "".join(parts).encode("utf-8")
    if len(out) > MAX_TELEMETRY:
        raise ProtocolError("telemetry", "encodes to %d bytes, over the %d-byte limit" % (len(out), MAX_TELEMETRY))
    return out


def decode_telemetry(payload: object) -> Telemetry:
    """Decode and validate a telemetry payload; out-of-range values are kept and flagged `range`."""
    obj = _load("telemetry", payload, MAX_TELEMETRY, _TELEMETRY_KEYS)
    seq = _int("seq", _required(obj, "seq"), 0, SEQ_MAX)
    ts = _ts("ts", _required(obj, "ts"))
    boot = _int("boot", _required(obj, "boot"), 0, BOOT_MAX)
    sensor = check_id("s", _required(obj, "s"))
    values = _required(obj, "r")
    if not isinstance(values, dict):
        raise ProtocolError("r", "must be an object of quantity: value, got %s" % describe(values))
    if not values:
        raise ProtocolError("r", "at least one reading is required")
    if len(values) > MAX_READINGS:
        raise ProtocolError("r", "more than %d readings" % MAX_READINGS)
    flags = obj.get("q", {})
    if not isinstance(flags, dict):
        raise ProtocolError("q", "must be an object of quantity: quality, got %s" % describe(flags))
    for quantity in flags:
        if quantity not in values:
            raise ProtocolError("q." + str(quantity), "quality given for a quantity with no reading")
        if flags[quantity] not in catalogue.QUALITIES:
            raise ProtocolError("q." + quantity, "unknown quality %s" % describe(flags[quantity]))
    readings = []
    for quantity in values:
        if quantity not in catalogue.QUANTITIES:
            raise ProtocolError("r." + quantity, "unknown quantity (not in the catalogue)")
        value = _number("r." + quantity, values[quantity])
        quality = catalogue.check(quantity, value, flags.get(quantity, catalogue.OK))
        readings.append((quantity, value, quality))
    return Telemetry(seq, ts, boot, sensor, readings)


# -------------------------------------------------------------------------------------------- status


def _check_caps(value: object) -> dict[str, object]:
    caps = _obj("caps", value, _CAPS_KEYS)
    sensors = _mapping("caps.sensors", caps.get("sensors", {}), MAX_SENSORS)
    for name in sensors:
        where = "caps.sensors." + name
        sensor = _obj(where, sensors[name], _SENSOR_KEYS)
        check_id(where + ".driver", _required(sensor, "driver", where + "."))
        quantities = _required(sensor, "q", where + ".")
        if not isinstance(quantities, list):
            raise ProtocolError(where + ".q", "must be a list of quantities")
        for quantity in quantities:
            if quantity not in catalogue.QUANTITIES:
                raise ProtocolError(where + ".q", "unknown quantity %s" % describe(quantity))
    actuators = _mapping("caps.actuators", caps.get("actuators", {}), MAX_ACTUATORS)
    for name in actuators:
        check_actuator(name, actuators[name], "caps.actuators.")
    if "uplink" in caps and caps["uplink"] not in _UPLINKS:
        raise ProtocolError("caps.uplink", "must be one of %s" % "|".join(_UPLINKS))
    if "failsafe_after" in caps and _number("caps.failsafe_after", caps["failsafe_after"]) <= 0:
        raise ProtocolError("caps.failsafe_after", "must be positive seconds")
    return caps


def check_actuator(name: str, spec: object, prefix: str = "") -> dict[str, object]:
    """Validate one actuator's limits: kind, min <= failsafe <= max, optional rate and min on/off times.

    Shared by the birth message, the board config and the hub's device profiles, so that all three agree.
    """
    where = prefix + str(name)
    check_id(where, name)
    spec = _obj(where, spec, _ACTUATOR_KEYS)
    kind = _required(spec, "kind", where + ".")
    if kind not in ACTUATOR_KINDS:
        raise ProtocolError(where + ".kind", "must be one of %s, got %s" % ("|".join(ACTUATOR_KINDS), describe(kind)))
    lo = _number(where + ".min", _required(spec, "min", where + "."))
    hi = _number(where + ".max", _required(spec, "max", where + "."))
    if lo > hi:
        raise ProtocolError(where, "min %s is above max %s" % (describe(lo), describe(hi)))
    safe = _number(where + ".failsafe", _required(spec, "failsafe", where + "."))
    if not lo <= safe <= hi:
        raise ProtocolError(where + ".failsafe", "%s is outside min..max" % describe(safe))
    if "unit" in spec:
        _text(where + ".unit", spec["unit"])
    for key in ("rate", "min_on", "min_off"):
        if key in spec and _number(where + "." + key, spec[key]) < 0:
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
    """Encode a status message. `online` needs ts, boot, fw and caps; `safe` needs ts, boot, fw and error."""
    parts = ['{"v":1,"state":"%s"' % state]
    if ts is not None:
        parts.append(',"ts":%d' % ts)
    if boot is not None:
        parts.append(',"boot":%d' % boot)
    if fw is not None:
        parts.append(',"fw":%s' % _dumps_text(fw))
    if caps is not None:
        parts.append(',"caps":%s' % _dumps_caps(caps))
    if error is not None:
        parts.append(',"error":%s' % _dumps_text(error[:MAX_TEXT]))
    parts.append("}")
    out = "".join(parts).encode("utf-8")
    decode_status(out)  # one set of rules: refuse to send what the hub would refuse
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
    obj = _load("status", payload, MAX_STATUS, _STATUS_KEYS)
    state = _required(obj, "state")
    if state not in STATES:
        raise ProtocolError("state", "must be one of %s, got %s" % ("|".join(STATES), describe(state)))
    ts = _ts("ts", obj["ts"]) if "ts" in obj else None
    boot = _int("boot", obj["boot"], 0, BOOT_MAX) if "boot" in obj else None
    fw = _text("fw", obj["fw"]) if "fw" in obj else None
    caps = _check_caps(obj["caps"]) if "caps" in obj else None
    error = _text("error", obj["error"]) if "error" in obj else None
    if state == ONLINE:
        for key in ("ts", "boot", "fw", "caps"):
            _required(obj, key)
    elif state == SAFE:
        for key in ("ts", "boot", "fw", "error"):
            _required(obj, key)
    return Status(state, ts, boot, fw, caps, error)


# ----------------------------------------------------------------------------------------------- cmd


def check_command_id(field: str, value: object) -> str:
    """Command ids follow the id rules of topics (1-32 of A-Z a-z 0-9 _ -)."""
    return check_id(field, value)


def encode_cmd(cmd_id: str, actuator: str, value: float, ts: int, expires: int) -> bytes:
    check_command_id("id", cmd_id)
    check_id("act", actuator)
    _number("val", value)
    _ts("ts", ts)
    _ts("exp", expires)
    if expires < ts:
        raise ProtocolError("exp", "expires before it was issued")
    return ('{"v":1,"id":"%s","act":"%s","val":%s,"ts":%d,"exp":%d}' % (
        cmd_id, actuator, _fmt_number(value), ts, expires)).encode("utf-8")


def decode_cmd(payload: object) -> Command:
    obj = _load("cmd", payload, MAX_CMD, _CMD_KEYS)
    cmd_id = check_command_id("id", _required(obj, "id"))
    actuator = check_id("act", _required(obj, "act"))
    value = _number("val", _required(obj, "val"))
    ts = _ts("ts", _required(obj, "ts"))
    expires = _ts("exp", _required(obj, "exp"))
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
    _ts("ts", ts)
    parts = ['{"v":1,"id":"%s","act":"%s","st":"%s"' % (cmd_id, actuator, status)]
    if value is not None:
        _number("val", value)
        parts.append(',"val":%s' % _fmt_number(value))
    if reason is not None:
        parts.append(',"why":%s' % _dumps_text(reason[:MAX_TEXT]))
    parts.append(',"ts":%d}' % ts)
    out = "".join(parts).encode("utf-8")
    decode_ack(out)
    return out


def decode_ack(payload: object) -> Ack:
    obj = _load("ack", payload, MAX_ACK, _ACK_KEYS)
    cmd_id = check_command_id("id", _required(obj, "id"))
    actuator = check_id("act", _required(obj, "act"))
    status = _required(obj, "st")
    if status not in OUTCOMES:
        raise ProtocolError("st", "must be one of %s, got %s" % ("|".join(OUTCOMES), describe(status)))
    ts = _ts("ts", _required(obj, "ts"))
    value = _number("val", obj["val"]) if "val" in obj else None
    reason = _text("why", obj["why"]) if "why" in obj else None
    if status == APPLIED and value is None:
        raise ProtocolError("val", "required key missing (an applied ack carries the value applied)")
    if status == REJECTED and reason is None:
        raise ProtocolError("why", "required key missing (a rejection carries its reason)")
    return Ack(cmd_id, actuator, status, ts, value, reason)


# ------------------------------------------------------------------------------------------ dispatch

_DECODERS = {
    "telemetry": decode_telemetry,
    "status": decode_status,
    "cmd": decode_cmd,
    "ack": decode_ack,
}


def decode(kind: str, payload: object) -> object:
    """Decode a payload of the kind named by its topic (see protocols.topics.parse)."""
    try:
        decoder = _DECODERS[kind]
    except KeyError:
        raise ProtocolError("kind", "unknown message kind %s" % describe(kind)) from None
    return decoder(payload)
