"""Twin of a Plantower PMS5003 at its UART: 32-byte frames, active and passive mode, command acks.

Active mode (the power-on default) streams a frame every second of the clock; the twin keeps at most 64
bytes, as a small UART FIFO would. Passive mode answers each read command (42 4D E2 00 00 01 71) with one
frame. Faults: `bad_checksum` (last byte off by one), `silent` (no bytes at all), `stuck` (the same frame),
`out_of_range` (PM2.5 of 1500 ug/m3, above the sensor's 1000), `warming_up` (zero concentrations and counts,
as while the fan spins up).
"""

from simulators.twins.base import Base


class Twin(Base):
    spike_size = 40  # PM2.5 14 + 8 * 40: beyond the detectors' 300 ug/m3 step

    def __init__(self, faults, clock):
        super().__init__(faults, clock)
        self.active = True
        self.out = bytearray()
        self.next_ms = clock() + 1000
        self.commands = []
        self.last = None

    def frame(self):
        pm25 = int(self.wave(14, 8))
        if self.hit("out_of_range"):
            pm25 = 1500
        words = [min(w, 65535) for w in (pm25 * 6 // 10, pm25, pm25 * 17 // 10, pm25 * 6 // 10, pm25, pm25 * 17 // 10,
                 pm25 * 180, pm25 * 55, pm25 * 12, pm25 * 2, pm25, pm25 // 3, 0x9700)]
        if self.hit("warming_up"):
            words = [0] * 12 + [0x9700]
        self.last = words
        out = bytearray(b"\x42\x4d\x00\x1c")
        for w in words:
            out.append(w >> 8)
            out.append(w & 0xFF)
        s = sum(out)
        if self.hit("bad_checksum"):
            s += 1
        out.append((s >> 8) & 0xFF)
        out.append(s & 0xFF)
        return out

    def _emit(self, data):
        if not self.hit("silent"):
            self.out.extend(data)
            if len(self.out) > 64:
                self.out = self.out[-64:]

    def _tick(self):
        now = self.clock()
        while self.active and now - self.next_ms >= 0:
            self.next_ms += 1000
            self._emit(self.frame())

    def uart_rx(self, data):
        if len(data) != 7 or data[0] != 0x42 or data[1] != 0x4D or sum(data[:5]) != (data[5] << 8) | data[6]:
            return  # the sensor ignores malformed commands
        cmd, value = data[2], data[4]
        self.commands.append((cmd, value))
        if cmd == 0xE1:
            self.active = value == 1
            s = 0x42 + 0x4D + 4 + 0xE1 + value
            self._emit(bytes((0x42, 0x4D, 0, 4, 0xE1, value, s >> 8, s & 0xFF)))
        elif cmd == 0xE2 and not self.active:
            self._emit(self.frame())

    def uart_pending(self):
        self._tick()
        return len(self.out)

    def uart_tx(self, n):
        self._tick()
        n = len(self.out) if n < 0 else n
        data, self.out = bytes(self.out[:n]), self.out[n:]
        return data
