"""Payload codec for the four message kinds, in one place for CPython callers (the hub, tools, tests).

Compact JSON, one object per MQTT message: version 1 (`"v":1`) for telemetry and status, version 2 for the
signed cmd and ack (protocols/control.py, protocols/sign.py). `encode_*` build the bytes (keys in a fixed
order, no spaces), `decode_*` validate every field and return a small message object. Bad input of any kind
(not UTF-8, not JSON, wrong type, missing or unknown key, NaN/Infinity, out-of-range number, oversize
message) raises ProtocolError naming the field; decoders raise nothing else. docs/protocol.md is the
human-readable version.

The code lives in one module per kind, so that a board loads only what it uses:

    protocols/fields.py     field rules shared by all kinds, the JSON envelope, version and time limits
    protocols/telemetry.py  telemetry (the hub decodes against the catalogue)
    protocols/telemetry_encode.py  its encoder, all a board loads of it (re-exported by telemetry.py)
    protocols/status.py     birth / last will / safe mode
    protocols/limits.py     the rules for a birth's caps and for actuator limits (boards: at boot only)
    protocols/control.py    cmd and ack, signed with the board's command key (protocols/sign.py)

Versioning: the field set of a version is closed, so a misspelt key is an error rather than silently lost.
A new field or meaning bumps `v`; decoders accept every version they know and name the newest one they
understand when refusing a message from the future.
"""

from protocols.control import (
    APPLIED,
    MAX_ACK,
    MAX_CMD,
    N_MAX,
    OUTCOMES,
    REJECTED,
    UNSIGNED_ACK,
    UNSIGNED_CMD,
    Ack,
    Command,
    SignatureError,
    check_command_id,
    decode_ack,
    decode_cmd,
    encode_ack,
    encode_cmd,
    read_ack,
    read_cmd,
)
from protocols.errors import ProtocolError, describe
from protocols.fields import BOOT_MAX, MAX_TEXT, SEQ_MAX, TS_MAX, TS_MIN, VERSION, VERSIONS
from protocols.limits import ACTUATOR_KINDS, MAX_ACTUATORS, MAX_SENSORS, check_actuator, check_caps
from protocols.status import (
    MAX_STATUS,
    OFFLINE,
    ONLINE,
    SAFE,
    STATES,
    Status,
    decode_status,
    encode_status,
)
from protocols.telemetry import MAX_READINGS, MAX_TELEMETRY, Telemetry, decode_telemetry, encode_telemetry

_DECODERS = {
    "telemetry": decode_telemetry,
    "status": decode_status,
    "cmd": read_cmd,
    "ack": read_ack,
}


def decode(kind: str, payload: object) -> object:
    """Decode a payload of the kind named by its topic (see protocols.topics.parse).

    A cmd or ack is read without checking its signature (read_cmd, read_ack): to act on one, use
    decode_cmd / decode_ack with the board's key.
    """
    try:
        decoder = _DECODERS[kind]
    except KeyError:
        raise ProtocolError("kind", "unknown message kind %s" % describe(kind)) from None
    return decoder(payload)


__all__ = [
    "ACTUATOR_KINDS",
    "APPLIED",
    "BOOT_MAX",
    "MAX_ACK",
    "MAX_ACTUATORS",
    "MAX_CMD",
    "MAX_READINGS",
    "MAX_SENSORS",
    "MAX_STATUS",
    "MAX_TELEMETRY",
    "MAX_TEXT",
    "N_MAX",
    "OFFLINE",
    "ONLINE",
    "OUTCOMES",
    "REJECTED",
    "SAFE",
    "SEQ_MAX",
    "STATES",
    "TS_MAX",
    "TS_MIN",
    "UNSIGNED_ACK",
    "UNSIGNED_CMD",
    "VERSION",
    "VERSIONS",
    "Ack",
    "Command",
    "ProtocolError",
    "SignatureError",
    "Status",
    "Telemetry",
    "check_actuator",
    "check_caps",
    "check_command_id",
    "decode",
    "decode_ack",
    "decode_cmd",
    "decode_status",
    "decode_telemetry",
    "encode_ack",
    "encode_cmd",
    "encode_status",
    "encode_telemetry",
    "read_ack",
    "read_cmd",
]
