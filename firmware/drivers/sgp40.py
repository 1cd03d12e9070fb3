"""Sensirion SGP40 VOC sensor on I2C (address 0x59): raw signal with humidity and temperature compensation,
turned into a VOC index by a simplified mapping (not Sensirion's algorithm).

At start the driver runs sgp40_execute_self_test (0x280E, 320 ms: `options.selftest_ms`; 0xD400 = passed,
anything else raises). Each read() sends sgp40_measure_raw_signal: 0x260F, then the relative humidity and
the temperature as 16-bit words, each followed by its CRC-8 (poly 0x31, init 0xFF), waits 30 ms
(`options.measure_ms`) and reads one word + CRC: SRAW_VOC ticks. Compensation comes from the config, not
from another sensor: `options.humidity` (%RH, default 50) and `options.temperature` (degC, default 25),
as ticks RH * 65535 / 100 and (T + 45) * 65535 / 175; the defaults give the datasheet's 80 00 A2 66 66 93.

VOC index, simplified (say so wherever it is shown): Sensirion's gas index algorithm (adaptive mean and
variance, sigmoid scaling; some 600 lines) does not fit this firmware. Here a baseline follows the raw
signal with a time constant of `options.tau_h` hours (default 12; the first sample sets it), and
index = 100 + (baseline - raw) * `options.gain` (default 0.1 per tick), clamped to 1..500. As in
Sensirion's index, 100 is the recent average and more VOC (fewer ticks) gives more; the numbers are not
comparable with a Sensirion VOC index. Quality: `warmup` for the first 45 s (Sensirion's blackout),
`range` for a raw 0 or 65535 (a saturated or broken hot plate).
"""

from firmware.drivers.base import Driver, FrameError, crc8, flag
from firmware.hw import buses
from protocols._compat import const

ADDR = const(0x59)
_MEASURE_RAW = const(0x260F)
_SELF_TEST = const(0x280E)
_SELF_TEST_OK = const(0xD400)
_BLACKOUT_MS = const(45000)


def ticks(humidity, temperature):
    """The compensation words: (RH ticks, T ticks), each clamped to 16 bits."""
    rh = int(humidity * 65535 / 100 + 0.5)
    t = int((temperature + 45) * 65535 / 175 + 0.5)
    return max(0, min(65535, rh)), max(0, min(65535, t))


class Sgp40(Driver):
    name = "sgp40"
    stuck_default = 30

    def __init__(self, i2c, clock, opts):
        super().__init__(self.name, opts)
        self.i2c = i2c
        self.clock = clock
        self.measure_ms = opts.get("measure_ms", 30)
        self.gain = opts.get("gain", 0.1)
        self.tau_ms = opts.get("tau_h", 12) * 3600000
        rh, t = ticks(opts.get("humidity", 50), opts.get("temperature", 25))
        self.cmd = bytearray((_MEASURE_RAW >> 8, _MEASURE_RAW & 0xFF, rh >> 8, rh & 0xFF, 0, t >> 8, t & 0xFF, 0))
        self.cmd[4] = crc8(memoryview(self.cmd)[2:4])
        self.cmd[7] = crc8(memoryview(self.cmd)[5:7])
        self.buf = bytearray(3)
        self.base = None
        self.t_base = 0
        self.i2c.writeto(ADDR, bytes((_SELF_TEST >> 8, _SELF_TEST & 0xFF)))
        buses.sleep_ms(opts.get("selftest_ms", 320))
        got = self.word()
        if got != _SELF_TEST_OK:
            raise OSError("sgp40: self-test failed (0x%04X)" % got)
        self.t0 = clock()

    def word(self):
        self.i2c.readfrom_into(ADDR, self.buf)
        if crc8(memoryview(self.buf)[:2]) != self.buf[2]:
            raise FrameError("sgp40: bad CRC")
        return (self.buf[0] << 8) | self.buf[1]

    def index(self, raw, now):
        """The simplified VOC index (module docstring) of a raw signal; moves the baseline."""
        if self.base is None:
            self.base = raw
        else:
            self.base += (raw - self.base) * min(1, buses.ticks_diff(now, self.t_base) / self.tau_ms)
        self.t_base = now
        return max(1, min(500, round(100 + (self.base - raw) * self.gain)))

    def sample(self):
        self.i2c.writeto(ADDR, self.cmd)
        buses.sleep_ms(self.measure_ms)
        raw = self.word()
        now = self.clock()
        q = "fault" if self.stuck(self.buf) else "ok"
        if raw in (0, 65535):
            return [("voc_index", 1 if raw else 500, "range")]
        voc = self.index(raw, now)
        if buses.ticks_diff(now, self.t0) < _BLACKOUT_MS:
            q = "warmup"
        return [("voc_index", voc, flag(voc, 1, 500, q))]


def make(name, spec, hw):
    return Sgp40(buses.i2c(spec, hw), hw.uptime_ms, spec["options"])
