"""Simulated Modbus devices driven by a hub profile: plausible changing values, over TCP or RTU on a pty.

`SimulatedDevice(profile)` answers Modbus request PDUs like the profiled device would: every register of the
profile holds a value that changes with time (mains voltage wobbling around 230 V, meter registers that
only count up, ...), encoded with protocols.registers in the profile's type, scale and byte/word order (or
in `order=` for every register: the probe tests use that). Writable holding registers keep what is written.

Two transports serve one or many devices (keyed by unit id):
- `TcpDeviceServer`: Modbus TCP on 127.0.0.1 (asyncio streams + protocols.modbus_framing.TcpFramer).
- `RtuBusSimulator`: Modbus RTU on a pseudo-terminal pair; the hub's pyserial client opens `port` (the pty's
  slave end) exactly as it would open /dev/ttyUSB0, and every device on the simulated bus shares it.

A pty moves bytes at once whatever its baud rate, so by default the RTU devices answer as fast as they can.
`RtuBusSimulator(devices, timing=LineTiming(9600))` honours the wire instead: a request that arrives at t is
taken as sent from t, one character (start + data + parity + stop bits) per `char_time`; the device answers
after the request's last character, t3.5 of silence (protocols.modbus_framing.silence_us, the rule the hub
and the boards keep) and `turnaround`, and
the response is written to the pty when its own last character would arrive. A request that starts less
than t3.5 after the line's last character, or while a response is pending, is a gap violation: counted and
ignored, as a real device ignores a frame it cannot delimit. `stats` counts what a benchmark needs.

Fault modes per device (`device.fault`): `silent` (never answers: a dead or unpowered device), `exception`
(answers exception `device.exception_code`), `slow` (answers after `device.delay` seconds), `bad_crc`,
`truncated` (half a frame), `garbage` (random bytes), `disconnect` (TCP: half a frame, then the connection
is closed). The responders are our own small servers on protocols.modbus/modbus_framing rather than
pymodbus's: byte-level faults (bad CRC, truncated frames, garbage) need control of every byte sent, and
pymodbus 3.16's server datastore is mid-migration (ModbusDeviceContext is deprecated for SimData). The hub
side stays pymodbus, so these also check that pymodbus interoperates with Qala's own codec.

CPython only (os.openpty, asyncio); imports protocols and, of the hub, only its public profile loader
(hub.modbus.profile, hub.PUBLIC). Run one from a shell:
`python -m simulators.modbus_devices --profile sdm630 --tcp 5020` or `--rtu` (prints the pty path; add
`--baudrate 9600` for wire timing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import logging
import math
import os
import random
import sys
import time
import tty
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from hub.modbus import profile as profiles
from protocols import modbus, registers
from protocols.errors import ProtocolError
from protocols.modbus_framing import RtuFramer, TcpFramer, rtu_frame, silence_us, tcp_frame

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from hub.modbus.profile import Profile, Register

log = logging.getLogger(__name__)


class Fault(enum.StrEnum):
    NONE = "none"
    SILENT = "silent"
    EXCEPTION = "exception"
    SLOW = "slow"
    BAD_CRC = "bad_crc"
    TRUNCATED = "truncated"
    GARBAGE = "garbage"
    DISCONNECT = "disconnect"


# quantity: (typical value, swing, period in seconds); counters (rate per second) are apart
_TYPICAL = {
    "pm1": (6.0, 3.0, 60.0), "pm25": (12.0, 6.0, 60.0), "pm10": (20.0, 8.0, 60.0), "co2": (650.0, 150.0, 120.0),
    "tvoc": (150.0, 50.0, 90.0), "voc_index": (100.0, 30.0, 90.0), "no2": (20.0, 8.0, 120.0),
    "o3": (30.0, 10.0, 120.0), "temperature": (18.0, 3.0, 300.0), "humidity": (55.0, 10.0, 300.0),
    "pressure": (1013.0, 4.0, 600.0), "aqi": (50.0, 20.0, 120.0),
    "voltage": (230.0, 3.0, 17.0), "current": (5.0, 2.0, 11.0), "power_active": (1100.0, 400.0, 11.0),
    "power_reactive": (300.0, 100.0, 13.0), "power_apparent": (1150.0, 400.0, 11.0),
    "power_factor": (0.95, 0.03, 19.0), "frequency": (50.0, 0.05, 23.0),
    "water_flow": (2.5, 1.0, 30.0), "heat_supply_temp": (75.0, 2.0, 120.0), "heat_return_temp": (45.0, 2.0, 120.0),
    "heat_flow": (1.2, 0.3, 60.0), "heat_power": (40.0, 10.0, 60.0),
    "heap_free": (80000.0, 5000.0, 30.0), "heap_max_block": (30000.0, 2000.0, 30.0), "rssi": (-65.0, 5.0, 20.0),
    "buffered": (0.0, 0.0, 1.0), "dropped": (0.0, 0.0, 1.0), "resets": (3.0, 0.0, 1.0),
    "reconnects": (1.0, 0.0, 1.0), "sensor_faults": (0.0, 0.0, 1.0), "setpoint": (20.0, 0.0, 1.0),
}
_ELECTRIC = frozenset(("voltage", "current", "power_active", "power_reactive", "power_apparent", "power_factor"))
_COUNTERS = {  # quantity: (start, increase per second)
    "energy_import": (12345.6, 0.3), "energy_export": (12.5, 0.001), "water_volume": (345.6, 0.0007),
    "gas_volume": (4321.0, 0.0005), "heat_energy": (123456.0, 0.011), "uptime": (1000.0, 1.0),
}


class SimulatedDevice:
    """Answers request PDUs for one profiled device; values are a function of `clock()`."""

    def __init__(
        self,
        profile: Profile,
        *,
        order: str | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self.order = order
        self.fault = Fault.NONE
        self.exception_code = modbus.SERVER_DEVICE_FAILURE
        self.delay = 0.0
        self.requests = 0
        self._clock = clock
        self._t0 = clock()
        rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        self._phase = {reg.name: rng.uniform(0, 2 * math.pi) for reg in profile.registers}
        self._seed_phase = rng.uniform(0, 2 * math.pi)  # the electrical values' (see _electric)
        self._written: dict[str, float] = {}
        self._by_table: dict[str, list[Register]] = {}
        for reg in profile.registers:
            self._by_table.setdefault(reg.table, []).append(reg)

    def value(self, reg: Register) -> float:
        if reg.name in self._written:
            return self._written[reg.name]
        t = self._clock() - self._t0
        if reg.quantity in _COUNTERS:
            start, rate = _COUNTERS[reg.quantity]
            return start + rate * t
        if reg.quantity in _ELECTRIC:
            return self._electric(reg, t)
        base, swing, period = _TYPICAL.get(reg.quantity, (1.0, 0.0, 1.0))
        return base + swing * math.sin(2 * math.pi * t / period + self._phase[reg.name])

    def _electric(self, reg: Register, t: float) -> float:
        """One phase's (or the total's) electrical values, consistent as a real meter's are: S = V x I,
        P = S x PF, Q = S x sin(phi), totals the phases' sums. The phase is the name's suffix (`_l1`, `_total`,
        none for a single-phase meter)."""
        suffix = reg.name[len(reg.quantity):] if reg.name.startswith(reg.quantity) else ""
        if suffix == "_total":
            phases = [self._phase_values(p, t) for p in ("_l1", "_l2", "_l3")]
            v, i = sum(x["voltage"] for x in phases) / 3, sum(x["current"] for x in phases)
            p_, q_, s_ = (sum(x[k] for x in phases) for k in ("power_active", "power_reactive", "power_apparent"))
            total = {"voltage": v, "current": i, "power_active": p_, "power_reactive": q_, "power_apparent": s_,
                     "power_factor": p_ / s_}
            return total[reg.quantity]
        return self._phase_values(suffix, t)[reg.quantity]

    def _phase_values(self, suffix: str, t: float) -> dict[str, float]:
        shift = self._seed_phase + zlib.crc32(suffix.encode()) % 628 / 100  # each phase its own, stable
        values = {}
        for quantity in ("voltage", "current", "power_factor"):
            base, swing, period = _TYPICAL[quantity]
            values[quantity] = base + swing * math.sin(2 * math.pi * t / period + shift)
            shift += 1.0
        apparent = values["voltage"] * values["current"]
        pf = values["power_factor"]
        values["power_apparent"] = apparent
        values["power_active"] = apparent * pf
        values["power_reactive"] = apparent * math.sqrt(max(0.0, 1.0 - pf * pf))
        return values

    def registers(self, table: str, address: int, count: int) -> list[int]:
        """The raw registers of `table` from `address`; unmapped ones inside the map read 0."""
        regs = self._by_table.get(table, [])
        if not regs or address < min(r.address for r in regs) or address + count > max(r.end for r in regs):
            raise modbus.ModbusError(modbus.ILLEGAL_DATA_ADDRESS, f"{table} {address}+{count} outside the map")
        out = [0] * count
        for reg in regs:
            if reg.end <= address or reg.address >= address + count:
                continue
            words = registers.encode(self.value(reg), reg.type, self.order or reg.order, reg.scale)
            for i, word in enumerate(words):
                if address <= reg.address + i < address + count:
                    out[reg.address + i - address] = word
        return out

    def handle(self, pdu: bytes) -> bytes:
        """The response PDU to a request PDU (exception responses included)."""
        self.requests += 1
        function = pdu[0] if pdu else 0
        try:
            request = modbus.decode_request(pdu)
            if self.fault is Fault.EXCEPTION:
                return modbus.exception_response(function, self.exception_code)
            if request.function in (modbus.READ_INPUT_REGISTERS, modbus.READ_HOLDING_REGISTERS):
                table = profiles.INPUT if request.function == modbus.READ_INPUT_REGISTERS else profiles.HOLDING
                return modbus.registers_response(request.function, self.registers(table, request.address,
                                                                                  request.count))
            if request.function in (modbus.WRITE_SINGLE_REGISTER, modbus.WRITE_MULTIPLE_REGISTERS):
                self._write(request.address, request.values or [])
                return modbus.write_response(request)
        except modbus.ModbusError as exc:
            return modbus.exception_response(function, exc.code)
        return modbus.exception_response(function, modbus.ILLEGAL_FUNCTION)

    def _write(self, address: int, values: list[int]) -> None:
        for reg in self._by_table.get(profiles.HOLDING, []):
            if reg.address == address and reg.size == len(values) and reg.writable:
                try:
                    value = registers.decode(values, reg.type, self.order or reg.order, reg.scale)
                except ProtocolError:
                    break
                if (reg.minimum is not None and value < reg.minimum) or (
                        reg.maximum is not None and value > reg.maximum):
                    raise modbus.ModbusError(modbus.ILLEGAL_DATA_VALUE, f"{value} outside the register's limits")
                self._written[reg.name] = value
                return
        raise modbus.ModbusError(modbus.ILLEGAL_DATA_ADDRESS, f"no writable register at {address}+{len(values)}")


def _faulty(device: SimulatedDevice, frame: bytes) -> bytes | None:
    """The bytes a device in a byte-level fault mode sends instead of `frame` (None: send nothing)."""
    if device.fault is Fault.SILENT:
        return None
    if device.fault is Fault.BAD_CRC:
        return frame[:-1] + bytes(((frame[-1] ^ 0x5A) & 0xFF,))
    if device.fault in (Fault.TRUNCATED, Fault.DISCONNECT):
        return frame[: max(1, len(frame) // 2)]
    if device.fault is Fault.GARBAGE:
        return bytes(random.getrandbits(8) for _ in range(len(frame)))
    return frame


def char_time(baudrate: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> float:
    """Seconds one character takes on the line: a start bit, the data bits, a parity bit if any, the stop bits."""
    return (1 + bytesize + (0 if parity == "N" else 1) + stopbits) / baudrate


@dataclass(frozen=True)
class LineTiming:
    """An RS-485 line's framing and a device's turnaround (seconds from recognising a request to answering)."""

    baudrate: int
    bytesize: int = 8
    parity: str = "N"
    stopbits: int = 1
    turnaround: float = 0.0

    @property
    def char(self) -> float:
        return char_time(self.baudrate, self.bytesize, self.parity, self.stopbits)

    @property
    def silent(self) -> float:
        """t3.5 in seconds, by the serial line's rule (the hub's and the boards')."""
        return silence_us(self.baudrate, self.parity, self.stopbits, self.bytesize) / 1e6

    def min_cycle(self, request_chars: int, response_chars: int) -> float:
        """The shortest request-to-request period of a transaction: both frames, t3.5 after each, turnaround."""
        return (request_chars + response_chars) * self.char + 2 * self.silent + self.turnaround

    def max_utilisation(self, request_chars: int, response_chars: int) -> float:
        """The best share of wall time a perfect master keeps the line carrying characters, for this transaction."""
        return (request_chars + response_chars) * self.char / self.min_cycle(request_chars, response_chars)


@dataclass
class WireStats:
    """What a timed RTU bus counted since it started."""

    requests: int = 0
    """Frames accepted from the master (gap violations excluded)."""
    answered: int = 0
    """Responses sent (exception responses and byte-level faults included)."""
    busy_seconds: float = 0.0
    """Characters of accepted requests and sent responses, times the character time; a transaction's are
    counted when its response's last character is sent (an unanswered request's when it arrives)."""
    last_answer: float = 0.0
    """Monotonic time of the last response's last character: with `answered` and `busy_seconds`, two
    snapshots give a window that holds whole transactions only."""
    gap_violations: int = 0
    """Frames that started less than t3.5 after the line's last character, or while a response was pending."""


_WAKE_EARLY = 0.002  # seconds: more than the event loop's timer granularity (1 ms) plus its wake-up latency


class RtuBusSimulator:
    """Devices sharing one simulated RS-485 line: a pty pair; `port` is the path the hub opens.

    `timing=None` answers at once (the pty's speed); a LineTiming makes the line honour its wire timing.
    """

    def __init__(self, devices: Mapping[int, SimulatedDevice], timing: LineTiming | None = None) -> None:
        self.devices = dict(devices)
        self.timing = timing
        self.stats = WireStats()
        self.port = ""
        self.frames_in = 0
        self._quiet_at = 0.0  # monotonic time from which the master may start a frame
        self._rx_end = 0.0  # when the last received character is off the line
        self._pending: set[asyncio.TimerHandle] = set()
        self._master = -1
        self._slave = -1
        self._framer = RtuFramer(requests=True)
        self._queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> str:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        tty.setraw(self._master)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        asyncio.get_running_loop().add_reader(self._master, self._on_readable)
        self._worker = asyncio.create_task(self._respond(), name="rtu-sim")
        return self.port

    async def stop(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._master >= 0:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = -1

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        now = time.monotonic()
        self._framer.feed(data)
        start = max(now, self._rx_end)
        while (frame := self._framer.next_frame()) is not None:
            self.frames_in += 1
            if self.timing is None:
                self._queue.put_nowait(frame)
                continue
            # frames that came in one read were sent back to back; a frame split over reads counts from
            # the read that completed it (later, never earlier, than it started: no false violations)
            start = self._accept(self.timing, start, *frame)
            self._rx_end = start

    def _accept(self, line: LineTiming, start: float, unit: int, pdu: bytes) -> float:
        """Take a request whose first character is on the line at `start`; returns when its last one is off."""
        end = start + (len(pdu) + 3) * line.char
        if start < self._quiet_at:
            self.stats.gap_violations += 1
            log.debug("rtu sim gap violation unit=%d early_by=%.6f", unit, self._quiet_at - start)
            return end
        self.stats.requests += 1
        self._quiet_at = end + line.silent
        device = self.devices.get(unit)
        out = None if device is None else _faulty(device, rtu_frame(unit, device.handle(pdu)))
        if device is None or out is None:  # nobody with that address on the line, or a silent one
            self.stats.busy_seconds += (len(pdu) + 3) * line.char
            return end
        delay = line.turnaround + (device.delay if device.fault is Fault.SLOW else 0.0)
        done = end + line.silent + delay + len(out) * line.char
        self._quiet_at = done + line.silent
        self._send_at(done, out, (len(pdu) + 3 + len(out)) * line.char)
        return end

    def _send_at(self, deadline: float, out: bytes, busy: float) -> None:
        """Write `out` at the monotonic `deadline` and count the transaction (`busy` seconds of characters) then:
        the event loop wakes a little early (its epoll timeouts are whole milliseconds) and a short blocking
        sleep lands on the deadline."""
        loop = asyncio.get_running_loop()

        def send() -> None:
            self._pending.discard(handle)
            time.sleep(max(0.0, deadline - time.monotonic()))
            if self._master >= 0:
                os.write(self._master, out)
            self.stats.answered += 1
            self.stats.busy_seconds += busy
            self.stats.last_answer = deadline

        handle = loop.call_at(deadline - _WAKE_EARLY, send)
        self._pending.add(handle)

    async def _respond(self) -> None:
        while True:
            unit, pdu = await self._queue.get()
            device = self.devices.get(unit)
            if device is None:  # nobody with that address on the line
                continue
            response = device.handle(pdu)
            if device.fault is Fault.SLOW:
                await asyncio.sleep(device.delay)
            out = _faulty(device, rtu_frame(unit, response))
            if out is not None:
                os.write(self._master, out)


class TcpDeviceServer:
    """Modbus TCP on 127.0.0.1 for one device (any unit id) or several (keyed by unit id)."""

    def __init__(self, devices: Mapping[int, SimulatedDevice] | SimulatedDevice) -> None:
        self.single = devices if isinstance(devices, SimulatedDevice) else None
        self.devices = {} if isinstance(devices, SimulatedDevice) else dict(devices)
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        framer = TcpFramer()
        try:
            while data := await reader.read(4096):
                framer.feed(data)
                while (frame := framer.next_frame()) is not None:
                    if not await self._answer(writer, *frame):
                        return
        except (ProtocolError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, transaction: int, unit: int, pdu: bytes) -> bool:
        """Answer one request; False when the connection is to be dropped."""
        device = self.single or self.devices.get(unit)
        if device is None:
            response = modbus.exception_response(pdu[0] if pdu else 0, modbus.GATEWAY_TARGET_FAILED)
            writer.write(tcp_frame(transaction, unit, response))
            return True
        response = device.handle(pdu)
        if device.fault is Fault.SLOW:
            await asyncio.sleep(device.delay)
        out = _faulty(device, tcp_frame(transaction, unit, response))
        if out is not None:
            writer.write(out)
            await writer.drain()
        return device.fault is not Fault.DISCONNECT


async def _main(args: argparse.Namespace) -> None:
    device = SimulatedDevice(profiles.load(profiles.resolve(args.profile)), order=args.order)
    device.fault = Fault(args.fault)
    device.delay = args.delay
    if args.rtu:
        timing = LineTiming(args.baudrate, parity=args.parity) if args.baudrate else None
        async with RtuBusSimulator({args.unit: device}, timing) as bus:
            sys.stdout.write(f"{args.profile} unit {args.unit} on RTU port {bus.port}\n")
            sys.stdout.flush()
            await asyncio.Event().wait()
    server = TcpDeviceServer(device)
    port = await server.start(port=args.tcp)
    sys.stdout.write(f"{args.profile} on Modbus TCP 127.0.0.1:{port}\n")
    sys.stdout.flush()
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A simulated Modbus device driven by a Qala profile.")
    parser.add_argument("--profile", required=True, help="built-in profile name or .toml path")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", type=int, metavar="PORT", help="serve Modbus TCP on 127.0.0.1:PORT (0: any)")
    where.add_argument("--rtu", action="store_true", help="serve Modbus RTU on a new pty (its path is printed)")
    parser.add_argument("--unit", type=int, default=1)
    parser.add_argument("--baudrate", type=int, help="with --rtu: honour this baud rate's wire timing (8 data bits)")
    parser.add_argument("--parity", choices=("N", "E", "O"), default="N", help="with --baudrate (default N: 8N1)")
    parser.add_argument("--order", choices=registers.ORDERS, help="encode every register in this order")
    parser.add_argument("--fault", choices=[f.value for f in Fault], default="none")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds, for --fault slow")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
