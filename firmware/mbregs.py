"""The board's Modbus server, pure part: its registers, and a request PDU in -> a response PDU out.

No I/O, no asyncio, no hardware: `handle(pdu, regs)` decodes a request with protocols.modbus and answers it
from `regs` (a Registers), so CPython tests (and a fuzzer) drive it exactly as the board does. The map is
protocols/boardmap.py. Answers:
- FC 04 input registers 0..boardmap.INPUT_REGISTERS-1 (float32 ABCD per quantity, NaN if not measured);
- FC 03 holding registers (two per actuator setpoint), FC 16 writes whole setpoints (an even address and
  count inside the map; a write that splits a float answers 02), FC 06 answers 02 (half a float32);
- FC 01 coils (one per actuator), FC 05/15 coil writes (relays only; another kind answers 02);
- FC 02 discrete inputs: the board has none (02).
Exception 01: unknown function, or a write (FC 05/06/15/16, and 22/23 should they come) when `writes` is
False (a TCP master not in modbus.writers: checked first, as the spec checks the function code before the
address, so such a write answers 01 whatever it targets); 02: an address outside the map; 03: a malformed
request, or a value that is not finite or that the actuator's limits refuse (`check` says why). A refused
write changes nothing: every value of a request is checked before the first is applied.

Also pure, for the TCP server: `ip4`/`peer_ip` turn a configured writer and a peer address into 4 bytes, and
`Slots` keeps the open connections with their last activity (who goes when the table is full, who idled too
long) on a clock the caller passes in.
"""

import struct

from protocols import boardmap, modbus
from protocols.errors import ProtocolError

_NAN = float("nan")
WRITES = (5, 6, 15, 16, 22, 23)  # the function codes that change something; 22/23 are not served (01 anyway)


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


def handle(pdu, regs, writes=True):
    """The response PDU to a request PDU (an exception response for anything refused); None for no answer.

    `writes` False (a TCP peer not in modbus.writers): every write function answers 01 and changes nothing.
    Function codes 128..255 are exception responses, never requests (application protocol 4.1): an exception
    to one cannot be told from an exception to function - 128 (`83 01` reads as "function 03 refused"), so such
    a frame gets no answer, over TCP as on RTU.
    """
    if not pdu or pdu[0] & 0x80:
        return None
    function = pdu[0]
    if not writes and function in WRITES:
        return modbus.exception_response(function, modbus.ILLEGAL_FUNCTION)
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


# ------------------------------------------------------------------------------------ TCP peers


def ip4(text):
    """bytes((192, 168, 1, 10)) for '192.168.1.10'; None if text is not a dotted quad."""
    parts = text.split(".") if isinstance(text, str) else ()
    if len(parts) != 4:
        return None
    out = bytearray(4)
    for i in range(4):
        if not parts[i].isdigit() or int(parts[i]) > 255:
            return None
        out[i] = int(parts[i])
    return bytes(out)


def peer_ip(addr):
    """The IPv4 address of a peer as 4 bytes, from what the socket layer gives: a (host, port) tuple on boards
    (lwIP), a raw sockaddr_in on the unix port (AF_INET = 2 as a host-order u16, or sin_len then 2 on
    BSD/macOS; port; address); None for anything else (IPv6, unknown), which is then no writer."""
    if isinstance(addr, (tuple, list)):
        return ip4(addr[0]) if addr else None
    if isinstance(addr, (bytes, bytearray)) and len(addr) >= 8 and (addr[1] == 2 or (addr[0] == 2 and not addr[1])):
        return bytes(addr[4:8])
    return None


def dotted(ip):
    """'192.168.1.10' for 4 bytes, '?' for None: for log lines only."""
    return "%d.%d.%d.%d" % (ip[0], ip[1], ip[2], ip[3]) if ip else "?"


class Slots:
    """The open TCP connections, at most n, each with its last activity.

    `diff(a, b)` is a - b on the caller's clock (time.ticks_diff on boards). Keys are whatever the caller
    closes (the board: its connection tasks); tags ride along for log lines (the peer's address). Fixed lists
    of n entries, allocated once.
    """

    def __init__(self, n, diff):
        self.keys = [None] * n
        self.tags = [None] * n
        self.seen = [0] * n
        self.diff = diff

    def pick(self):
        """The slot for a new connection: a free one, else the one idle longest (its key must be closed)."""
        best = 0
        for i in range(len(self.keys)):
            if self.keys[i] is None:
                return i
            if self.diff(self.seen[best], self.seen[i]) > 0:
                best = i
        return best

    def put(self, i, key, tag, now):
        self.keys[i] = key
        self.tags[i] = tag
        self.seen[i] = now

    def touch(self, key, now):
        """key was active at now (a request came)."""
        for i in range(len(self.keys)):
            if self.keys[i] is key:
                self.seen[i] = now
                return

    def free(self, i):
        self.keys[i] = None
        self.tags[i] = None

    def remove(self, key):
        """key closed on its own; nothing if it already left (pushed out or idled)."""
        for i in range(len(self.keys)):
            if self.keys[i] is key:
                self.free(i)
                return

    def idle(self, now, ms):
        """A slot whose key was inactive for ms or more, else -1."""
        for i in range(len(self.keys)):
            if self.keys[i] is not None and self.diff(now, self.seen[i]) >= ms:
                return i
        return -1

    def count(self):
        """How many connections are open."""
        n = 0
        for key in self.keys:
            if key is not None:
                n += 1
        return n
