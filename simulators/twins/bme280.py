"""Twin of a Bosch BME280 at I2C address 0x76: a register file with calibration, chip id and live data.

Writes set the register pointer (and registers, with auto-increment); reads auto-increment from it. Until
ctrl_meas selects a mode the data registers hold their reset values (0x80000 temperature and pressure,
0x8000 humidity). In normal mode every read of 0xF7 gives fresh raw values, found by inverting the
datasheet's floating-point compensation (section 8.1) for the wanted temperature, pressure and humidity:
an implementation independent of the driver's integer one. Calibration: the BMP280 datasheet's worked
example for T and P (section 3.12), typical humidity trimming. Faults: `silent` (NACK), `stuck` (same values),
`out_of_range` (95 degC, above the 85 degC limit), `warming_up` (data registers stay at their reset values).
A BME280 has no checksum on its bus: `bad_checksum` is refused.
"""

from simulators.twins.base import Base

T = (27504, 26435, -1000)
P = (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
H = (75, 362, 0, 313, 50, 30)


def _le(regs, at, values, signed):
    for i, v in enumerate(values):
        v &= 0xFFFF
        regs[at + 2 * i] = v & 0xFF
        regs[at + 2 * i + 1] = v >> 8


def temp_f(adc):
    var1 = (adc / 16384.0 - T[0] / 1024.0) * T[1]
    var2 = (adc / 131072.0 - T[0] / 8192.0) ** 2 * T[2]
    return var1 + var2


def press_f(adc, fine):
    var1 = fine / 2.0 - 64000.0
    var2 = var1 * var1 * P[5] / 32768.0 + var1 * P[4] * 2.0
    var2 = var2 / 4.0 + P[3] * 65536.0
    var1 = (P[2] * var1 * var1 / 524288.0 + P[1] * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * P[0]
    p = (1048576.0 - adc - var2 / 4096.0) * 6250.0 / var1
    return p + (P[8] * p * p / 2147483648.0 + p * P[7] / 32768.0 + P[6]) / 16.0


def hum_f(adc, fine):
    v = fine - 76800.0
    v = (adc - (H[3] * 64.0 + H[4] / 16384.0 * v)) * (
        H[1] / 65536.0 * (1.0 + H[5] / 67108864.0 * v * (1.0 + H[2] / 67108864.0 * v)))
    return v * (1.0 - H[0] * v / 524288.0)


def invert(f, want, lo, hi, rising=True):
    """The raw value in lo..hi for which f(raw) is closest to want (f monotonic)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (f(mid) < want) == rising:
            lo = mid
        else:
            hi = mid
    return lo


class Twin(Base):
    cannot = ("bad_checksum",)

    def __init__(self, faults, clock, addr=0x76):
        super().__init__(faults, clock)
        self.addr = addr
        self.regs = bytearray(256)
        self.regs[0xD0] = 0x60
        _le(self.regs, 0x88, T + P, True)
        self.regs[0xA1] = H[0]
        _le(self.regs, 0xE1, (H[1],), True)
        self.regs[0xE3] = H[2]
        self.regs[0xE4] = H[3] >> 4
        self.regs[0xE5] = (H[3] & 0x0F) | ((H[4] & 0x0F) << 4)
        self.regs[0xE6] = H[4] >> 4
        self.regs[0xE7] = H[5] & 0xFF
        self.regs[0xF7:0xFF] = b"\x80\x00\x00\x80\x00\x00\x80\x00"
        self.ptr = 0

    def measure(self, temp, hpa, rh):
        adc_t = invert(lambda a: temp_f(a) / 5120.0, temp, 0, 1 << 20)
        fine = temp_f(adc_t)
        adc_p = invert(lambda a: press_f(a, fine), hpa * 100, 0, 1 << 20, rising=False)
        adc_h = invert(lambda a: hum_f(a, fine), rh, 0, 1 << 16)
        r = self.regs
        r[0xF7], r[0xF8], r[0xF9] = adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4
        r[0xFA], r[0xFB], r[0xFC] = adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4
        r[0xFD], r[0xFE] = adc_h >> 8, adc_h & 0xFF

    def i2c_write(self, addr, data):
        if addr != self.addr or self.hit("silent"):
            raise OSError(19)
        self.ptr = data[0]
        for i in range(1, len(data)):
            self.regs[(self.ptr + i - 1) & 0xFF] = data[i]

    def i2c_read(self, addr, buf):
        if addr != self.addr or self.hit("silent"):
            raise OSError(19)
        if self.ptr == 0xF7 and self.regs[0xF4] & 3 == 3 and not self.hit("warming_up"):
            temp = 95.0 if self.hit("out_of_range") else self.wave(21, 4)
            if not (self.faults.get("stuck") and self.regs[0xFA] != 0x80):
                self.measure(temp, 1000 + 10 * (temp - 21) / 4, 50 + 2 * (temp - 21))
        for i in range(len(buf)):
            buf[i] = self.regs[(self.ptr + i) & 0xFF]
