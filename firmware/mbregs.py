"""The board's Modbus server, pure part: its registers, and a request PDU in -> a response PDU out.

No I/O, no asyncio, no hardware: `handle(pdu, regs)` decodes a request with protocols.modbus and answers it
from `regs` (a Registers), so CPython tests (and a fuzzer) drive it exactly as the board does. The map is
protocols/boardmap.py. Answers:
- FC 04 input registers 0..boardmap.INPUT_REGISTERS-1 (float32 ABCD per quantity, NaN if not measured);
- FC 03 holding registers (two per actuator setpoint), FC 16 writes whole setpoints (an even address and
  count inside the map; a write that splits a float answers 02), FC 06 answers 02 (half a float32);
- FC 01 coils (one per actuator), FC 05/15 coil writes (relays only; another kind answers 02);
- FC 02 discrete inputs: the board has none (02).
Exception 01: unknown function; 02: an address outside the map; 03: a malformed request, or a value that is
not finite or that the actuator's limits refuse (`check` says why). A refused write changes nothing: every
value of a request is checked before the first is applied.
"""

import struct

from protocols import boardmap, modbus
from protocols.errors import ProtocolError

_NAN = float("nan")


class Registers:
    """What the board serves. `check(name, value)` returns None or why not; `apply(name, value)` drives."""

    def __init__(self, actuators, check, apply):
        # actuators: {name: spec with kind, min, max}
        self.names = boardmap.actuator_order(list(actuators))
        self.specs = actuators
        self.check = check
        self.apply = apply
        self.inputs = bytearray(2 * boardmap.INPUT_REGISTERS)
        for i in range(len(boardmap.QUANTITIES)):
            struct.pack_into(">f", self.inputs, 4 * i, _NAN)
        self.holding = bytearray(4 * len(self.names))
        for i in range(len(self.names)):
            struct.pack_into(">f", self.holding, 4 * i, _NAN)

    def set_input(self, quantity, value):
        """Put a quantity's latest value (None or a failing sensor: NaN) in its slot; unknown quantities are ignored."""
        try:
            i = boardmap.QUANTITIES.index(quantity)
        except ValueError:
            return
        try:
            struct.pack_into(">f", self.inputs, 4 * i, _NAN if value is None else value)
        except (OverflowError, TypeError, ValueError):
            struct.pack_into(">f", self.inputs, 4 * i, _NAN)

    def set_setpoint(self, name, value):
        """Record an actuator's value (after it was driven, by Modbus or otherwise)."""
        if name in self.names:
            struct.pack_into(">f", self.holding, 4 * self.names.index(name), value)

    def setpoint(self, index):
        return struct.unpack_from(">f", self.holding, 4 * index)[0]


def _words(data, address, count):
    out = []
    for i in range(address, address + count):
        out.append((data[2 * i] << 8) | data[2 * i + 1])
    return out


def _coils(regs, address, count):
    out = []
    for i in range(address, address + count):
        v = regs.setpoint(i)
        out.append(0 if v != v or v == regs.specs[regs.names[i]]["min"] else 1)  # noqa: PLR0124 - NaN test
    return out


def _write(regs, pairs):
    """Check every (index, value), then apply them all; the exception code, or 0 when applied."""
    for i, value in pairs:
        if value != value or value in (float("inf"), float("-inf")):  # noqa: PLR0124 - NaN test without math
            return modbus.ILLEGAL_DATA_VALUE
        if regs.check(regs.names[i], value) is not None:
            return modbus.ILLEGAL_DATA_VALUE
    for i, value in pairs:
        regs.apply(regs.names[i], value)
        regs.set_setpoint(regs.names[i], value)
    return 0


def handle(pdu, regs):
    """The response PDU to a request PDU (an exception response for anything refused); None for no answer."""
    if not pdu:
        return None
    function = pdu[0]
    try:
        req = modbus.decode_request(pdu)
    except modbus.ModbusError as exc:
        return modbus.exception_response(function, exc.code)
    except ProtocolError:
        return modbus.exception_response(function, modbus.ILLEGAL_DATA_VALUE)
    a, n = req.address, req.count
    acts = len(regs.names)
    if function == modbus.READ_INPUT_REGISTERS:
        if a + n > boardmap.INPUT_REGISTERS:
            return modbus.exception_response(function, modbus.ILLEGAL_DATA_ADDRESS)
        return modbus.registers_response(function, _words(regs.inputs, a, n))
    if function == modbus.READ_HOLDING_REGISTERS:
        if a + n > 2 * acts:
            return modbus.exception_response(function, modbus.ILLEGAL_DATA_ADDRESS)
        return modbus.registers_response(function, _words(regs.holding, a, n))
    if function == modbus.READ_COILS:
        if a + n > acts:
            return modbus.exception_response(function, modbus.ILLEGAL_DATA_ADDRESS)
        return modbus.bits_response(function, _coils(regs, a, n))
    if function == modbus.WRITE_MULTIPLE_REGISTERS:
        if a % 2 or n % 2 or a + n > 2 * acts:
            return modbus.exception_response(function, modbus.ILLEGAL_DATA_ADDRESS)
        raw = bytearray(2 * n)
        for i in range(n):
            raw[2 * i] = req.values[i] >> 8
            raw[2 * i + 1] = req.values[i] & 0xFF
        pairs = [(a // 2 + k, struct.unpack_from(">f", raw, 4 * k)[0]) for k in range(n // 2)]
        code = _write(regs, pairs)
        return modbus.exception_response(function, code) if code else modbus.write_response(req)
    if function in (modbus.WRITE_SINGLE_COIL, modbus.WRITE_MULTIPLE_COILS):
        if a + n > acts:
            return modbus.exception_response(function, modbus.ILLEGAL_DATA_ADDRESS)
        pairs = []
        for k in range(n):
            spec = regs.specs[regs.names[a + k]]
            if spec["kind"] != "relay":
                return modbus.exception_response(function, modbus.ILLEGAL_DATA_ADDRESS)
            pairs.append((a + k, spec["max"] if req.values[k] else spec["min"]))
        code = _write(regs, pairs)
        return modbus.exception_response(function, code) if code else modbus.write_response(req)
    # FC 02 (no discrete inputs) and FC 06 (half a float32 setpoint)
    return modbus.exception_response(function, modbus.ILLEGAL_DATA_ADDRESS)
