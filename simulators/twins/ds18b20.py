"""Twin of two Maxim DS18B20 thermometers on one 1-Wire bus: heat-meter supply (~70 degC) and return (~45).

Emulated at the bus (firmware/hw/buses.py SimOneWire): reset and presence pulse, ROM commands SKIP ROM
(0xCC) and MATCH ROM (0x55 + 8 bytes), function commands CONVERT T (0x44, done 750 ms later, 12-bit) and
READ SCRATCHPAD (0xBE: 9 bytes, the last the Maxim CRC-8 of the first 8). Bytes read with nobody talking
are 0xFF (the pulled-up bus); two devices answering at once give the AND of their bits. The scratchpad
starts at the datasheet's power-on state: temperature 0x0550 (85 degC), TH 0x4B, TL 0x46, config 0x7F.
`roms()` lists the ROM codes (family 0x28, 48-bit serial, CRC) for SimOneWire.scan; ROM SEARCH itself is
not emulated. Faults: `bad_checksum` (scratchpad CRC inverted), `silent` (no presence pulse: nobody on
the bus), `stuck` (the same temperatures), `out_of_range` (register 0x0800: 128 degC, beyond the
device's 125), `warming_up` (a conversion leaves the power-on 85 degC: the device reset, as in a brownout).
"""

from simulators.twins.base import Base


def maxim_crc(data):
    """Maxim CRC-8 (reflected poly 0x8C, init 0), written apart from the driver's on purpose."""
    crc = 0
    for byte in data:
        for bit in range(8):
            if (crc ^ (byte >> bit)) & 1:
                crc = (crc >> 1) ^ 0x8C
            else:
                crc >>= 1
    return crc


def rom(serial):
    body = bytes((0x28,)) + serial
    return body + bytes((maxim_crc(body),))


ROMS = (rom(b"\x01\x00\x00\x0a\x51\xc3"), rom(b"\x02\x00\x00\x0a\x51\xc3"))
POWER_ON = 0x0550


class Twin(Base):
    def __init__(self, faults, clock):
        super().__init__(faults, clock)
        self.regs = [POWER_ON, POWER_ON]
        self.done_ms = None
        self.state = None
        self.rom_in = b""
        self.selected = ()
        self.answer = b""

    def roms(self):
        return [bytearray(r) for r in ROMS]

    def _finish(self):
        if self.done_ms is not None and self.clock() - self.done_ms >= 0:
            self.done_ms = None
            temps = (self.wave(70, 5), self.wave(45, 4))
            for i in range(2):
                reg = int(temps[i] * 16) & 0xFFFF
                if self.hit("out_of_range"):
                    reg = 0x0800
                if self.hit("warming_up"):
                    reg = POWER_ON
                self.regs[i] = reg

    def scratchpad(self, i):
        reg = self.regs[i]
        pad = bytes((reg & 0xFF, reg >> 8, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10))
        crc = maxim_crc(pad) ^ (0xFF if self.hit("bad_checksum") else 0)
        return pad + bytes((crc,))

    def ow_reset(self):
        self._finish()
        self.state = "rom"
        self.answer = b""
        return not self.hit("silent")

    def ow_write(self, data):
        for b in data:
            if self.state == "rom":
                if b == 0xCC:
                    self.selected = (0, 1)
                    self.state = "func"
                elif b == 0x55:
                    self.rom_in = b""
                    self.state = "match"
                else:
                    self.state = None
            elif self.state == "match":
                self.rom_in += bytes((b,))
                if len(self.rom_in) == 8:
                    self.selected = tuple(i for i in (0, 1) if ROMS[i] == self.rom_in)
                    self.state = "func"
            elif self.state == "func":
                self.state = None
                if b == 0x44 and self.selected:
                    self.done_ms = self.clock() + 750
                elif b == 0xBE and self.selected:
                    pads = [self.scratchpad(i) for i in self.selected]
                    self.answer = bytes(pads[0][k] & pads[-1][k] for k in range(9))

    def ow_read(self, n):
        self._finish()
        out = self.answer[:n]
        self.answer = self.answer[n:]
        return out + b"\xff" * (n - len(out))
