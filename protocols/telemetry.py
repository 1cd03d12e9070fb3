"""Telemetry payloads: one sample of one sensor, `{"v":1,"seq":..,"ts":..,"boot":..,"s":..,"r":{..},"q":{..}}`.

The board's side (encode) is protocols/telemetry_encode.py, re-exported here, which a board imports alone;
the hub's side (decode, here) also checks every quantity against protocols.catalogue, imported when first needed.
"""

from protocols.errors import ProtocolError, describe
from protocols.fields import BOOT_MAX, SEQ_MAX, envelope, integer, number, parse, required, timestamp
from protocols.telemetry_encode import MAX_READINGS, MAX_TELEMETRY, OK, QUALITIES, encode_telemetry
from protocols.topics import check_id

__all__ = [  # the encoder's names too: callers import them from here, as before the split
    "KEYS", "MAX_READINGS", "MAX_TELEMETRY", "OK", "QUALITIES", "Telemetry", "check_telemetry", "decode_telemetry",
    "encode_telemetry",
]

KEYS = ("v", "seq", "ts", "boot", "s", "r", "q")


class Telemetry:
    """One sample of one sensor: readings are (quantity, value, quality) with value always a float."""

    def __init__(self, seq: int, ts: int, boot: int, sensor: str, readings: list[tuple[str, float, str]]) -> None:
        self.seq = seq
        self.ts = ts
        self.boot = boot
        self.sensor = sensor
        self.readings = readings


def decode_telemetry(payload: object) -> Telemetry:
    """Decode and validate a telemetry payload; out-of-range values are kept and flagged `range`."""
    return check_telemetry(parse("telemetry", payload, MAX_TELEMETRY))


def check_telemetry(obj: object) -> Telemetry:
    """Validate a telemetry payload already parsed: the value `json.loads` gives for its bytes.

    For a caller with a faster JSON parser (the hub). That caller checks the size limit (MAX_TELEMETRY) first,
    must pass exactly what json.loads would give, and hands every payload refused here or by its parser to
    `decode_telemetry`, so that all of them are judged by the rules here and refused with the same errors.
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
