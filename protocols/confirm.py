"""End-to-end confirmation: the hub tells a board up to where it has stored the board's telemetry.

    qala/{site}/{device}/conf   {"v":1,"boot":7,"seq":1042}   hub -> board, QoS 0, retained

It means: every telemetry message of boot 7 with seq <= 1042 is in the hub's spool, fsynced (the hub sends
it only then, and only for a run without holes: a seq still missing holds the mark back). A board keeps each
record until such a confirmation covers it, not merely until the broker's PUBACK, and sends again, in order,
what stays unconfirmed (docs/protocol.md, "Confirmation"). Cumulative and retained: the latest one is all a
board needs, also when it reconnects after a long outage; at most about one per board per second.

- `encode_conf(boot, seq)` / `decode_conf(payload)`: the message (ProtocolError naming the field).
- `record_id(record)`: the (boot, seq) of an encoded telemetry record, read from its fixed prefix
  `{"v":1,"seq":N,"ts":T,"boot":B,` (protocols/telemetry_encode.py writes it so) without parsing the JSON:
  a board compares the records it holds with a confirmation this way.

Imports protocols.fields; knows nothing of sockets, files or clocks.
"""

from protocols.errors import ProtocolError
from protocols.fields import BOOT_MAX, SEQ_MAX, integer, load, required

# Literals inside the functions rather than module constants: each global's name would stay interned on the
# board (its qstr pool) for as long as it runs.


def encode_conf(boot: int, seq: int) -> bytes:
    return ('{"v":1,"boot":%d,"seq":%d}' % (integer("boot", boot, 0, BOOT_MAX),
                                            integer("seq", seq, 0, SEQ_MAX))).encode()


def decode_conf(payload: object) -> tuple[int, int]:
    """(boot, seq) of a confirmation."""
    obj = load("conf", payload, 64, ("v", "boot", "seq"))  # at most 64 bytes
    return integer("boot", required(obj, "boot"), 0, BOOT_MAX), integer("seq", required(obj, "seq"), 0, SEQ_MAX)


def _digits(data: bytes, start: int, field: str) -> tuple[int, int]:
    """The non-negative integer written at data[start:] and the index after it."""
    value = 0
    end = start
    while end < len(data) and 48 <= data[end] <= 57 and end - start < 10:
        value = value * 10 + data[end] - 48
        end += 1
    if end == start:
        raise ProtocolError(field, "not a telemetry record")
    return value, end


def record_id(record: bytes) -> tuple[int, int]:
    """(boot, seq) of an encoded telemetry record; ProtocolError (field `record`) if it is not one."""
    prefix = b'{"v":1,"seq":'
    n = len(prefix)
    if bytes(record[:n]) != prefix:
        raise ProtocolError("record", "not a telemetry record")
    seq, at = _digits(record, n, "record")
    at = record.find(b',"boot":', at, at + 32)
    if at < 0:
        raise ProtocolError("record", "not a telemetry record")
    boot, _ = _digits(record, at + 8, "record")  # 8: len(b',"boot":')
    return boot, seq
