"""Field rules shared by every payload kind: numbers, integers, timestamps, text, objects, the JSON envelope.

Pure functions that return the checked value or raise ProtocolError naming the field. No catalogue here:
boards import this with the encoders they need and nothing more (see protocols/payloads.py for the map).
"""

import json
import math

from protocols.errors import ProtocolError, describe
from protocols.topics import check_id

VERSION = 1
VERSIONS = (1,)

MAX_TEXT = 200  # free text: firmware version, refusal reasons, safe-mode errors

# Board timestamps are integer milliseconds since the Unix epoch, between 2020-01-01 and 2100-01-01:
# a board whose clock was never set (1970 or 2000) is caught here rather than stored decades off.
TS_MIN = 1577836800000
TS_MAX = 4102444800000
SEQ_MAX = 0x3FFFFFFF  # fits a MicroPython small int on 32-bit ports: 34 years at 1 Hz
BOOT_MAX = 0x3FFFFFFF


def number(field: str, value: object) -> float:
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


def integer(field: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(field, "must be an integer, got %s" % describe(value))
    if value < lo or value > hi:
        raise ProtocolError(field, "out of range %d..%d: %s" % (lo, hi, describe(value)))
    return value


def timestamp(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(field, "must be integer milliseconds since 1970, got %s" % describe(value))
    if value < TS_MIN or value > TS_MAX:
        raise ProtocolError(field, "not between 2020 and 2100 (board clock not set?): %s" % describe(value))
    return value


def text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise ProtocolError(field, "must be a string, got %s" % describe(value))
    if len(value) > MAX_TEXT:
        raise ProtocolError(field, "longer than %d characters" % MAX_TEXT)
    try:
        value.encode("utf-8")  # CPython lets JSON smuggle in lone surrogates; refuse them here
    except UnicodeError:
        raise ProtocolError(field, "not valid Unicode") from None
    return value


def mapping(field: str, value: object, limit: int) -> dict[str, object]:
    """A JSON object whose keys are ids (sensor or actuator names), at most `limit` of them."""
    if not isinstance(value, dict):
        raise ProtocolError(field, "must be an object, got %s" % describe(value))
    if len(value) > limit:
        raise ProtocolError(field, "more than %d entries" % limit)
    for key in value:
        check_id(field + "." + str(key), key)
    return value


def closed_object(field: str, value: object, allowed: tuple[str, ...]) -> dict[str, object]:
    """A JSON object with a closed set of keys."""
    if not isinstance(value, dict):
        raise ProtocolError(field, "must be an object, got %s" % describe(value))
    for key in value:
        if key not in allowed:
            raise ProtocolError(field, "unknown key %s" % describe(key))
    return value


def required(obj: dict[str, object], key: str, where: str = "") -> object:
    if key not in obj:
        raise ProtocolError(where + key, "required key missing")
    return obj[key]


def parse(kind: str, payload: object, limit: int) -> object:
    """The JSON value of a payload (bytes, or str as UTF-8) of at most `limit` bytes, not yet checked."""
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
        return json.loads(text)
    except Exception:  # noqa: BLE001 - ValueError, RecursionError or RuntimeError, by interpreter
        raise ProtocolError(kind, "payload is not valid JSON") from None


def envelope(kind: str, obj: object, allowed: tuple[str, ...],
             versions: tuple[int, ...] = VERSIONS) -> dict[str, object]:
    """A parsed payload as a message object: a closed set of keys and a version this side knows (of `versions`)."""
    msg = closed_object(kind, obj, allowed)
    version = required(msg, "v")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProtocolError("v", "must be an integer version, got %s" % describe(version))
    if version not in versions:
        raise ProtocolError("v", "version %d not supported (this side knows up to %d)" % (version, versions[-1]))
    return msg


def load(kind: str, payload: object, limit: int, allowed: tuple[str, ...],
         versions: tuple[int, ...] = VERSIONS) -> dict[str, object]:
    """`parse` then `envelope`: a payload's message object, or ProtocolError."""
    return envelope(kind, parse(kind, payload, limit), allowed, versions)


def dumps_text(value: str) -> str:
    # json.dumps escapes quotes, backslashes and control characters the same on both interpreters
    return json.dumps(value)


def fmt_number(value: float) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return "%d" % value
    return repr(float(value))


