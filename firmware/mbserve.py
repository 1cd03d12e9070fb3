"""The board with `"uplink": "modbus"`: the same samplers, but readings go to Modbus registers, not MQTT.

`ModbusBoard` is app.Board without the MQTT client, the offline buffer or telemetry: `emit` writes each
sample's values into their input register slots (firmware.mbregs, map in protocols/boardmap.py), the health
task writes the health slots, and a server task answers requests over TCP (asyncio server on
`modbus.host:port`) or RTU (the hardware layer's serial port: a UART with an RS-485 direction pin on boards,
a serial device path such as a pty on the unix port; a frame ends by length, and 3.5 character times of
silence drop a partial one). Setpoint writes go through firmware.actuators (its limit, rate and min_on/off
checks), so a refused value answers exception 03 and drives nothing. The fail-safe watch counts the uplink
as down when no request has come for 1.5 s; after `failsafe_after` of that, actuators go to fail-safe.
Nothing here imports the MQTT client.
"""

import asyncio
import time

from firmware import app, hw, log
from firmware.mbregs import Registers, handle
from protocols import modbus_framing as mf
from protocols.errors import ProtocolError

_ALIVE_MS = 1500


class _Link:
    """Stands in for the MQTT client where the board asks whether its uplink is up: a request came recently."""

    def __init__(self):
        self.last = None
        self.reconnects = 0  # TCP connections accepted

    def isconnected(self):
        return self.last is not None and time.ticks_diff(time.ticks_ms(), self.last) < _ALIVE_MS


def silence_ms(baudrate, parity):
    """t3.5: 3.5 characters of 1 start + 8 data + parity + stop bits; 1.75 ms above 19200 baud (spec 2.5.1.1)."""
    if baudrate > 19200:
        return 2
    bits = 11 if parity != "N" else 10
    return (35 * bits * 1000 // baudrate + 9) // 10 + 1


class ModbusBoard(app.Board):
    def __init__(self, impl, cfg, caps, boot, state):
        self.hw = impl
        self.cfg = cfg
        self.caps = caps
        self.boot = boot
        self.seq = 0
        self.faults = 0
        self.low = 1 << 30
        self.client = _Link()
        self.served = 0
        self.refused = 0
        self.acts = None
        self.regs = Registers(cfg["actuators"], self._check, self._apply)
        if cfg["actuators"]:
            from firmware.actuators import Actuators

            self.acts = Actuators(self)
            for name in self.acts.val:
                self.regs.set_setpoint(name, self.acts.val[name])

    # ------------------------------------------------------------------------------- registers

    def emit(self, sensor, readings):
        regs = self.regs
        for r in readings:
            value = None if len(r) > 2 and r[2] == "fault" else r[1]
            if r[0] == "setpoint":
                regs.set_setpoint(sensor, value)
            else:
                regs.set_input(r[0], value)

    def _check(self, name, value):
        if self.acts is not None:
            return self.acts.check(name, value)
        return "no actuators"

    def _apply(self, name, value):
        self.acts.drive(name, value)
        self.acts.failsafe = False
        log.info("modbus: %s = %s", name, value)

    def answer(self, pdu):
        resp = handle(pdu, self.regs)
        self.client.last = time.ticks_ms()
        self.served += 1
        if resp is not None and resp[0] & 0x80:
            self.refused += 1
            log.debug("modbus: refused function %d with exception %d", pdu[0], resp[1])
        return resp

    async def health(self):
        period = int(self.cfg["health_interval"] * 1000)
        regs = self.regs
        while True:
            free, block = hw.mem()
            self.low = min(self.low, free)
            for q, v in (("uptime", self.hw.uptime_ms() // 1000), ("heap_free", free), ("heap_max_block", block),
                         ("resets", self.boot), ("sensor_faults", self.faults), ("rssi", self.hw.rssi()),
                         ("reconnects", self.client.reconnects)):
                regs.set_input(q, v)
            log.info("health: served=%d refused=%d faults=%d heap_free=%d max_block=%d heap_low=%d", self.served,
                     self.refused, self.faults, free, block, self.low)
            await asyncio.sleep_ms(period)

    # ------------------------------------------------------------------------------- transports

    async def tcp(self):
        m = self.cfg["modbus"]
        server = await asyncio.start_server(self._connection, m["host"], m["port"])
        log.info("modbus: TCP server on %s:%d", m["host"], m["port"])
        try:
            await asyncio.Event().wait()
        finally:
            server.close()

    async def _connection(self, reader, writer):
        self.client.reconnects += 1
        framer = mf.TcpFramer()
        try:
            while True:
                data = await reader.read(260)
                if not data:
                    break
                framer.feed(data)
                while True:
                    frame = framer.next_frame()
                    if frame is None:
                        break
                    resp = self.answer(frame[2])
                    if resp is not None:
                        writer.write(mf.tcp_frame(frame[0], frame[1], resp))
                        await writer.drain()
        except ProtocolError as exc:
            log.warn("modbus: closing a TCP connection: %s", exc)
        except OSError as exc:
            log.debug("modbus: TCP connection lost: %s", log.why(exc))
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def rtu(self):
        m = self.cfg["modbus"]
        port = self.hw.serial(m)
        unit = m["unit"]
        gap = silence_ms(m["baudrate"], m["parity"])
        framer = mf.RtuFramer(True)
        buf = bytearray(mf.MAX_RTU_FRAME)
        view = memoryview(buf)
        last = time.ticks_ms()
        partial = False
        log.info("modbus: RTU unit %d on %s at %d baud", unit, m["device"] or "UART %d" % m["uart"], m["baudrate"])
        while True:
            n = port.readinto(buf)
            now = time.ticks_ms()
            if n:
                framer.feed(view[:n])
                last = now
                partial = True
                while True:
                    frame = framer.next_frame()
                    if frame is None:
                        break
                    partial = False
                    if frame[0] == unit or frame[0] == 0:
                        resp = self.answer(frame[1])
                        if frame[0] and resp is not None:  # unit 0 is a broadcast: act, never answer
                            port.write(mf.rtu_frame(unit, resp))
            elif partial and time.ticks_diff(now, last) >= gap:
                framer.gap()
                partial = False
            await asyncio.sleep_ms(1)

    async def run(self):
        m = self.cfg["modbus"]
        log.info("board %s/%s boot %d on %s: %d sensors, modbus %s unit %d", self.cfg["site"], self.cfg["device"],
                 self.boot, self.hw.NAME, len(self.cfg["sensors"]), m["transport"], m["unit"])
        app.guard("network", lambda: self.hw.network(self.cfg))
        app.guard("watchdog", self.watchdog)
        app.guard("health", self.health)
        app.guard("modbus", self.tcp if m["transport"] == "tcp" else self.rtu)
        if self.acts is not None:
            app.guard("failsafe", self.acts.watch)
        if self.cfg["sensors"]:
            app.guard("sensors", self.sampler)
        await asyncio.Event().wait()
