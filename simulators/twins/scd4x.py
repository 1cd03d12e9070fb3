"""Twin of a Sensirion SCD4x at I2C address 0x62: commands, CRC-8 per word, a measurement every 5 s.

Understands stop/start_periodic_measurement, get_data_ready_status and read_measurement; a read without a
preceding command, or any transfer to another address, is NACKed (OSError). Data-ready goes up 5 s after
the start and after each measurement, down once it is read; the measurement stays readable until the next.
Faults: `bad_checksum` (CRC of the CO2 word inverted), `silent` (NACK), `stuck` (same values),
`out_of_range` (CO2 45000 ppm, above the 40000 output range), `warming_up` (CO2 0 ppm: no valid measurement
yet; a twin convention, see docs/hardware.md).
"""

from simulators.twins.base import Base, sensirion_crc

ADDR = 0x62


class Twin(Base):
    def __init__(self, faults, clock):
        super().__init__(faults, clock)
        self.periodic = False
        self.next_ms = 0
        self.ready = False
        self.answer = None
        self.meas = None

    def _update(self):
        if self.periodic and self.clock() - self.next_ms >= 0:
            self.ready = True
            self.next_ms = self.clock() + 5000
            co2 = int(self.wave(620, 180))
            t = self.wave(22, 3)
            rh = self.wave(45, 10)
            if self.hit("out_of_range"):
                co2 = 45000
            if self.hit("warming_up"):
                co2 = 0
            self.meas = [co2, int((t + 45) * 65535 / 175 + 0.5), int(rh * 65535 / 100 + 0.5)]

    def i2c_write(self, addr, data):
        if addr != ADDR or self.hit("silent"):
            raise OSError(19)
        cmd = (data[0] << 8) | data[1]
        self._update()
        self.answer = None
        if cmd == 0x21B1:
            self.periodic = True
            self.next_ms = self.clock() + 5000
        elif cmd == 0x3F86:
            self.periodic = False
        elif cmd == 0xE4B8:
            self.answer = [0x8006 if self.ready else 0x8000]
        elif cmd == 0xEC05 and self.meas is not None:
            self.ready = False  # the last measurement stays readable until the next one
            self.answer = self.meas
        else:
            raise OSError(19)

    def i2c_read(self, addr, buf):
        if addr != ADDR or self.answer is None or self.hit("silent"):
            raise OSError(19)
        bad = len(self.answer) == 3 and self.hit("bad_checksum")
        for i in range(len(buf) // 3):
            w = self.answer[i]
            buf[3 * i] = w >> 8
            buf[3 * i + 1] = w & 0xFF
            buf[3 * i + 2] = sensirion_crc(w) ^ (0xFF if bad and i == 0 else 0)
        self.answer = None
