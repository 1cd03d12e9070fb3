"""Modbus register primitives: 16- and 32-bit integers and IEEE-754 float32 in every byte and word order.

Real meters disagree on order. The order is named by where the value's bytes A (most significant) to D
(least significant) appear on the wire, register by register, as Telegraf and most meter manuals do:

    ABCD  big-endian, high word first (Modbus "standard"; Eastron SDM, most PLCs)
    CDAB  word-swapped: low word first, bytes big-endian in each word (many Schneider/Siemens meters)
    BADC  byte-swapped within each word, high word first
    DCBA  little-endian throughout

A 16-bit type uses only the byte order inside its register: ABCD and CDAB read AB, BADC and DCBA read BA.
`scale` multiplies the raw number on decode (a register holding 2301 with scale 0.1 is 230.1) and divides
on encode. Bad register values or values that do not fit raise ProtocolError.
"""

import math
import struct

from protocols.errors import ProtocolError, describe

ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")

# type: (registers, struct format (big-endian), integer min, integer max); float bounds are checked apart
TYPES = {
    "u16": (1, ">H", 0, 0xFFFF),
    "s16": (1, ">h", -0x8000, 0x7FFF),
    "u32": (2, ">I", 0, 0xFFFFFFFF),
    "s32": (2, ">i", -0x80000000, 0x7FFFFFFF),
    "f32": (2, ">f", 0, 0),
}
FLOAT32_MAX = 3.4028234663852886e38


def size(dtype: str) -> int:
    """How many 16-bit registers a value of `dtype` occupies."""
    return int(_type(dtype)[0])


def _type(dtype: str) -> tuple[int, str, int, int]:
    try:
        return TYPES[dtype]
    except (KeyError, TypeError):
        raise ProtocolError("type", "unknown register type %s (use %s)" % (describe(dtype), "|".join(TYPES))) from None


def _order(order: str) -> str:
    if order not in ORDERS:
        raise ProtocolError("order", "unknown byte/word order %s (use %s)" % (describe(order), "|".join(ORDERS)))
    return order


def _wire(registers: object, count: int) -> bytes:
    if not isinstance(registers, (list, tuple)):
        raise ProtocolError("registers", "must be a list of register values, got %s" % describe(registers))
    if len(registers) != count:
        raise ProtocolError("registers", "expected %d registers, got %d" % (count, len(registers)))
    out = bytearray(2 * count)
    for i in range(count):
        reg = registers[i]
        if isinstance(reg, bool) or not isinstance(reg, int) or reg < 0 or reg > 0xFFFF:
            raise ProtocolError("registers[%d]" % i, "must be an integer 0..65535, got %s" % describe(reg))
        out[2 * i] = reg >> 8
        out[2 * i + 1] = reg & 0xFF
    return bytes(out)


def _reorder(data: bytes, order: str) -> bytes:
    """Map bytes between wire order and big-endian ABCD; the permutations are their own inverses."""
    if len(data) == 2:
        return data if order in ("ABCD", "CDAB") else bytes((data[1], data[0]))
    if order == "ABCD":
        return data
    if order == "CDAB":
        return bytes((data[2], data[3], data[0], data[1]))
    if order == "BADC":
        return bytes((data[1], data[0], data[3], data[2]))
    return bytes((data[3], data[2], data[1], data[0]))


def decode(registers: object, dtype: str, order: str = "ABCD", scale: float = 1.0) -> float:
    """The physical value held in `registers` (a list of 1 or 2 ints 0..65535), as a float."""
    count, fmt = _type(dtype)[:2]
    data = _reorder(_wire(registers, count), _order(order))
    raw: float = struct.unpack(fmt, data)[0]
    if dtype == "f32" and (math.isnan(raw) or math.isinf(raw)):
        raise ProtocolError("registers", "%s decodes to a non-finite float (%s)" % (describe(registers), raw))
    return raw * scale if scale != 1 else float(raw)


def encode(value: float, dtype: str, order: str = "ABCD", scale: float = 1.0) -> list[int]:
    """The registers that hold `value` (divided by `scale`, rounded for integer types)."""
    count, fmt, lo, hi = _type(dtype)
    _order(order)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError("value", "must be a number, got %s" % describe(value))
    if scale == 0:
        raise ProtocolError("scale", "must not be zero")
    raw = value / scale if scale != 1 else value
    if math.isnan(raw) or math.isinf(raw):
        raise ProtocolError("value", "must be finite, got %s" % describe(value))
    if dtype == "f32":
        if abs(raw) > FLOAT32_MAX:
            raise ProtocolError("value", "%s does not fit a float32" % describe(value))
        data = struct.pack(fmt, raw)
    else:
        whole = round(raw)
        if whole < lo or whole > hi:
            raise ProtocolError("value", "%s does not fit %s (%d..%d after scale)" % (
                describe(value), dtype, lo, hi))
        data = struct.pack(fmt, whole)
    data = _reorder(data, order)
    return [(data[2 * i] << 8) | data[2 * i + 1] for i in range(count)]
