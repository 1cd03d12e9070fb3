"""The board with `"uplink": "modbus"`: the same samplers, but readings go to Modbus registers, not MQTT.

`ModbusBoard` is app.Board without the MQTT client, the offline buffer or telemetry: `emit` writes each
sample's values into their input register slots (firmware.mbregs, map in protocols/boardmap.py), the health
task writes the health slots, and a server task answers requests over TCP (asyncio server on
`modbus.host:port`) or RTU (the hardware layer's serial port: a UART with an RS-485 direction pin on boards,
a serial device path such as a pty on the unix port; a frame ends by its length, or for a function code
without a length rule by 3.5 character times of silence, which also drop a partial frame: such a frame, well
formed, gets exception 01; a read that finds the line silent for 1.5 characters followed by more bytes breaks the
frame in progress, which is discarded). Setpoint writes go through firmware.actuators (its limit, rate and min_on/off
checks), so a refused value answers exception 03 and drives nothing. The fail-safe watch counts the uplink
as down when no request has come for 1.5 s; after `failsafe_after` of that, actuators go to fail-safe.
Nothing here imports the MQTT client.

TCP is guarded (docs/modbus.md, "Modbus TCP on the board"): any peer reads, only the addresses in
`modbus.writers` write (others get exception 01 and change nothing; counted in `denied`); at most
`modbus.max_connections` are open, and a new one pushes out the one idle longest (`dropped`); one idle for
`modbus.idle_timeout` seconds is closed (`idled`). Connections live in a fixed table (mbregs.Slots) and
share one receive buffer. Those events are logged at WARN (INFO for idle closes) at most once a minute per
kind (and so are connections closed for a bad MBAP header), the rest at DEBUG; the health line carries the
counts. Should asyncio's accept loop die all the same (a MemoryError in a heap too small for the table), the
watchdog is no longer fed, so the board resets rather than stay deaf. RTU (a physical bus) has no allow-list.
"""

import asyncio
import time

from firmware import app, hw, log
from firmware.mbregs import WRITES, Registers, Slots, dotted, handle, ip4, peer_ip
from protocols import modbus_framing as mf
from protocols._compat import const
from protocols.errors import ProtocolError

_ALIVE_MS = 1500
_REAP_MS = const(1000)  # how often idle connections are looked for (idle_timeout is at least 1 s)
_QUIET_MS = const(60000)  # one WARN/INFO line per kind of event per minute, the rest at DEBUG
_DENY = const(0)
_DROP = const(1)
_IDLE = const(2)
_BAD = const(3)


class _Link:
    """Stands in for the MQTT client where the board asks whether its uplink is up: a request came recently."""

    def __init__(self):
        self.last = None
        self.reconnects = 0  # TCP connections accepted

    def isconnected(self):
        return self.last is not None and time.ticks_diff(time.ticks_ms(), self.last) < _ALIVE_MS


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
        self.denied = 0  # writes refused because the TCP peer is not in modbus.writers
        self.dropped = 0  # TCP connections pushed out by a new one (modbus.max_connections)
        self.idled = 0  # TCP connections closed after modbus.idle_timeout without a request
        self.said = [None, None, None, None]  # when each kind of event was last logged above DEBUG
        self.writers = ()  # TCP: modbus.writers as 4-byte addresses
        self.conns = None
        self.rxbuf = None
        self.deaf = False  # asyncio's accept loop died (MemoryError): only a reset brings the server back
        self.acts = None
        app.watch(self, state)  # the sampler reports to the vitals; the watchdog judges them
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

    def answer(self, pdu, writes=True, peer=None):
        """The response to a request PDU; `writes` False for a TCP peer (`peer`, 4 bytes) not in modbus.writers."""
        resp = handle(pdu, self.regs, writes)
        self.client.last = time.ticks_ms()
        self.served += 1
        if resp is None and pdu and pdu[0] & 0x80:
            self.refused += 1
            log.debug("modbus: no answer to function %d: 128..255 are exception responses", pdu[0])
        elif resp is not None and resp[0] & 0x80:
            self.refused += 1
            if not writes and pdu[0] in WRITES:
                self.denied += 1
                self._say(_DENY, log.WARN, "modbus: refused a write (function %d) from %s: not in modbus.writers; "
                          "denied=%d", pdu[0], dotted(peer), self.denied)
            else:
                log.debug("modbus: refused function %d with exception %d", pdu[0], resp[1])
        return resp

    def _say(self, kind, level, msg, *args):
        """Log at `level` if this kind of event was not logged so in the last minute, else at DEBUG."""
        now = time.ticks_ms()
        last = self.said[kind]
        if last is None or time.ticks_diff(now, last) >= _QUIET_MS:
            self.said[kind] = now
            log.log(level, msg + " (more within a minute at debug level)", args)
        else:
            log.log(log.DEBUG, msg, args)

    def linked(self):
        """The uplink as actuators see it: a master polled recently (no hub liveness over Modbus)."""
        return self.client.isconnected()

    async def watchdog(self):
        """app.Board's verdict without a sender (firmware/vitals.py: the sampler samples, MemoryErrors do not go
        on), and a deaf TCP server stops the feeding too: the board resets and listens again."""
        self.hw.watchdog(self.cfg["watchdog"])
        while not self.deaf:
            why = self.vitals.verdict(time.ticks_ms(), False, 0)
            if why is not None:
                self.reset(why)
            self.hw.feed()
            await asyncio.sleep(1)
        await asyncio.Event().wait()

    async def health(self):
        period = int(self.cfg["health_interval"] * 1000)
        regs = self.regs
        while True:
            free, block = hw.mem()
            self.low = min(self.low, free)
            for q, v in (("uptime", self.hw.uptime_ms() // 1000), ("heap_free", free), ("heap_max_block", block),
                         ("resets", self.boot), ("sensor_faults", self.faults), ("rssi", self.hw.rssi()),
                         ("reconnects", self.client.reconnects), ("self_resets", self.self_resets)):
                regs.set_input(q, v)
            log.info("health: served=%d refused=%d denied=%d dropped=%d idled=%d faults=%d heap_free=%d "
                     "max_block=%d heap_low=%d", self.served, self.refused, self.denied, self.dropped, self.idled,
                     self.faults, free, block, self.low)
            await asyncio.sleep_ms(period)

    # ------------------------------------------------------------------------------- transports

    async def tcp(self):
        m = self.cfg["modbus"]
        self.writers = [ip4(a) for a in m["writers"]]
        self.conns = Slots(m["max_connections"], time.ticks_diff)
        self.rxbuf = bytearray(260)  # one for all connections: each read is fed to its framer before any await
        idle = int(m["idle_timeout"] * 1000)
        server = await asyncio.start_server(self._connection, m["host"], m["port"])
        log.info("modbus: TCP server on %s:%d, %d writers, at most %d connections, idle timeout %s s", m["host"],
                 m["port"], len(self.writers), m["max_connections"], m["idle_timeout"])
        try:
            while not self.deaf:
                await asyncio.sleep_ms(_REAP_MS)
                self._reap(idle)
                self.deaf = server.task.done()
            log.error("modbus: the TCP server stopped accepting connections (out of memory?); the watchdog will "
                      "reset the board. Lower modbus.max_connections if this repeats")
            await asyncio.Event().wait()
        finally:
            server.close()

    def _reap(self, idle):
        conns = self.conns
        while True:
            i = conns.idle(time.ticks_ms(), idle)
            if i < 0:
                return
            conns.keys[i].cancel()  # its task closes the socket
            self.idled += 1
            self._say(_IDLE, log.INFO, "modbus: closed the TCP connection from %s: idle for modbus.idle_timeout; "
                      "idled=%d", dotted(conns.tags[i]), self.idled)
            conns.free(i)

    async def _connection(self, reader, writer):
        self.client.reconnects += 1
        me = asyncio.current_task()
        peer = peer_ip(writer.get_extra_info("peername"))
        conns = self.conns
        i = conns.pick()
        if conns.keys[i] is not None:
            conns.keys[i].cancel()
            self.dropped += 1
            self._say(_DROP, log.WARN, "modbus: %d TCP connections open (modbus.max_connections): closed the one "
                      "from %s, idle longest, for %s; dropped=%d", len(conns.keys), dotted(conns.tags[i]),
                      dotted(peer), self.dropped)
        conns.put(i, me, peer, time.ticks_ms())
        writes = peer is not None and peer in self.writers
        framer = mf.TcpFramer()
        buf = self.rxbuf
        try:
            while True:
                n = await reader.readinto(buf)
                if not n:
                    break
                conns.touch(me, time.ticks_ms())
                framer.feed(memoryview(buf)[:n])
                while True:
                    frame = framer.next_frame()
                    if frame is None:
                        break
                    resp = self.answer(frame[2], writes, peer)
                    if resp is not None:
                        writer.write(mf.tcp_frame(frame[0], frame[1], resp))
                        await writer.drain()
        except ProtocolError as exc:
            self._say(_BAD, log.WARN, "modbus: closing the TCP connection from %s: %s", dotted(peer), exc)
        except OSError as exc:
            log.debug("modbus: TCP connection lost: %s", log.why(exc))
        finally:
            conns.remove(me)
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def rtu(self):
        m = self.cfg["modbus"]
        port = self.hw.serial(m)
        unit = m["unit"]
        # t3.5 and t1.5 (protocols.modbus_framing) in whole ms, rounded up, plus 1: a ticks_ms difference of n
        # proves only that more than n - 1 ms have passed
        gap = (mf.silence_us(m["baudrate"], m["parity"], m["stopbits"]) + 999) // 1000 + 1
        half = (mf.silence_us(m["baudrate"], m["parity"], m["stopbits"], 8, 15) + 999) // 1000 + 1
        framer = mf.RtuFramer(True)
        buf = bytearray(mf.MAX_RTU_FRAME)
        view = memoryview(buf)
        last = time.ticks_ms()
        partial = False
        quiet = False  # a read found the line silent for t1.5 (but not t3.5) since the last byte
        log.info("modbus: RTU unit %d on %s at %d baud", unit, m["device"] or "UART %d" % m["uart"], m["baudrate"])
        while True:
            n = port.readinto(buf)
            now = time.ticks_ms()
            frame = None
            if n:
                if quiet:  # seen silent for t1.5 and now more bytes: a frame buffered now is broken
                    framer.split()
                    quiet = False
                framer.feed(view[:n])
                last = now
                partial = True  # bytes since the last silence: the next one is a frame's end
                frame = framer.next_frame()
            elif partial:
                idle = time.ticks_diff(now, last)
                if idle >= gap:
                    frame = framer.gap()  # a well-formed frame of a function without a length rule, or None
                    partial = quiet = False
                elif idle >= half:
                    quiet = True
            while frame is not None:
                if frame[0] == unit or frame[0] == 0:
                    resp = self.answer(frame[1])  # an unknown function: exception 01
                    if frame[0] and resp is not None:  # unit 0 is a broadcast: act, never answer
                        wait = gap - time.ticks_diff(time.ticks_ms(), last)
                        if wait > 0:  # the answer is a new frame: t3.5 of silence after the request first
                            await asyncio.sleep_ms(wait)
                        port.write(mf.rtu_frame(unit, resp))
                frame = framer.next_frame() if n else None
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
