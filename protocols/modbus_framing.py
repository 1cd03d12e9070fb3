"""Modbus framing, sans-I/O: RTU (unit + PDU + CRC-16) and TCP (MBAP header + PDU).

`RtuFramer` and `TcpFramer` take bytes as they arrive (`feed`) and hand out whole frames (`next_frame`,
None when more bytes are needed), so partial frames, several frames in one read and garbage before a frame
all work. RTU frames carry no length: the framer derives it from the function code and the direction
(requests for a server, responses for a client), checks the CRC, and on a bad CRC or an unknown function
drops one byte and searches again, which is how a listener resynchronises on a shared bus. The I/O layer
calls `gap()` when the line has been silent for 3.5 character times, which ends any partial frame (spec
2.5.1.1). On a server, silence is also what delimits a frame by the serial-line rules: when the bytes since
the last silence make one well-formed frame (unit 0..247, good CRC) that the length rules could not frame, a
function code this framer does not know, `gap()` returns it, so the server can answer exception 01 as the
application protocol requires (a bus scanner's 07, 08, 0x11, 43/14) instead of staying silent. The I/O layer
calls `split()` when it saw a silence of more than 1.5 but less than 3.5 character times: a frame with such a
gap inside is incomplete (spec 2.5.1.1), so what is buffered and every byte up to the next 3.5-character
silence are discarded. A TCP stream cannot resynchronise: a bad header raises ProtocolError and the connection
is closed. `silence_us` is that 3.5 (or 1.5) character times, the serial line's timing rule, for whoever keeps
the line's time.
"""

from protocols._compat import const
from protocols.errors import ProtocolError

MAX_RTU_FRAME = const(256)
MBAP_LEN = const(7)


def crc16(data: bytes | bytearray | memoryview) -> int:
    """Modbus CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xA001
            else:
                crc >>= 1
    return crc


GENERAL_ADDRESS = const(0xF8)  # the PZEM-004T's "general address" (any single meter on the line answers it)


def rtu_frame(unit: int, pdu: bytes | bytearray) -> bytes:
    """unit + pdu + CRC. Units 0..247 (0: broadcast), and 0xF8, which the serial-line spec reserves but some
    meters define as their general address (the PZEM-004T's manual: for a line with that one meter)."""
    if not (0 <= unit <= 247 or unit == GENERAL_ADDRESS):
        raise ProtocolError("unit", "must be 0..247 (or 248, a general address), got %r" % (unit,))
    body = bytes((unit,)) + bytes(pdu)
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def tcp_frame(transaction: int, unit: int, pdu: bytes | bytearray) -> bytes:
    if not 0 <= transaction <= 0xFFFF:
        raise ProtocolError("transaction", "must be 0..65535, got %r" % (transaction,))
    if not 0 <= unit <= 255:
        raise ProtocolError("unit", "must be 0..255, got %r" % (unit,))
    n = len(pdu) + 1
    return bytes((transaction >> 8, transaction & 0xFF, 0, 0, n >> 8, n & 0xFF, unit)) + bytes(pdu)


def silence_us(baudrate: int, parity: str = "N", stopbits: int = 1, bytesize: int = 8, tenths: int = 35) -> int:
    """t3.5 in whole microseconds, rounded up: the silence that ends an RTU frame and comes before the next
    one, 3.5 characters of 1 start + data + parity + stop bits; a fixed 1750 above 19200 baud (spec 2.5.1.1).
    With `tenths` 15, t1.5 (fixed 750 above 19200 baud): a longer silence inside a frame breaks it. The hub's
    bus arbiter, the board's RTU server and the simulated line all take it from here."""
    if baudrate > 19200:
        return 50 * tenths
    bits = 1 + bytesize + (parity != "N") + stopbits
    return -(-tenths * bits * 100000 // baudrate)


def _rtu_length(buf: bytearray, size: int, requests: bool) -> int:
    """Length of the RTU frame at the start of `buf`: >0 known, 0 need more bytes, -1 unknown function."""
    if size < 2:
        return 0
    function = buf[1]
    if function & 0x80:
        return -1 if requests else 5
    if function in (1, 2, 3, 4):
        if requests:
            return 8
        return 5 + buf[2] if size >= 3 else 0
    if function in (5, 6):
        return 8
    if function in (15, 16):
        if not requests:
            return 8
        return 9 + buf[6] if size >= 7 else 0
    return -1


class _Buffer:
    """Bytes received but not yet framed: one bytearray reused in place (MicroPython's bytearray has no
    `del b[:n]`, and a slice copy per frame would churn a board's heap)."""

    def __init__(self, capacity: int) -> None:
        self.buf = bytearray(capacity)
        self.size = 0

    def append(self, data: bytes | bytearray | memoryview, limit: int) -> int:
        """Append `data`; if more than `limit` bytes would be held, drop the oldest. Returns bytes dropped."""
        n = len(data)
        dropped = 0
        if self.size + n > limit:
            dropped = min(self.size + n - limit, self.size)
            self.consume(dropped)
            if n > limit:
                dropped += n - limit
                data = memoryview(data)[n - limit :]
                n = limit
        need = self.size + n
        if need > len(self.buf):
            grown = bytearray(min(max(need, 2 * len(self.buf)), limit))
            grown[: self.size] = memoryview(self.buf)[: self.size]
            self.buf = grown
        self.buf[self.size : need] = data
        self.size = need
        return dropped

    def consume(self, n: int) -> None:
        rest = self.size - n
        if rest > 0:
            view = memoryview(self.buf)
            view[0:rest] = view[n : self.size]
        self.size = max(0, rest)

    def take(self, start: int, end: int) -> bytes:
        return bytes(memoryview(self.buf)[start:end])


class RtuFramer:
    """Incremental RTU decoder. `requests=True` on a server (decodes requests), False on a client."""

    def __init__(self, requests: bool) -> None:
        self.requests = requests
        self._rx = _Buffer(MAX_RTU_FRAME)
        self.discarded = 0  # bytes dropped while resynchronising: a bus health figure
        # a server's copy of the bytes since the last silence (a frame by the serial-line rules); its length,
        # -1 once more than a frame came or a frame was framed from them
        self._since = bytearray(MAX_RTU_FRAME) if requests else bytearray(0)
        self._n = 0 if requests else -1
        self._cut = False  # a silence of 1.5 to 3.5 characters broke a frame: discard until the next gap()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._cut:
            self.discarded += len(data)
            return
        n = self._n
        if n >= 0:
            if n + len(data) > MAX_RTU_FRAME:
                self._n = -1
            else:
                self._since[n : n + len(data)] = data
                self._n = n + len(data)
        # a babbling line: keep at most four frames' worth, dropping the oldest bytes
        self.discarded += self._rx.append(data, 4 * MAX_RTU_FRAME)

    def split(self) -> None:
        """A silence of more than 1.5 and less than 3.5 character times: a frame buffered now is broken (spec
        2.5.1.1: "the frame is incomplete and shall be discarded"); it and the bytes that follow it up to the next
        silence of 3.5 characters (gap()) are discarded. Nothing buffered (a frame was just framed): no effect."""
        if self._rx.size:
            self.discarded += self._rx.size
            self._rx.size = 0
            self._cut = True
            self._n = -1

    def gap(self) -> tuple[int, bytes] | None:
        """3.5 character times of silence: whatever is buffered cannot be completed. On a server: (unit, pdu)
        if the bytes since the last silence are one well-formed frame that next_frame could not frame (its
        function code has no length rule here: the server answers exception 01), else None."""
        found = None
        self._cut = False
        n = self._n
        since = self._since
        # only a function this framer has no length rule for: not one it frames by length (a response to one
        # of those, heard on the bus or as an echo, is never a request), not a response's exception code
        if n >= 4 and since[0] <= 247 and not since[1] & 0x80 and _rtu_length(since, n, requests=True) < 0:
            crc = crc16(memoryview(since)[: n - 2])
            if since[n - 2] == (crc & 0xFF) and since[n - 1] == (crc >> 8):
                found = since[0], bytes(memoryview(since)[1 : n - 2])
                self.discarded -= n - self._rx.size  # the bytes dropped while searching were this frame
        if self.requests:
            self._n = 0
        if found is None:
            self.discarded += self._rx.size
        self._rx.size = 0
        return found

    def next_frame(self) -> tuple[int, bytes] | None:
        """(unit, pdu) of the next whole frame with a good CRC, or None until more bytes arrive."""
        rx = self._rx
        while rx.size >= 4:
            buf = rx.buf
            n = _rtu_length(buf, rx.size, self.requests)
            if n == 0:
                return None
            if n < 0 or n > MAX_RTU_FRAME or buf[0] > 247:
                rx.consume(1)
                self.discarded += 1
                continue
            if rx.size < n:
                return None
            crc = crc16(memoryview(buf)[: n - 2])
            if buf[n - 2] == (crc & 0xFF) and buf[n - 1] == (crc >> 8):
                unit = buf[0]
                pdu = rx.take(1, n - 2)
                rx.consume(n)
                if self.requests:
                    self._n = -1  # framed: what follows before the next silence is not one frame
                return unit, pdu
            rx.consume(1)
            self.discarded += 1
        return None


MAX_TCP_BUFFER = const(4096)


class TcpFramer:
    """Incremental Modbus TCP (MBAP) decoder for either side of a connection."""

    def __init__(self) -> None:
        self._rx = _Buffer(MBAP_LEN + 254)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer received bytes. Call next_frame until None after each feed: at most 4096 bytes are held."""
        if self._rx.size + len(data) > MAX_TCP_BUFFER:
            raise ProtocolError("mbap", "more than %d bytes buffered without a complete frame" % MAX_TCP_BUFFER)
        self._rx.append(data, MAX_TCP_BUFFER)

    def next_frame(self) -> tuple[int, int, bytes] | None:
        """(transaction, unit, pdu) of the next whole frame, None until more bytes arrive.

        Raises ProtocolError for a header no Modbus peer sends (protocol id not 0, length outside 2..254).
        """
        rx = self._rx
        buf = rx.buf
        if rx.size < MBAP_LEN:
            return None
        protocol = (buf[2] << 8) | buf[3]
        length = (buf[4] << 8) | buf[5]
        if protocol != 0:
            raise ProtocolError("mbap", "protocol id %d is not Modbus (0)" % protocol)
        if not 2 <= length <= 254:
            raise ProtocolError("mbap", "length %d outside 2..254" % length)
        if rx.size < 6 + length:
            return None
        transaction = (buf[0] << 8) | buf[1]
        unit = buf[6]
        pdu = rx.take(MBAP_LEN, 6 + length)
        rx.consume(6 + length)
        return transaction, unit, pdu
