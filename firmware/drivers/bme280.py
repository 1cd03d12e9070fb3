"""Bosch BME280 temperature, humidity and pressure sensor on I2C (address 0x76, or 0x77 with SDO high).

Checks the chip id (0xD0 = 0x60), reads the trimming parameters (0x88..0xA1, 0xE1..0xE7), sets humidity,
temperature and pressure oversampling x1 in normal mode with 1000 ms standby, then on each read() takes the
8 data bytes from 0xF7 in one burst and applies the datasheet's integer compensation (section 4.2.3 / 8.2:
BME280_compensate_T_int32, BME280_compensate_P_int64, bme280_compensate_H_int32). Quality: `warmup` while
the temperature register still holds its reset value 0x80000 (no measurement yet), `range` outside the
operating range (-40..85 degC, 300..1100 hPa).
"""

from firmware.drivers.base import Driver, flag
from firmware.hw import buses
from protocols._compat import const

_CHIP_ID = const(0xD0)
_CALIB00 = const(0x88)
_CALIB26 = const(0xE1)
_CTRL_HUM = const(0xF2)
_CTRL_MEAS = const(0xF4)
_CONFIG = const(0xF5)
_DATA = const(0xF7)


def _s16(b, i):
    v = b[i] | (b[i + 1] << 8)
    return v - 65536 if v & 0x8000 else v


def _u16(b, i):
    return b[i] | (b[i + 1] << 8)


def calibration(c1, c2):
    """The trimming parameters from the 26 bytes at 0x88 and the 7 at 0xE1 (datasheet table 16)."""
    t = (_u16(c1, 0), _s16(c1, 2), _s16(c1, 4))
    p = (_u16(c1, 6),) + tuple(_s16(c1, i) for i in range(8, 24, 2))  # noqa: RUF005 - plain tuples on MicroPython
    h4 = (c2[3] << 4) | (c2[4] & 0x0F)
    h5 = (c2[5] << 4) | (c2[4] >> 4)
    h6 = c2[6] - 256 if c2[6] & 0x80 else c2[6]
    h = (c1[25], _s16(c2, 0), c2[2], h4 - 4096 if h4 & 0x800 else h4, h5 - 4096 if h5 & 0x800 else h5, h6)
    return t, p, h


def compensate_t(adc, t):
    """(temperature in 0.01 degC, t_fine)."""
    t1, t2, t3 = t
    var1 = (((adc >> 3) - (t1 << 1)) * t2) >> 11
    var2 = (((((adc >> 4) - t1) * ((adc >> 4) - t1)) >> 12) * t3) >> 14
    fine = var1 + var2
    return (fine * 5 + 128) >> 8, fine


def compensate_p(adc, fine, p):
    """Pressure in Pa as Q24.8 (divide by 256), or 0 if the calibration would divide by zero."""
    p1, p2, p3, p4, p5, p6, p7, p8, p9 = p
    var1 = fine - 128000
    var2 = var1 * var1 * p6
    var2 += (var1 * p5) << 17
    var2 += p4 << 35
    var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
    var1 = (((1 << 47) + var1) * p1) >> 33
    if var1 == 0:
        return 0
    n = (((1048576 - adc) << 31) - var2) * 3125
    pa = n // var1 if (n >= 0) == (var1 > 0) else -(abs(n) // abs(var1))  # C division truncates
    var1 = (p9 * (pa >> 13) * (pa >> 13)) >> 25
    var2 = (p8 * pa) >> 19
    return ((pa + var1 + var2) >> 8) + (p7 << 4)


def compensate_h(adc, fine, h):
    """Relative humidity in % as Q22.10 (divide by 1024)."""
    h1, h2, h3, h4, h5, h6 = h
    v = fine - 76800
    v = ((((adc << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * (
        ((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14)
    v -= ((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4
    v = min(max(v, 0), 419430400)
    return v >> 12


class Bme280(Driver):
    name = "bme280"
    stuck_default = 30

    def __init__(self, i2c, opts):
        super().__init__(self.name, opts)
        self.i2c = i2c
        self.addr = opts.get("address", 0x76)
        self.buf = bytearray(8)
        one = bytearray(1)
        i2c.readfrom_mem_into(self.addr, _CHIP_ID, one)
        if one[0] != 0x60:
            raise OSError("bme280: chip id 0x%02x at 0x%02x, expected 0x60" % (one[0], self.addr))
        c1 = bytearray(26)
        c2 = bytearray(7)
        i2c.readfrom_mem_into(self.addr, _CALIB00, c1)
        i2c.readfrom_mem_into(self.addr, _CALIB26, c2)
        self.t, self.p, self.h = calibration(c1, c2)
        i2c.writeto_mem(self.addr, _CTRL_HUM, b"\x01")  # osrs_h x1; takes effect with ctrl_meas
        i2c.writeto_mem(self.addr, _CONFIG, b"\xa0")  # t_sb 1000 ms, filter off
        i2c.writeto_mem(self.addr, _CTRL_MEAS, b"\x27")  # osrs_t x1, osrs_p x1, normal mode

    def sample(self):
        b = self.buf
        self.i2c.readfrom_mem_into(self.addr, _DATA, b)
        adc_p = (b[0] << 12) | (b[1] << 4) | (b[2] >> 4)
        adc_t = (b[3] << 12) | (b[4] << 4) | (b[5] >> 4)
        adc_h = (b[6] << 8) | b[7]
        q = "fault" if self.stuck(b) else "ok"
        if adc_t == 0x80000:
            q = "warmup"
        t, fine = compensate_t(adc_t, self.t)
        temp = t / 100
        hpa = round(compensate_p(adc_p, fine, self.p) / 25600, 2)
        hum = round(compensate_h(adc_h, fine, self.h) / 1024, 1)
        return [("temperature", temp, flag(temp, -40, 85, q)), ("humidity", hum, q),
                ("pressure", hpa, flag(hpa, 300, 1100, q))]


def make(name, spec, hw):
    return Bme280(buses.i2c(spec, hw), spec["options"])
