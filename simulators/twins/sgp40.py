"""Twin of a Sensirion SGP40 VOC sensor at I2C address 0x59: commands with CRC-checked parameters.

Understands sgp40_measure_raw_signal (0x260F + humidity word + CRC + temperature word + CRC: a wrong
parameter CRC is NACKed, as the sensor ignores such a command), sgp40_execute_self_test (0x280E: 0xD400,
all tests passed) and sgp4x_turn_heater_off (0x3615). Each answer word carries its CRC-8 (poly 0x31,
init 0xFF). The raw signal (SRAW_VOC ticks) wanders around 30000 with, every 40 steps, a dip of a few
thousand ticks (a VOC event: more VOC lowers the MOX resistance and the ticks). The compensation words
last received are kept in `rh_ticks` and `t_ticks` for tests. Measurement timing (30 ms) is not modelled.
Faults: `bad_checksum` (answer CRC inverted), `silent` (NACK), `stuck` (same raw signal),
`out_of_range` (raw 0: a saturated or broken hot plate). The SGP40 has no not-ready answer: `warming_up`
is refused (the driver's warm-up is by time).
"""

from simulators.twins.base import Base, sensirion_crc

ADDR = 0x59


class Twin(Base):
    cannot = ("warming_up",)

    def __init__(self, faults, clock):
        super().__init__(faults, clock)
        self.answer = None
        self.rh_ticks = None
        self.t_ticks = None

    def raw(self):
        dip = self.wave(0, 1, 40)
        value = 30000 + (int(4000 * dip) if dip < -0.5 else int(300 * dip))
        return 0 if self.hit("out_of_range") else value

    def i2c_write(self, addr, data):
        if addr != ADDR or self.hit("silent") or len(data) < 2:
            raise OSError(19)
        cmd = (data[0] << 8) | data[1]
        self.answer = None
        if cmd == 0x260F and len(data) == 8:
            rh = (data[2] << 8) | data[3]
            t = (data[5] << 8) | data[6]
            if sensirion_crc(rh) != data[4] or sensirion_crc(t) != data[7]:
                raise OSError(19)
            self.rh_ticks, self.t_ticks = rh, t
            self.answer = self.raw()
        elif cmd == 0x280E:
            self.answer = 0xD400
        elif cmd != 0x3615:
            raise OSError(19)

    def i2c_read(self, addr, buf):
        if addr != ADDR or self.answer is None or self.hit("silent"):
            raise OSError(19)
        w = self.answer
        buf[0] = w >> 8
        buf[1] = w & 0xFF
        buf[2] = sensirion_crc(w) ^ (0xFF if self.hit("bad_checksum") else 0)
        self.answer = None
