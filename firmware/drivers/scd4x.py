"""Sensirion SCD4x (SCD40/SCD41) CO2, temperature and humidity sensor on I2C (address 0x62).

Commands are 16-bit words, big-endian (datasheet section 3); every 16-bit word the sensor sends is followed by
its CRC-8 (poly 0x31, init 0xFF; datasheet example 0xBEEF -> 0x92). The driver stops any running measurement,
starts periodic measurement (a new value every 5 s), then on each read() asks get_data_ready_status and, when
ready, read_measurement: CO2 ppm, T = -45 + 175 * word / 65535 degC, RH = 100 * word / 65535 %. No new value
yet: the previous one is returned again (no fault), the first time nothing. Quality: `warmup` for a CO2 of 0
(no valid measurement yet) in the first 60 s, `range` for 0 later or above the 40000 ppm output range.
"""

from firmware.drivers.base import Driver, FrameError, crc8, flag
from firmware.hw import buses
from protocols._compat import const

ADDR = const(0x62)
_START_PERIODIC = const(0x21B1)
_READ_MEASUREMENT = const(0xEC05)
_STOP_PERIODIC = const(0x3F86)
_DATA_READY = const(0xE4B8)
_WARMUP_MS = const(60000)


def words(buf, n):
    """The n words of a Sensirion answer; FrameError if a CRC is wrong."""
    out = []
    for i in range(n):
        if crc8(buf[3 * i:3 * i + 2]) != buf[3 * i + 2]:
            raise FrameError("scd4x: bad CRC on word %d" % i)
        out.append((buf[3 * i] << 8) | buf[3 * i + 1])
    return out


class Scd4x(Driver):
    name = "scd4x"
    stuck_default = 30

    def __init__(self, i2c, clock, opts):
        super().__init__(self.name, opts)
        self.i2c = i2c
        self.clock = clock
        self.cmd = bytearray(2)
        self.buf = bytearray(9)
        self.last = []
        self.pending = False
        self.send(_STOP_PERIODIC)
        buses.sleep_ms(opts.get("stop_ms", 500))  # datasheet: stop_periodic_measurement takes 500 ms
        self.send(_START_PERIODIC)
        self.t0 = clock()

    def send(self, command):
        self.cmd[0] = command >> 8
        self.cmd[1] = command & 0xFF
        self.i2c.writeto(ADDR, self.cmd)

    def get(self, command, n):
        self.send(command)
        buses.sleep_ms(1)  # datasheet: 1 ms execution time for both reads
        mv = memoryview(self.buf)[:3 * n]
        self.i2c.readfrom_into(ADDR, mv)
        return words(mv, n)

    def sample(self):
        if not self.pending and not self.get(_DATA_READY, 1)[0] & 0x07FF:
            return self.last
        self.pending = True  # data-ready drops once read: a retry after a bad CRC reads the values again
        co2, t, rh = self.get(_READ_MEASUREMENT, 3)
        self.pending = False
        temp = round(-45 + 175 * t / 65535, 2)
        hum = round(100 * rh / 65535, 1)
        q = "fault" if self.stuck(self.buf) else "ok"
        cq = q
        if co2 == 0:
            cq = "warmup" if buses.ticks_diff(self.clock(), self.t0) < _WARMUP_MS else "range"
        self.last = [("co2", co2, flag(co2, 0, 40000, cq)), ("temperature", temp, flag(temp, -10, 60, q)),
                     ("humidity", hum, flag(hum, 0, 100, q))]
        return self.last


def make(name, spec, hw):
    return Scd4x(buses.i2c(spec, hw), hw.uptime_ms, spec["options"])
