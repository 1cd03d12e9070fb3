"""Plantower PMS5003 particulate sensor on a UART (9600 8N1), in passive (default) or active mode.

Frames (datasheet, appendix I): 0x42 0x4D, frame length 28, 13 big-endian words, then a 16-bit checksum
that is the sum of every byte before it. Words 4..6 are PM1.0 / PM2.5 / PM10 in ug/m3 under atmospheric
conditions (published as pm1, pm25, pm10); words 7..12 count particles per 0.1 L. Commands are
0x42 0x4D CMD DATAH DATAL LRCH LRCL with the same sum (appendix B): passive mode E1 00 00, active E1 00 01,
read in passive mode E2 00 00. In passive mode each read() sends the read command and takes the answer; in
active mode it takes the newest complete frame the sensor streamed. Quality: `warmup` during the first 30 s
(datasheet: stable data 30 s after wake-up) and while every particle count is 0 (fan not up to speed),
`range` above the 1000 ug/m3 maximum.
"""

from firmware.drivers.base import Driver, FrameError, flag
from firmware.hw import buses
from protocols._compat import const

_FRAME = const(32)
_WARMUP_MS = const(30000)
_MAX = const(1000)


def command(cmd, data):
    out = bytearray(b"\x42\x4d\x00\x00\x00\x00\x00")
    out[2] = cmd
    out[3] = data >> 8
    out[4] = data & 0xFF
    s = sum(out[:5])
    out[5] = s >> 8
    out[6] = s & 0xFF
    return out


def decode(frame):
    """(pm1, pm25, pm10, counts all zero) of one 32-byte frame; FrameError if header or checksum is wrong."""
    if frame[0] != 0x42 or frame[1] != 0x4D or frame[2] != 0 or frame[3] != 28:
        raise FrameError("pms5003: bad frame header")
    if sum(frame[:30]) & 0xFFFF != (frame[30] << 8) | frame[31]:
        raise FrameError("pms5003: bad checksum")
    w = [(frame[4 + 2 * i] << 8) | frame[5 + 2 * i] for i in range(12)]
    return w[3], w[4], w[5], not any(w[6:12])


class Pms5003(Driver):
    name = "pms5003"
    stuck_default = 30

    def __init__(self, uart, clock, opts):
        super().__init__(self.name, opts)
        self.uart = uart
        self.clock = clock
        self.t0 = clock()
        self.active = opts.get("mode", "passive") == "active"
        self.buf = bytearray(_FRAME * 2)
        uart.write(command(0xE1, 1 if self.active else 0))
        buses.wait_any(uart, 8, 50)
        self.flush()

    def flush(self):
        while self.uart.any():
            self.uart.read(min(self.uart.any(), 64))

    def frame(self):
        if not self.active:
            self.flush()
            self.uart.write(command(0xE2, 0))
            if not buses.wait_any(self.uart, _FRAME, 100):
                raise OSError("pms5003: no answer")
            return self.uart.read(_FRAME)
        data = b""
        while self.uart.any():  # keep the newest 64 bytes: they hold one complete frame
            data = (data + self.uart.read(min(self.uart.any(), 64)))[-64:]
        start = data.rfind(b"\x42\x4d", 0, len(data) - _FRAME + 2) if len(data) >= _FRAME else -1
        if start < 0:
            raise OSError("pms5003: no complete frame received")
        return data[start:start + _FRAME]

    def sample(self):
        frame = self.frame()
        pm1, pm25, pm10, zero = decode(frame)
        q = "ok"
        if zero or buses.ticks_diff(self.clock(), self.t0) < _WARMUP_MS:
            q = "warmup"
        if self.stuck(frame[4:30]):
            q = "fault"
        return [("pm1", pm1, flag(pm1, 0, _MAX, q)), ("pm25", pm25, flag(pm25, 0, _MAX, q)),
                ("pm10", pm10, flag(pm10, 0, _MAX, q))]


def make(name, spec, hw):
    return Pms5003(buses.uart(spec, hw, 9600), hw.uptime_ms, spec["options"])
