"""Maxim DS18B20 thermometers on one 1-Wire bus: a heat meter's supply and return temperatures.

The driver speaks the DS18B20 protocol itself over the bus (firmware/hw/buses.py onewire: onewire.OneWire
on a board), byte by byte: reset and presence, MATCH ROM (0x55 + the 8-byte ROM code), READ SCRATCHPAD
(0xBE: 9 bytes, the ninth the Maxim CRC-8 of the first eight), and SKIP ROM (0xCC) + CONVERT T (0x44) to
start every device converting at once. Each read() reads the result of the conversion started by the
previous read() (or at start) and starts the next: at 12 bits a conversion takes up to 750 ms, so
`interval` must be 1 s or more; nothing blocks. The power-on resolution (12 bits, 0.0625 degC) is kept;
the scratchpad's config byte is honoured when decoding (undefined low bits cleared at 9..11 bits).

Sensors map to quantities by ROM code: `options.roms` {"heat_supply_temp": "28...", "heat_return_temp":
"28..."} (hex, family code first, as `binascii.hexlify(rom)` prints a scanned one). Without it the bus is
scanned at start and the devices, in ascending ROM order, take the sensor's quantities in their order.
Quality: `warmup` for the power-on value 85.0 degC (0x0550) unless the same device last read within 2 degC
of 85 (a real 85 degC supply); `range` outside the device's -55..125 degC. No presence pulse, a bus that
reads all 0xFF (device gone), all 0x00 (bus shorted) or a bad CRC is retried per device; a device that
still fails has its last value republished marked `fault` while the other carries on; when every device
fails, read() raises (a sensor fault). Libraries' -127 degC "disconnected" is such a fault here, never a
value. Parasite power is not supported (needs a strong pull-up during conversion): power VDD.
"""

from binascii import unhexlify

from firmware.drivers.base import Driver, FrameError, crc8_maxim, flag
from firmware.hw import buses
from protocols._compat import const

_SKIP_ROM = const(0xCC)
_MATCH_ROM = const(0x55)
_CONVERT_T = const(0x44)
_READ_SCRATCHPAD = const(0xBE)
_POWER_ON = const(0x0550)


def celsius(lsb, msb, cfg=0x7F):
    """The temperature register (two's complement, 1/16 degC) at the resolution in the config byte."""
    raw = lsb | (msb << 8)
    if raw & 0x8000:
        raw -= 0x10000
    raw &= ~((1 << (3 - ((cfg >> 5) & 3))) - 1)
    return raw / 16


def parse_rom(text):
    rom = unhexlify(text)
    if len(rom) != 8 or rom[0] != 0x28 or crc8_maxim(rom[:7]) != rom[7]:
        raise ValueError("ds18b20: %s is not a DS18B20 ROM code (family 28, 8 bytes, CRC)" % text)
    return rom


class Ds18b20(Driver):
    name = "ds18b20"

    def __init__(self, ow, opts, quantities):
        super().__init__(self.name, opts)
        self.ow = ow
        roms = opts.get("roms")
        if roms:
            self.qs = [q for q in quantities if q in roms]
            self.roms = [parse_rom(roms[q]) for q in self.qs]
        else:
            found = sorted(bytes(r) for r in ow.scan() if r[0] == 0x28)
            if len(found) < len(quantities):
                raise OSError("ds18b20: %d devices on the bus, %d quantities" % (len(found), len(quantities)))
            self.qs = list(quantities)
            self.roms = found[:len(quantities)]
        self.buf = bytearray(9)
        self.last = [None] * len(self.roms)
        self.raws = [None] * len(self.roms)
        self.sames = [0] * len(self.roms)
        self.i = 0
        self.convert()

    def convert(self):
        if self.ow.reset():
            self.ow.writebyte(_SKIP_ROM)
            self.ow.writebyte(_CONVERT_T)

    def sample(self):
        i = self.i
        ow = self.ow
        buf = self.buf
        if not ow.reset():
            raise OSError("ds18b20: no presence pulse")
        ow.writebyte(_MATCH_ROM)
        ow.write(self.roms[i])
        ow.writebyte(_READ_SCRATCHPAD)
        ow.readinto(buf)
        if buf == b"\xff\xff\xff\xff\xff\xff\xff\xff\xff":
            raise OSError("ds18b20: %s does not answer" % self.qs[i])
        if buf == b"\x00\x00\x00\x00\x00\x00\x00\x00\x00":
            raise FrameError("ds18b20: %s reads all zeros (bus shorted?)" % self.qs[i])
        if crc8_maxim(memoryview(buf)[:8]) != buf[8]:
            raise FrameError("ds18b20: %s bad scratchpad CRC" % self.qs[i])
        t = celsius(buf[0], buf[1], buf[4])
        q = "ok"
        if buf[0] | (buf[1] << 8) == _POWER_ON:
            prev = self.last[i]
            if prev is None or abs(prev - 85) > 2:
                q = "warmup"
        raw = bytes(buf[:2])
        self.sames[i] = self.sames[i] + 1 if raw == self.raws[i] else 0
        self.raws[i] = raw
        if 0 < self.stuck_after <= self.sames[i]:
            q = "fault"
        if q != "warmup":
            self.last[i] = t
        return (self.qs[i], t, flag(t, -55, 125, q))

    def read(self):
        out = []
        err = None
        failed = 0
        for i in range(len(self.roms)):
            self.i = i
            try:
                out.append(Driver.read(self))
            except OSError as exc:
                err = exc
                failed += 1
                if self.last[i] is not None:
                    out.append((self.qs[i], self.last[i], "fault"))
        try:
            self.convert()
        except OSError:
            pass  # a bus that fails here fails the next reads too
        if failed == len(self.roms):
            raise err
        return out


def make(name, spec, hw):
    return Ds18b20(buses.onewire(spec, hw), spec["options"], spec["quantities"])
