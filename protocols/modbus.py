"""Modbus PDUs (application layer): requests, responses and exception responses, sans-I/O.

Function codes 1 (read coils), 2 (read discrete inputs), 3 (read holding registers), 4 (read input
registers), 5 (write single coil), 6 (write single register), 15 (write multiple coils) and 16 (write multiple
registers), as in the Modbus Application Protocol Specification V1.1b3. A PDU here is the function code plus
data, without unit id or checksum: framing (RTU, TCP) lives in protocols/modbus_framing.py.

Decoding a request that breaks the spec raises ModbusError carrying the exception code a server must answer
with (01 illegal function, 02 illegal data address, 03 illegal data value). Decoding an exception response
raises ModbusDeviceError. Both are ProtocolError subclasses, so callers that only care "bad input"
catch one type.
"""

from protocols._compat import const
from protocols.errors import ProtocolError

READ_COILS = const(1)
READ_DISCRETE_INPUTS = const(2)
READ_HOLDING_REGISTERS = const(3)
READ_INPUT_REGISTERS = const(4)
WRITE_SINGLE_COIL = const(5)
WRITE_SINGLE_REGISTER = const(6)
WRITE_MULTIPLE_COILS = const(15)
WRITE_MULTIPLE_REGISTERS = const(16)
FUNCTIONS = (1, 2, 3, 4, 5, 6, 15, 16)

ILLEGAL_FUNCTION = const(1)
ILLEGAL_DATA_ADDRESS = const(2)
ILLEGAL_DATA_VALUE = const(3)
SERVER_DEVICE_FAILURE = const(4)
ACKNOWLEDGE = const(5)
SERVER_DEVICE_BUSY = const(6)
GATEWAY_PATH_UNAVAILABLE = const(10)
GATEWAY_TARGET_FAILED = const(11)
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

MAX_READ_BITS = const(2000)
MAX_READ_REGISTERS = const(125)
MAX_WRITE_BITS = const(1968)
MAX_WRITE_REGISTERS = const(123)
MAX_PDU = const(253)


class ModbusError(ProtocolError):
    """A request a server must refuse: `code` is the exception code to answer with."""

    def __init__(self, code: int, problem: str) -> None:
        self.code = code
        super().__init__("modbus", "%s (exception %02d %s)" % (problem, code, EXCEPTION_NAMES.get(code, "?")))


class ModbusDeviceError(ProtocolError):
    """A device answered a request with an exception response."""

    def __init__(self, function: int, code: int) -> None:
        self.function = function
        self.code = code
        super().__init__(
            "modbus", "device answered function %d with exception %02d (%s)" % (
                function, code, EXCEPTION_NAMES.get(code, "unknown exception"))
        )


class Request:
    """A decoded request. `count` for reads; `values` (register ints, or 0/1 for coils) for writes."""

    def __init__(self, function: int, address: int, count: int, values: list[int] | None = None) -> None:
        self.function = function
        self.address = address
        self.count = count
        self.values = values


def _u16(data: bytes | bytearray | memoryview, offset: int) -> int:
    return (data[offset] << 8) | data[offset + 1]


def _check_u16(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 0xFFFF:
        raise ProtocolError(name, "must be an integer 0..65535, got %r" % (value,))


def pack_bits(bits: list[int]) -> bytes:
    """Coil/discrete values, first bit in the least significant bit of the first byte (spec 6.1)."""
    out = bytearray((len(bits) + 7) // 8)
    for i in range(len(bits)):
        if bits[i]:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def unpack_bits(data: bytes | bytearray | memoryview, count: int) -> list[int]:
    """Bits as 0/1 ints (MicroPython's bool is not an int, so ints keep both interpreters alike)."""
    return [(data[i >> 3] >> (i & 7)) & 1 for i in range(count)]


# ----------------------------------------------------------------------------------------- requests


def read_request(function: int, address: int, count: int) -> bytes:
    """FC 1-4: read `count` bits or registers from `address` (0-based protocol address)."""
    if function not in (1, 2, 3, 4):
        raise ProtocolError("function", "not a read function: %r" % (function,))
    _check_u16("address", address)
    limit = MAX_READ_BITS if function <= 2 else MAX_READ_REGISTERS
    if not 1 <= count <= limit:
        raise ProtocolError("count", "must be 1..%d, got %r" % (limit, count))
    if address + count > 0x10000:
        raise ProtocolError("count", "address %d + count %d runs past 65535" % (address, count))
    return bytes((function, address >> 8, address & 0xFF, count >> 8, count & 0xFF))


def write_coil_request(address: int, on: bool) -> bytes:
    _check_u16("address", address)
    return bytes((WRITE_SINGLE_COIL, address >> 8, address & 0xFF, 0xFF if on else 0x00, 0x00))


def write_register_request(address: int, value: int) -> bytes:
    _check_u16("address", address)
    _check_u16("value", value)
    return bytes((WRITE_SINGLE_REGISTER, address >> 8, address & 0xFF, value >> 8, value & 0xFF))


def write_coils_request(address: int, bits: list[int]) -> bytes:
    _check_u16("address", address)
    if not 1 <= len(bits) <= MAX_WRITE_BITS:
        raise ProtocolError("values", "must hold 1..%d coils" % MAX_WRITE_BITS)
    packed = pack_bits(bits)
    n = len(bits)
    return bytes((WRITE_MULTIPLE_COILS, address >> 8, address & 0xFF, n >> 8, n & 0xFF, len(packed))) + packed


def write_registers_request(address: int, values: list[int]) -> bytes:
    _check_u16("address", address)
    n = len(values)
    if not 1 <= n <= MAX_WRITE_REGISTERS:
        raise ProtocolError("values", "must hold 1..%d registers" % MAX_WRITE_REGISTERS)
    out = bytearray(6 + 2 * n)
    out[0] = WRITE_MULTIPLE_REGISTERS
    out[1] = address >> 8
    out[2] = address & 0xFF
    out[3] = n >> 8
    out[4] = n & 0xFF
    out[5] = 2 * n
    for i in range(n):
        _check_u16("values[%d]" % i, values[i])
        out[6 + 2 * i] = values[i] >> 8
        out[7 + 2 * i] = values[i] & 0xFF
    return bytes(out)


def decode_request(pdu: bytes | bytearray | memoryview) -> Request:
    """Parse a request PDU as a server does; ModbusError names the exception code to answer with."""
    if len(pdu) < 1:
        raise ProtocolError("pdu", "empty")
    function = pdu[0]
    if function not in FUNCTIONS:
        raise ModbusError(ILLEGAL_FUNCTION, "function code %d not supported" % function)
    if function <= 6:
        if len(pdu) != 5:
            raise ModbusError(ILLEGAL_DATA_VALUE, "function %d request must be 5 bytes, got %d" % (function, len(pdu)))
        address = _u16(pdu, 1)
        word = _u16(pdu, 3)
        if function <= 4:
            limit = MAX_READ_BITS if function <= 2 else MAX_READ_REGISTERS
            if not 1 <= word <= limit:
                raise ModbusError(ILLEGAL_DATA_VALUE, "quantity %d outside 1..%d" % (word, limit))
            if address + word > 0x10000:
                raise ModbusError(ILLEGAL_DATA_ADDRESS, "address %d + quantity %d past 65535" % (address, word))
            return Request(function, address, word)
        if function == WRITE_SINGLE_COIL:
            if word not in (0x0000, 0xFF00):
                raise ModbusError(ILLEGAL_DATA_VALUE, "coil value must be 0x0000 or 0xFF00, got 0x%04X" % word)
            return Request(function, address, 1, [1 if word == 0xFF00 else 0])
        return Request(function, address, 1, [word])
    if len(pdu) < 6:
        raise ModbusError(ILLEGAL_DATA_VALUE, "function %d request truncated" % function)
    address = _u16(pdu, 1)
    count = _u16(pdu, 3)
    nbytes = pdu[5]
    if function == WRITE_MULTIPLE_COILS:
        if not 1 <= count <= MAX_WRITE_BITS or nbytes != (count + 7) // 8:
            raise ModbusError(ILLEGAL_DATA_VALUE, "coil count %d does not match byte count %d" % (count, nbytes))
    elif not 1 <= count <= MAX_WRITE_REGISTERS or nbytes != 2 * count:
        raise ModbusError(ILLEGAL_DATA_VALUE, "register count %d does not match byte count %d" % (count, nbytes))
    if len(pdu) != 6 + nbytes:
        raise ModbusError(ILLEGAL_DATA_VALUE, "byte count %d but %d data bytes" % (nbytes, len(pdu) - 6))
    if address + count > 0x10000:
        raise ModbusError(ILLEGAL_DATA_ADDRESS, "address %d + quantity %d past 65535" % (address, count))
    if function == WRITE_MULTIPLE_COILS:
        return Request(function, address, count, unpack_bits(pdu[6:], count))
    return Request(function, address, count, [_u16(pdu, 6 + 2 * i) for i in range(count)])


# ---------------------------------------------------------------------------------------- responses


def bits_response(function: int, bits: list[int]) -> bytes:
    packed = pack_bits(bits)
    return bytes((function, len(packed))) + packed


def registers_response(function: int, values: list[int]) -> bytes:
    out = bytearray(2 + 2 * len(values))
    out[0] = function
    out[1] = 2 * len(values)
    for i in range(len(values)):
        _check_u16("values[%d]" % i, values[i])
        out[2 + 2 * i] = values[i] >> 8
        out[3 + 2 * i] = values[i] & 0xFF
    return bytes(out)


def write_response(request: Request) -> bytes:
    """The normal answer to a write request: FC 5/6 echo the request, FC 15/16 echo address and count."""
    a = request.address
    if request.function == WRITE_SINGLE_COIL:
        return bytes((5, a >> 8, a & 0xFF, 0xFF if request.values and request.values[0] else 0, 0))
    if request.function == WRITE_SINGLE_REGISTER:
        v = request.values[0] if request.values else 0
        return bytes((6, a >> 8, a & 0xFF, v >> 8, v & 0xFF))
    n = request.count
    return bytes((request.function, a >> 8, a & 0xFF, n >> 8, n & 0xFF))


def exception_response(function: int, code: int) -> bytes:
    return bytes(((function | 0x80) & 0xFF, code))


def decode_response(pdu: bytes | bytearray | memoryview, function: int, count: int) -> list[int]:
    """Parse a client-side response to a request of `function` for `count` items.

    Reads return a list of 0/1 ints (FC 1, 2) or register ints (FC 3, 4); writes return []. An exception
    response raises ModbusDeviceError; a malformed or mismatched one raises ProtocolError.
    """
    if len(pdu) < 2:
        raise ProtocolError("pdu", "response too short (%d bytes)" % len(pdu))
    if pdu[0] == (function | 0x80):
        raise ModbusDeviceError(function, pdu[1])
    if pdu[0] != function:
        raise ProtocolError("pdu", "response for function %d, expected %d" % (pdu[0], function))
    if function <= 4:
        nbytes = pdu[1]
        want = (count + 7) // 8 if function <= 2 else 2 * count
        if nbytes != want or len(pdu) != 2 + nbytes:
            raise ProtocolError("pdu", "response carries %d data bytes, expected %d" % (len(pdu) - 2, want))
        if function <= 2:
            return unpack_bits(pdu[2:], count)
        return [_u16(pdu, 2 + 2 * i) for i in range(count)]
    if len(pdu) != 5:
        raise ProtocolError("pdu", "write response must be 5 bytes, got %d" % len(pdu))
    return []
