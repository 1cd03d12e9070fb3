"""Telemetry encoding, the board's half of protocols/telemetry.py: `encode_telemetry` and the limits it applies.

Kept apart from the decoder so that a board, which only encodes, never holds the decoder's code in RAM.
protocols.telemetry re-exports every name here (the hub and the tests import them from there). Needs
protocols.fields and protocols.topics, never the catalogue.
"""

from protocols.errors import ProtocolError, describe
from protocols.fields import BOOT_MAX, SEQ_MAX, fmt_number, integer, number, timestamp
from protocols.topics import check_id

MAX_TELEMETRY = 1024
MAX_READINGS = 32
# the quality flags of protocols.catalogue, repeated here so the encoder needs no catalogue (a test keeps them equal)
OK = "ok"
QUALITIES = ("ok", "warmup", "range", "fault", "stale", "lost")


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
