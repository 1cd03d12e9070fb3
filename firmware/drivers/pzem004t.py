"""Peacefair PZEM-004T v3.0 energy meter on a UART (9600 8N1): the board as a Modbus RTU master.

Each read() sends FC 04 (read input registers) for the 10 registers from 0x0000 to the meter's address
(`options.address`, default 1; manual example: 01 04 00 00 00 0A 70 0D; 0xF8 = 248, the manual's general
address, reaches the one meter on a line whatever its address: its reply is taken from any address) and
decodes, per the manual's register map: voltage 0.1 V, current 0.001 A (32 bits, low word first), power
0.1 W (32 bits), energy 1 Wh (32 bits), frequency 0.1 Hz, power factor 0.01, alarm. Framing and CRC-16
come from protocols/ (the same codec as the hub's Modbus ingest). Quality: `range` outside the meter's
measuring range (80..260 V, 0..100 A, 45..65 Hz). An exception response, a bad CRC or silence is retried,
then raised as a sensor fault.
"""

from firmware.drivers.base import Driver, FrameError, flag
from firmware.hw import buses
from protocols import modbus
from protocols._compat import const
from protocols.errors import ProtocolError
from protocols.modbus_framing import crc16, rtu_frame

_READ_INPUT = const(4)
_COUNT = const(10)
_REPLY = const(25)  # address, function, byte count, 20 data bytes, CRC


def decode(frame, unit):
    """The 10 register values of a reply frame; FrameError on a CRC, address or length problem."""
    if len(frame) < 5 or crc16(frame) != 0:  # the CRC of a frame with its CRC appended is 0
        raise FrameError("pzem004t: bad CRC or short reply (%d bytes)" % len(frame))
    if frame[0] != unit and unit != 0xF8:  # asked at the general address, the meter answers with its own
        raise FrameError("pzem004t: reply from address %d" % frame[0])
    try:
        return modbus.decode_response(memoryview(frame)[1:-2], _READ_INPUT, _COUNT)
    except ProtocolError as exc:
        raise FrameError(str(exc)) from None


def values(r):
    """(voltage V, current A, power W, energy kWh, frequency Hz, power factor) from the 10 registers."""
    return (r[0] / 10, ((r[2] << 16) | r[1]) / 1000, ((r[4] << 16) | r[3]) / 10, ((r[6] << 16) | r[5]) / 1000,
            r[7] / 10, r[8] / 100)


class Pzem004t(Driver):
    name = "pzem004t"

    def __init__(self, uart, opts):
        super().__init__(self.name, opts)
        self.uart = uart
        self.unit = opts.get("address", 1)
        self.request = rtu_frame(self.unit, modbus.read_request(_READ_INPUT, 0, _COUNT))

    def sample(self):
        while self.uart.any():
            self.uart.read(self.uart.any())
        self.uart.write(self.request)
        if not buses.wait_any(self.uart, _REPLY, 200):
            got = self.uart.read(self.uart.any() or 1)
            if got and len(got) == 5:  # an exception response is 5 bytes
                decode(got, self.unit)
            raise OSError("pzem004t: no answer from address %d" % self.unit)
        v, a, w, kwh, hz, pf = values(decode(self.uart.read(_REPLY), self.unit))
        return [("voltage", v, flag(v, 80, 260)), ("current", a, flag(a, 0, 100)), ("power_active", w),
                ("energy_import", kwh), ("frequency", hz, flag(hz, 45, 65)), ("power_factor", pf, flag(pf, 0, 1))]


def make(name, spec, hw):
    return Pzem004t(buses.uart(spec, hw, 9600), spec["options"])
