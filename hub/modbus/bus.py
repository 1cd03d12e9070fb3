"""One arbiter per physical bus: every transaction on a bus, poll or write, goes through its queue.

`BusArbiter` runs one transaction at a time from a priority queue, writes ahead of polls (FIFO within a
priority), so several pollers and the control path never talk over each other on one serial line
(telegraf#7523, node-red-contrib-modbus#125). On RTU it keeps the line silent for t3.5 (3.5 character
times; 1.75 ms above 19200 baud, Modbus over serial line spec 2.5.1.1) after every transaction. A failed
transaction fails only its own job: the caller decides about retries and queues them again behind the
other devices' jobs, so a dead device costs the bus one timeout per attempt and cannot starve the rest.
The poller gives it t3.5 from protocols.modbus_framing.silence_us, the serial line's one timing rule.

`PymodbusTransport` is the only code in the hub that touches pymodbus. pymodbus's own retries are off
(`retries=0`) and its auto-reconnect too (`reconnect_delay=0`): timeouts, retries and reconnects are the
arbiter's and the poller's, explicit and tested. Its results become this module's exceptions (raised,
never returned): NoResponseError (timeout, connection lost, garbled frame), DeviceError (an exception
response, with its code), BadResponseError (an answer that does not fit the request).

Imports asyncio, pymodbus and hub.modbus.config; knows nothing about profiles or Readings.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from hub.modbus.config import RTU, BusConfig
from protocols.modbus import EXCEPTION_NAMES

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

WRITE = 0
POLL = 1
T = TypeVar("T")


class BusError(Exception):
    """A transaction failed."""


class NoResponseError(BusError):
    """No usable answer: timeout, no connection, or a frame that could not be decoded."""


class BadResponseError(BusError):
    """An answer that does not match the request (wrong count, wrong function)."""


class NotOwnerError(BusError):
    """Another hub of the site holds the bus's lease (hub.modbus.lease): this hub must not use the bus."""

    def __init__(self, bus: str) -> None:
        self.bus = bus
        super().__init__(f"bus {bus} is owned by another hub of the site (this hub does not hold its lease); "
                         "send the write through the hub that polls it, or retry once this hub holds the bus")


class DeviceError(BusError):
    """The device answered with a Modbus exception response."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"exception {code:02d} ({EXCEPTION_NAMES.get(code, 'unknown exception')})")


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that asyncio.wait_for swallowed.

    On Python 3.11, wait_for returns the inner result when the inner awaitable finishes in the same loop
    iteration as the outer task is cancelled (CPython gh-86296), so a loop around it would never stop.
    The task still counts the request in `cancelling()`; loops call this after each wait_for.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Transport(Protocol):
    """What the arbiter drives: one Modbus client connection. Raises this module's exceptions."""

    async def connect(self) -> None: ...

    async def read(self, unit: int, table: str, address: int, count: int) -> list[int]: ...

    async def write(self, unit: int, address: int, values: list[int]) -> None: ...

    def close(self) -> None: ...


class PymodbusTransport:
    """A pymodbus async client (TCP, or RTU over pyserial) behind the Transport protocol."""

    def __init__(self, bus: BusConfig) -> None:
        from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient  # noqa: PLC0415

        self.bus = bus
        self._client: Any
        if bus.transport == RTU:
            self._client = AsyncModbusSerialClient(
                str(bus.port), baudrate=bus.baudrate, bytesize=bus.bytesize, parity=bus.parity,
                stopbits=bus.stopbits, timeout=bus.timeout, retries=0, reconnect_delay=0, name=bus.name,
            )
        else:
            self._client = AsyncModbusTcpClient(
                bus.host, port=int(bus.port), timeout=bus.timeout, retries=0, reconnect_delay=0, name=bus.name,
            )
        # pymodbus closes a TCP connection after `retries + 3` timeouts in a row; one dead unit behind a
        # gateway must not cut the others off, so that is left to the arbiter (it reconnects on demand).
        self._client.set_max_no_responses(1_000_000)

    async def connect(self) -> None:
        if self._client.connected:
            return
        if not await self._client.connect():
            raise NoResponseError(f"cannot connect to {self._where()}: {self._why()}")

    def _where(self) -> str:
        return str(self.bus.port) if self.bus.transport == RTU else f"{self.bus.host}:{self.bus.port}"

    def _why(self) -> str:
        """The likely cause of a failed connect (pymodbus says only that it failed)."""
        if self.bus.transport != RTU:
            return "refused or no answer (is the device or gateway on, and the port right?)"
        port = str(self.bus.port)
        if not os.path.exists(port):  # noqa: PTH110 - a device path, as pyserial takes it
            return "no such serial port (is the adapter plugged in? see ls /dev/serial/by-id)"
        if not os.access(port, os.R_OK | os.W_OK):
            return "no permission to open it (add the hub's user to the dialout group)"
        return "it would not open (in use by another program, or not a serial port)"

    async def read(self, unit: int, table: str, address: int, count: int) -> list[int]:
        method = self._client.read_input_registers if table == "input" else self._client.read_holding_registers
        response = await self._call(method(address, count=count, device_id=unit))
        values = list(getattr(response, "registers", None) or [])
        if len(values) != count:
            raise BadResponseError(f"asked for {count} registers, got {len(values)}")
        return values

    async def write(self, unit: int, address: int, values: list[int]) -> None:
        if len(values) == 1:
            await self._call(self._client.write_register(address, values[0], device_id=unit))
        else:
            await self._call(self._client.write_registers(address, values, device_id=unit))

    async def _call(self, pending: Awaitable[Any]) -> Any:
        from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException  # noqa: PLC0415

        try:
            response = await pending
        except (ModbusIOException, ConnectionException) as exc:
            raise NoResponseError(str(exc).strip() or type(exc).__name__) from None
        except ModbusException as exc:
            raise BadResponseError(str(exc).strip()) from None
        if response is None:
            raise NoResponseError("no response")
        if response.isError():
            code = getattr(response, "exception_code", 0)
            raise DeviceError(int(code))
        return response

    def close(self) -> None:
        self._client.close()


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    op: Callable[[Transport], Awaitable[Any]] = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)


@dataclass
class BusStats:
    transactions: int = 0
    failures: int = 0
    writes: int = 0
    busy_seconds: float = 0.0


class BusArbiter:
    """The one owner of a bus: `submit` queues a transaction, `run` executes them one at a time.

    `guard` bounds a transaction that the transport itself fails to time out; `reconnect_min/max` pace
    connection attempts (between attempts queued jobs fail at once with NoResponseError instead of waiting).
    `owner`, when set, is asked before every transaction whether this hub may use the bus (its lease): when it
    may not, the job fails with NotOwnerError and nothing is sent.
    """

    def __init__(
        self,
        name: str,
        transport: Transport,
        *,
        timeout: float,
        silent: float = 0.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.transport = transport
        self.silent = silent
        self.guard = 2 * timeout + 0.5
        self.stats = BusStats()
        self._queue: asyncio.PriorityQueue[_Job] = asyncio.PriorityQueue()
        self._seq = itertools.count()
        self._clock = clock
        self._reconnect_min = reconnect_min
        self._reconnect_max = reconnect_max
        self._reconnect_delay = reconnect_min
        self._next_connect = 0.0
        self._connect_error = ""
        """Why the last connect failed: repeated while the next attempt waits."""
        self._running = False
        self._busy = False
        self._release = False
        self.owner: Callable[[], bool] | None = None

    @property
    def running(self) -> bool:
        return self._running

    async def submit(self, op: Callable[[Transport], Awaitable[T]], priority: int = POLL) -> T:
        """Queue `op` and wait for its outcome; cancelling the wait drops a job that has not started."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(priority, next(self._seq), op, future))
        return await future

    async def read(self, unit: int, table: str, address: int, count: int, priority: int = POLL) -> list[int]:
        async def op(t: Transport) -> list[int]:
            return await t.read(unit, table, address, count)

        return await self.submit(op, priority)

    async def run(self) -> None:
        """Execute queued transactions until cancelled; closes the transport on the way out."""
        self._running = True
        try:
            while True:
                job = await self._queue.get()
                if job.future.done():  # the waiter gave up before its turn
                    continue
                await self._execute(job)
                raise_if_cancelling()
        finally:
            self._running = False
            self.transport.close()
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if not job.future.done():
                    job.future.set_exception(NoResponseError(f"bus {self.name} stopped"))

    def release(self) -> None:
        """Close the connection (another hub is taking the bus: a gateway may take one client only); after the
        transaction in progress, if any. The next job this hub may run connects again."""
        if self._busy:
            self._release = True
        else:
            self.transport.close()

    async def _execute(self, job: _Job) -> None:
        if self.owner is not None and not self.owner():
            job.future.set_exception(NotOwnerError(self.name))
            return
        started = self._clock()
        self._busy = True
        try:
            await self._ensure_connected()
            result = await asyncio.wait_for(job.op(self.transport), self.guard)
        except TimeoutError:
            self._fail(job, NoResponseError("transaction timed out (guard)"))
        except BusError as exc:
            self._fail(job, exc)
        except asyncio.CancelledError:
            job.future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - a library bug must fail one job, never the bus
            log.debug("bus transaction raised bus=%s error=%r", self.name, exc)
            self._reset()
            self._fail(job, NoResponseError(f"transport error: {type(exc).__name__}: {exc}"))
        else:
            self.stats.transactions += 1
            if not job.future.done():
                job.future.set_result(result)
        finally:
            self.stats.busy_seconds += self._clock() - started
            self._busy = False
            if self._release:
                self._release = False
                self.transport.close()
        if self.silent:
            await asyncio.sleep(self.silent)

    def _fail(self, job: _Job, exc: BusError) -> None:
        self.stats.transactions += 1
        self.stats.failures += 1
        if not job.future.done():
            job.future.set_exception(exc)

    async def _ensure_connected(self) -> None:
        """Connect if the transport is not connected (a no-op when it is), pacing failed attempts."""
        now = self._clock()
        if now < self._next_connect:
            raise NoResponseError(f"bus {self.name} not connected: {self._connect_error} (next attempt in "
                                  f"{self._next_connect - now:.1f} s)")
        try:
            await asyncio.wait_for(self.transport.connect(), self.guard)
        except (NoResponseError, TimeoutError, OSError) as exc:
            self._next_connect = now + self._reconnect_delay
            self._reconnect_delay = min(self._reconnect_max, self._reconnect_delay * 2)
            self._connect_error = str(exc) or "connect timed out"
            raise NoResponseError(self._connect_error) from None
        self._reconnect_delay = self._reconnect_min

    def _reset(self) -> None:
        """Drop the connection after an unexpected transport error; the next job reconnects."""
        self.transport.close()
