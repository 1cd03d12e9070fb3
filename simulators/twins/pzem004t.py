"""Twin of a Peacefair PZEM-004T v3.0 at its UART: a Modbus RTU server at address 1 with its 10 registers.

Answers FC 04 reads of the input registers 0x0000..0x0009 (voltage, current, power, energy, frequency, power
factor, alarm: the manual's register map) with a reply framed by protocols/ (CRC-16); other requests get a
Modbus exception, frames with a bad CRC or for another address get nothing, as on a real bus. Energy grows
with the power drawn. Faults: `bad_checksum` (CRC off by one), `silent` (no reply), `stuck` (same values),
`out_of_range` (300 V, above the 260 V range). A meter has no warm-up: `warming_up` is refused.
"""

from protocols import modbus
from protocols.errors import ProtocolError
from protocols.modbus_framing import crc16, rtu_frame
from simulators.twins.base import Base


class Twin(Base):
    cannot = ("warming_up",)

    def __init__(self, faults, clock, unit=1):
        super().__init__(faults, clock)
        self.unit = unit
        self.out = b""
        self.wh = 12345.0

    def registers(self):
        volts = 300.0 if self.hit("out_of_range") else self.wave(230, 3)
        amps = self.wave(4, 3) if not self.faults.get("stuck") else 4.0
        pf = 0.93
        watts = volts * amps * pf
        if not self.faults.get("stuck"):
            self.wh += watts / 3600
        ma, dw, wh = int(amps * 1000), int(watts * 10), int(self.wh)
        return [int(volts * 10), ma & 0xFFFF, ma >> 16, dw & 0xFFFF, dw >> 16, wh & 0xFFFF, wh >> 16,
                int(self.wave(50, 0.05, 7) * 10 + 0.5), int(pf * 100), 0]

    def uart_rx(self, data):
        if len(data) < 4 or crc16(data) != 0 or data[0] not in (self.unit, 0xF8):  # 0xF8: the general address
            return  # (answered with the meter's own address: how this twin reads the manual, not seen on a meter)
        try:
            req = modbus.decode_request(data[1:-2])
            if req.function != 4 or req.address + req.count > 10:
                raise modbus.ModbusError(modbus.ILLEGAL_DATA_ADDRESS, "not a PZEM input register")
            pdu = modbus.registers_response(4, self.registers()[req.address:req.address + req.count])
        except modbus.ModbusError as exc:
            pdu = modbus.exception_response(data[1], exc.code)
        except ProtocolError:
            return
        frame = bytearray(rtu_frame(self.unit, pdu))
        if self.hit("bad_checksum"):
            frame[-1] ^= 1
        if not self.hit("silent"):
            self.out = bytes(frame)

    def uart_pending(self):
        return len(self.out)

    def uart_tx(self, n):
        n = len(self.out) if n < 0 else n
        data, self.out = self.out[:n], self.out[n:]
        return data
