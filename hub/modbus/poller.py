"""The Modbus poller: per-device schedules, bounded retries, offline back-off, quality flags, writes.

`ModbusService(config, site)` owns one BusArbiter per configured bus and one DevicePoller per device;
`run(emit)` polls until cancelled and hands each poll's Readings to `emit` (a callable taking a
list[hub.model.Reading], plain or async). `write(device, register, value)` sends a setpoint through the
bus's arbiter, ahead of polls, and reads it back to confirm.

Quality flags on the Readings (the `quality` tag; docs/modbus.md explains them to dashboard authors):
- `ok`: read in this poll (`range` instead when outside the catalogue's plausible range).
- `stale`: the device answered this poll, but the read holding this value failed (an exception response,
  a malformed answer, or no answer after earlier reads of the same poll succeeded); the value is the last
  good one from the hub's cache, stamped with this poll's time. Nothing is sent before a first good value.
- `lost`: the device stopped answering (every attempt of a poll's first read timed out). Sent once per
  outage, one Reading per register with its last good value at the time the outage was detected, next to
  a `qala_device_status` record (state=offline, online=0, error=why). No values are made up while the
  device stays silent: the gap in the `ok` series is the honest picture. When it answers again a status
  record (state=online, online=1) marks the end of the gap.

Scheduling: a device is polled every `interval` seconds at a fixed rate (a late poll does not cause a burst
of catch-up polls). A read that gets no answer is retried `retries` times while the device is online, each
retry queued again behind the other devices' jobs on the bus. An offline device gets a single attempt per
poll and is polled with jittered exponential back-off from `interval` up to `offline_interval`. The log
says once per outage that a device went offline and once that it came back, never per failed poll.

Leases (several hubs of a site, [cluster]; docs/scale.md): given `leases` (hub.modbus.lease.Leases, or
anything with its `held`/`wait_held`/`listeners`), a bus is polled only while this hub holds its lease. Its
devices wait, without Readings or status records, while another hub owns it; each bus's arbiter refuses
every transaction (NotOwnerError) the moment the lease is not held, and closes its connection when it is lost.
A write to a device on a bus this hub does not hold raises BusNotHeldError, naming the bus. Without `leases`
every bus is polled, as on a hub alone.

Imports hub.model, hub.backoff, hub.modbus.{config,plan,bus,profile} and protocols; the only pymodbus
code is behind hub.modbus.bus; knows of leases only the BusLeases protocol.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from hub.backoff import Backoff
from hub.modbus import plan
from hub.modbus.bus import (
    POLL,
    WRITE,
    BadResponseError,
    BusArbiter,
    BusError,
    DeviceError,
    NoResponseError,
    NotOwnerError,
    PymodbusTransport,
    Transport,
    raise_if_cancelling,
)
from hub.modbus.config import RTU
from hub.model import DEVICE_STATUS, STATUS_SENSOR, Reading
from protocols import catalogue, registers
from protocols.errors import ProtocolError
from protocols.modbus_framing import silence_us

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from hub.modbus.config import DeviceConfig, ModbusConfig
    from hub.modbus.profile import Register

log = logging.getLogger(__name__)


class WriteRefusedError(ValueError):
    """A write the hub will not send: unknown device or register, not writable, outside limits, not a number."""


class BusNotHeldError(WriteRefusedError):
    """A write to a device on a bus that another hub of the site owns (this hub does not hold its lease)."""


class BusLeases(Protocol):
    """What the poller needs of hub.modbus.lease.Leases."""

    listeners: list[Callable[[str, bool], None]]

    def held(self, bus: str) -> bool: ...

    async def wait_held(self, bus: str) -> None: ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def fields(self) -> dict[str, float]: ...


class WriteNotConfirmedError(BusError):
    """The device accepted the write but reading it back gave another value."""

    def __init__(self, expected: float, confirmed: float) -> None:
        self.expected = expected
        self.confirmed = confirmed
        super().__init__(f"wrote {expected:g}, read back {confirmed:g}")


@dataclass
class DeviceStats:
    polls: int = 0
    answered: int = 0
    failed: int = 0
    attempts: int = 0
    timeouts: int = 0
    poll_starts: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    """Monotonic start times of recent polls (for status pages and tests)."""


class DevicePoller:
    """Polls one device through its bus's arbiter and turns the answers into Readings."""

    def __init__(
        self,
        site: str,
        device: DeviceConfig,
        arbiter: BusArbiter,
        retries: int,
        *,
        wall_ms: Callable[[], int] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.site = site
        self.device = device
        self.arbiter = arbiter
        self.retries = retries
        self.reads = plan.plan(device.profile.registers, device.max_gap)
        self.online: bool | None = None  # None until the first poll
        self.stats = DeviceStats()
        self.cache: dict[str, float] = {}
        self._failing_reads: set[int] = set()
        self._offline_since = 0.0
        self._wall_ms = wall_ms or (lambda: int(time.time() * 1000))
        self._monotonic = monotonic
        self._backoff = Backoff(device.interval, device.offline_interval)
        self.leases: BusLeases | None = None
        """Set by ModbusService with [cluster]: poll only while this hub holds the bus's lease."""

    @property
    def name(self) -> str:
        return self.device.name

    async def run(self, emit: Callable[[list[Reading]], Awaitable[None] | None]) -> None:
        """Poll at the configured rate until cancelled."""
        next_due = self._monotonic()
        while True:
            if self.leases is not None and not self.leases.held(self.device.bus):
                await self._wait_for_lease(self.leases)
                next_due = self._monotonic()
            delay = next_due - self._monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            started = self._monotonic()
            try:
                readings = await self.poll_once()
            except NotOwnerError:
                continue  # the lease went during this poll: its values are not sent, the other hub polls now
            raise_if_cancelling()
            if readings:
                result = emit(readings)
                if inspect.isawaitable(result):
                    await result
            if self.online:
                self._backoff.reset()
                next_due += self.device.interval
            else:
                next_due = started + self._backoff.next()
            next_due = max(next_due, self._monotonic())

    async def _wait_for_lease(self, leases: BusLeases) -> None:
        """While another hub owns the bus: nothing is polled or sent, and what this hub knew of the device is
        forgotten (the other hub reports it meanwhile); the first poll after takes it up again."""
        self.online = None
        self._failing_reads.clear()
        self._backoff.reset()
        log.debug("modbus device waits for its bus's lease device=%s bus=%s", self.name, self.device.bus)
        await leases.wait_held(self.device.bus)

    async def poll_once(self) -> list[Reading]:
        """One poll of every read in the plan; updates online state; returns the Readings to store."""
        self.stats.polls += 1
        self.stats.poll_starts.append(self._monotonic())
        ts = self._wall_ms()
        attempts = 1 + (self.retries if self.online is not False else 0)
        out: list[Reading] = []
        answered = False
        for index, read in enumerate(self.reads):
            try:
                values = await self._read(read, attempts)
                good, bad = plan.decode(read, values)
            except NoResponseError as exc:
                if not answered:
                    self.stats.failed += 1
                    return self._went_offline(ts, str(exc))
                for rest in range(index, len(self.reads)):
                    out.extend(self._stale(rest, ts, f"no response: {exc}"))
                break
            except (DeviceError, BadResponseError, ProtocolError) as exc:
                answered = True
                out.extend(self._stale(index, ts, str(exc)))
                continue
            answered = True
            if index in self._failing_reads:
                self._failing_reads.discard(index)
                log.info("modbus read recovered device=%s table=%s address=%d", self.name, read.table, read.address)
            for missing, why in bad:
                log.debug("modbus value not available device=%s register=%s why=%s", self.name, missing.name, why)
            for reg, value in good:
                self.cache[reg.name] = value
                out.append(self._reading(reg, value, catalogue.check(reg.quantity, value), ts))
        self.stats.answered += 1
        return self._came_online(ts) + out

    async def _read(self, read: plan.Read, attempts: int) -> list[int]:
        unit = self.device.unit
        for attempt in range(attempts):
            self.stats.attempts += 1
            try:
                return await self.arbiter.read(unit, read.table, read.address, read.count, POLL)
            except NoResponseError:
                self.stats.timeouts += 1
                if attempt + 1 == attempts:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _reading(self, reg: Register, value: float, quality: str, ts: int) -> Reading:
        domain = catalogue.domain(reg.quantity)
        return Reading(domain, self.site, self.name, reg.sensor, quality, reg.quantity, value, ts)

    def _stale(self, index: int, ts: int, why: str) -> list[Reading]:
        read = self.reads[index]
        if index not in self._failing_reads:
            self._failing_reads.add(index)
            log.warning(
                "modbus read failing device=%s table=%s address=%d count=%d error=%s (values marked stale)",
                self.name, read.table, read.address, read.count, why,
            )
        return [
            self._reading(reg, self.cache[reg.name], catalogue.STALE, ts)
            for reg in read.registers
            if reg.name in self.cache
        ]

    def _status(self, ts: int, online: bool, error: str = "") -> list[Reading]:
        fields: list[tuple[str, float | str]] = [("state", "online" if online else "offline"),
                                                 ("online", 1.0 if online else 0.0)]
        if error:
            fields.append(("error", error.replace("\n", " ")[:200]))
        return [Reading(DEVICE_STATUS, self.site, self.name, STATUS_SENSOR, catalogue.OK, f, v, ts) for f, v in fields]

    def _went_offline(self, ts: int, why: str) -> list[Reading]:
        if self.online is False:
            return []
        was_unknown = self.online is None
        self.online = False
        self._offline_since = self._monotonic()
        log.warning(
            "modbus device offline device=%s bus=%s unit=%d error=%s (polling every %.4g..%.4g s until it answers)",
            self.name, self.device.bus, self.device.unit, why, self.device.interval, self.device.offline_interval,
        )
        out = self._status(ts, online=False, error=why)
        if not was_unknown:
            out.extend(
                self._reading(reg, self.cache[reg.name], catalogue.LOST, ts)
                for reg in self.device.profile.registers
                if reg.name in self.cache
            )
        return out

    def _came_online(self, ts: int) -> list[Reading]:
        if self.online:
            return []
        if self.online is False:
            log.info(
                "modbus device back online device=%s bus=%s unit=%d after=%.1fs",
                self.name, self.device.bus, self.device.unit, self._monotonic() - self._offline_since,
            )
        else:
            log.info("modbus device online device=%s bus=%s unit=%d", self.name, self.device.bus, self.device.unit)
        self.online = True
        return self._status(ts, online=True)

    async def write(self, register: str, value: float) -> float:
        """Write `value` to a writable register, read it back, and return the value the device holds."""
        reg = self._writable(register)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise WriteRefusedError(f"{self.name}.{register}: value must be a finite number, got {value!r}")
        if reg.minimum is not None and value < reg.minimum:
            raise WriteRefusedError(f"{self.name}.{register}: {value:g} below min {reg.minimum:g}")
        if reg.maximum is not None and value > reg.maximum:
            raise WriteRefusedError(f"{self.name}.{register}: {value:g} above max {reg.maximum:g}")
        try:
            words = registers.encode(value, reg.type, reg.order, reg.scale)
        except ProtocolError as exc:
            raise WriteRefusedError(f"{self.name}.{register}: {exc.problem}") from None
        expected = registers.decode(words, reg.type, reg.order, reg.scale)
        self._usable(register)
        unit = self.device.unit

        async def op(t: Transport) -> list[int]:
            await t.write(unit, reg.address, words)
            return await t.read(unit, reg.table, reg.address, reg.size)

        try:
            back = await self.arbiter.submit(op, WRITE)
        except NotOwnerError as exc:
            raise BusNotHeldError(f"{self.name}.{register}: {exc}") from None
        try:
            confirmed = registers.decode(back, reg.type, reg.order, reg.scale)
        except ProtocolError as exc:
            raise BadResponseError(f"read-back of {register}: {exc}") from None
        if not math.isclose(confirmed, expected, rel_tol=1e-6, abs_tol=1e-9):
            log.warning("modbus write not confirmed device=%s register=%s wrote=%g read=%g",
                        self.name, register, expected, confirmed)
            raise WriteNotConfirmedError(expected, confirmed)
        self.cache[reg.name] = confirmed
        log.info("modbus write device=%s register=%s value=%g confirmed=%g", self.name, register, value, confirmed)
        return confirmed

    def _usable(self, register: str) -> None:
        """Raise unless the bus can take a write now: its lease held here (if leased) and its arbiter running."""
        if self.leases is not None and not self.leases.held(self.device.bus):
            raise BusNotHeldError(f"{self.name}.{register}: {NotOwnerError(self.device.bus)}")
        if not self.arbiter.running:
            raise NoResponseError(f"bus {self.device.bus} is not running (start ModbusService.run first)")

    def _writable(self, register: str) -> Register:
        try:
            reg = self.device.profile.register(register)
        except KeyError:
            profile = self.device.profile.name
            raise WriteRefusedError(f"{self.name}: profile {profile} has no register {register!r}") from None
        if not reg.writable:
            raise WriteRefusedError(f"{self.name}.{register}: not writable in profile {self.device.profile.name}")
        return reg


class ModbusService:
    """Every configured bus and device: `run(emit)` polls, `write(...)` sets a register.

    `transports` replaces the pymodbus transport of named buses (tests and simulations use it);
    `wall_ms` is the clock stamped on Readings (ms since the epoch; Modbus devices carry no time);
    `leases` (with [cluster]) limits polls and writes to the buses whose lease this hub holds.
    """

    def __init__(
        self,
        config: ModbusConfig,
        site: str,
        *,
        transports: Mapping[str, Transport] | None = None,
        wall_ms: Callable[[], int] | None = None,
        leases: BusLeases | None = None,
    ) -> None:
        self.config = config
        self.leases = leases
        self.site = site
        self.arbiters: dict[str, BusArbiter] = {}
        for bus in config.buses:
            transport = (transports or {}).get(bus.name) or PymodbusTransport(bus)
            silent = 0.0
            if bus.transport == RTU:
                silent = silence_us(bus.baudrate, bus.parity, bus.stopbits, bus.bytesize) / 1e6
            self.arbiters[bus.name] = BusArbiter(bus.name, transport, timeout=bus.timeout, silent=silent)
        self.pollers: dict[str, DevicePoller] = {}
        for dev in config.devices:
            bus = config.bus(dev.bus)
            retries = dev.retries if dev.retries is not None else bus.retries
            self.pollers[dev.name] = DevicePoller(site, dev, self.arbiters[dev.bus], retries, wall_ms=wall_ms)
        if leases is not None:
            for name, arbiter in self.arbiters.items():
                arbiter.owner = functools.partial(leases.held, name)
            for poller in self.pollers.values():
                poller.leases = leases
            leases.listeners.append(self._lease_changed)

    def _lease_changed(self, bus: str, held: bool) -> None:
        arbiter = self.arbiters.get(bus)
        if arbiter is not None and not held:
            arbiter.release()

    async def run(self, emit: Callable[[list[Reading]], Awaitable[None] | None]) -> None:
        """Poll every device until cancelled (then every bus is closed)."""
        log.info("modbus starting buses=%d devices=%d leases=%s", len(self.arbiters), len(self.pollers),
                 "on" if self.leases is not None else "off")
        if self.leases is not None:
            self.leases.start()
        try:
            async with asyncio.TaskGroup() as group:
                for name, arbiter in self.arbiters.items():
                    group.create_task(arbiter.run(), name=f"modbus.bus[{name}]")
                for name, poller in self.pollers.items():
                    group.create_task(poller.run(emit), name=f"modbus.poll[{name}]")
        finally:
            if self.leases is not None:
                await self.leases.stop()  # the buses go to the other hubs at once

    def fields(self) -> dict[str, float]:
        """Self-metrics for the hub's `qala_hub` snapshot: the leases' (none without leases)."""
        return self.leases.fields() if self.leases is not None else {}

    async def write(self, device: str, register: str, value: float) -> float:
        """Write a setpoint ahead of the bus's polls and return the value read back from the device.

        Raises WriteRefusedError before anything is sent (unknown device/register, not writable, outside the
        profile's min/max), NoResponseError/DeviceError/BadResponseError on the bus, WriteNotConfirmedError when the
        read-back differs.
        """
        poller = self.pollers.get(device)
        if poller is None:
            raise WriteRefusedError(f"no Modbus device {device!r}")
        return await poller.write(register, value)
