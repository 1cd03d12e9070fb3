"""Telemetry payloads: one sample of one sensor, `{"v":1,"seq":..,"ts":..,"boot":..,"s":..,"r":{..},"q":{..}}`.

The board's side (encode) needs only protocols.fields; the hub's side (decode) also checks every quantity
against protocols.catalogue, imported when first needed so that a board never holds it.
"""

from protocols.errors import ProtocolError, describe
from protocols.fields import (
    BOOT_MAX,
    SEQ_MAX,
    envelope,
    fmt_number,
    integer,
    number,
    parse,
    required,
    timestamp,
)
from protocols.topics import check_id

MAX_TELEMETRY = 1024
MAX_READINGS = 32
KEYS = ("v", "seq", "ts", "boot", "s", "r", "q")
# the quality flags of protocols.catalogue, repeated here so the encoder needs no catalogue (a test keeps them equal)
OK = "ok"
QUALITIES = ("ok", "warmup", "range", "fault", "stale", "lost")


class Telemetry:
    """One sample of one sensor: readings are (quantity, value, quality) with value always a float."""

    def __init__(self, seq: int, ts: int, boot: int, sensor: str, readings: list[tuple[str, float, str]]) -> None:
        self.seq = seq
        self.ts = ts
        self.boot = boot
        self.sensor = sensor
        self.readings = readings


def encode_telemetry(seq: int, ts: int, boot: int, sensor: str, readings: list[tuple]) -> bytes:  # type: ignore[type-arg]
    """Encode one sensor sample; `readings` is a list of (quantity, value) or (quantity, value, quality).

    Raises ProtocolError for anything decode would refuse except an uncatalogued quantity name: a board checks
    its quantities against the catalogue once, when it validates its config, and never loads it afterwards.
    """
    integer("seq", seq, 0, SEQ_MAX)
    timestamp("ts", ts)
    integer("boot", boot, 0, BOOT_MAX)
    check_id("s", sensor)
    if not readings:
        raise ProtocolError("r", "at least one reading is required")
    if len(readings) > MAX_READINGS:
        raise ProtocolError("r", "more than %d readings" % MAX_READINGS)
    parts = ['{"v":1,"seq":%d,"ts":%d,"boot":%d,"s":"%s","r":{' % (seq, ts, boot, sensor)]
    flags = []
    first = True
    for reading in readings:
        quantity = check_id("r", reading[0])
        value = number("r." + quantity, reading[1])
        if not first:
            parts.append(",")
        first = False
        parts.append('"%s":%s' % (quantity, fmt_number(reading[1]) if value == reading[1] else repr(value)))
        if len(reading) > 2 and reading[2] != OK:
            if reading[2] not in QUALITIES:
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
    return check_telemetry(parse("telemetry", payload, MAX_TELEMETRY))


def check_telemetry(obj: object) -> Telemetry:
    """Validate a telemetry payload already parsed: the value `json.loads` gives for its bytes.

    For a caller with a faster JSON parser (the hub): it checks the size limit first, must give exactly what
    json.loads would, and leaves every payload it refuses to `decode_telemetry`, so that all of them are
    judged by the rules here and refused with the same errors.
    """
    from protocols import catalogue

    msg = envelope("telemetry", obj, KEYS)
    seq = integer("seq", required(msg, "seq"), 0, SEQ_MAX)
    ts = timestamp("ts", required(msg, "ts"))
    boot = integer("boot", required(msg, "boot"), 0, BOOT_MAX)
    sensor = check_id("s", required(msg, "s"))
    values = required(msg, "r")
    if not isinstance(values, dict):
        raise ProtocolError("r", "must be an object of quantity: value, got %s" % describe(values))
    if not values:
        raise ProtocolError("r", "at least one reading is required")
    if len(values) > MAX_READINGS:
        raise ProtocolError("r", "more than %d readings" % MAX_READINGS)
    flags = msg.get("q", {})
    if not isinstance(flags, dict):
        raise ProtocolError("q", "must be an object of quantity: quality, got %s" % describe(flags))
    for quantity in flags:
        if quantity not in values:
            raise ProtocolError("q." + str(quantity), "quality given for a quantity with no reading")
        if flags[quantity] not in QUALITIES:
            raise ProtocolError("q." + quantity, "unknown quality %s" % describe(flags[quantity]))
    readings = []
    quantities = catalogue.QUANTITIES
    check = catalogue.check
    for quantity in values:
        if quantity not in quantities:
            raise ProtocolError("r." + quantity, "unknown quantity (not in the catalogue)")
        value = values[quantity]
        if type(value) is not float or value - value != 0.0:  # a finite float is already what number() returns
            value = number("r." + quantity, value)
        readings.append((quantity, value, check(quantity, value, flags.get(quantity, OK) if flags else OK)))
    return Telemetry(seq, ts, boot, sensor, readings)
