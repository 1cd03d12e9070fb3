"""Bus leases without a broker: LeaseBook's transitions and deadline, Leases.held against a clock, and the
poller and writes gated by a lease (an in-memory stand-in for hub.modbus.lease.Leases)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from hub.config import ClusterConfig, MqttConfig
from hub.modbus import config
from hub.modbus.lease import LeaseBook, Leases, lease_queue
from hub.modbus.poller import BusNotHeldError, ModbusService, WriteRefusedError
from simulators.modbus_devices import SimulatedDevice
from tests.modbus.conftest import FakeTransport, builtin

if TYPE_CHECKING:
    from collections.abc import Callable

NOW_MS = 1_795_553_687_000


# ------------------------------------------------------------------------------------------ the book

def test_book_takes_refuses_and_retries() -> None:
    book = LeaseBook(["a", "b"], retry=3.0, deadline=5.0)
    assert book.due(0.0) == ["a", "b"]
    assert book.took("a", sent=0.0)
    assert not book.took("a", sent=0.5)  # taken again on the same connection: no change
    book.refused("b", now=1.0)
    assert book.due(2.0) == []
    assert book.due(4.0) == ["b"]
    assert book.holds("a", 1.0)
    assert not book.holds("b", 1.0)


def test_book_counts_leases_only_until_the_deadline_after_the_last_round_trip_sent() -> None:
    book = LeaseBook(["a"], retry=1.0, deadline=5.0)
    book.took("a", sent=10.0)
    assert book.holds("a", 14.9)
    assert not book.holds("a", 15.0)  # no confirmed round trip for 5 s: no longer counts
    book.confirm(12.0)  # a probe sent at 12 s came back
    assert book.holds("a", 16.9)
    book.confirm(11.0)  # an older probe answered late: the deadline never moves back
    assert not book.holds("a", 17.0)
    assert book.expire(16.0) == []
    assert book.expire(17.0) == ["a"]
    assert book.held == set()
    assert book.due(17.0) == ["a"]  # tried again as soon as a connection is back


def test_book_drops_everything_at_once_and_forgets_the_confirmation() -> None:
    book = LeaseBook(["a", "b", "c"], retry=1.0, deadline=5.0)
    book.took("a", sent=0.0)
    book.took("c", sent=0.1)
    book.refused("b", now=0.2)
    assert book.drop_all(now=0.3) == ["a", "c"]
    assert not book.valid(0.3)
    assert book.due(0.3) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="positive"):
        LeaseBook(["a"], retry=0.0, deadline=1.0)


def test_lease_queue_names_the_site_and_the_bus() -> None:
    assert lease_queue("ast-01", "rs485-1") == "qala.ast-01.lease.rs485-1"


# ------------------------------------------------------------------------------ Leases, no connection

def _leases(clock: Callable[[], float], heartbeat: int = 4) -> Leases:
    cluster = ClusterConfig(nodes=(("127.0.0.1", 1),), heartbeat=heartbeat)
    login = MqttConfig(host="", client_id="hub-a")
    return Leases(cluster, login, "ast-01", "a", ["bus", "other"], retry=1.0, clock=clock)


async def test_leases_held_follows_the_clock_even_before_the_watchdog_runs() -> None:
    now = [100.0]
    leases = _leases(lambda: now[0], heartbeat=4)  # probe every 1 s, deadline 2 s
    assert leases.interval == 1.0
    assert leases.book.deadline == 2.0
    seen: list[tuple[str, bool]] = []
    leases.listeners.append(lambda bus, held: seen.append((bus, held)))
    leases.book.took("bus", sent=100.0)
    leases._notify("bus", held=True)  # what a successful declare does
    assert leases.held("bus")
    assert leases.fields()["leases_held"] == 1.0
    now[0] = 102.0  # the loop stalled (a stopped process): the lease no longer counts
    assert not leases.held("bus")
    assert leases.holding() == frozenset()
    leases._drop("test")  # what the watchdog or a lost connection does
    assert seen == [("bus", True), ("bus", False)]
    assert leases.lost == 1


async def test_wait_held_returns_once_the_lease_is_taken() -> None:
    now = [0.0]
    leases = _leases(lambda: now[0])
    waiter = asyncio.create_task(leases.wait_held("bus"))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    leases.book.took("bus", sent=0.0)
    leases._notify("bus", held=True)
    await asyncio.wait_for(waiter, 1.0)


# --------------------------------------------------------------------------- the poller behind a lease

class FakeLeases:
    """BusLeases in memory: the test grants and takes back buses."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[str, bool], None]] = []
        self.owned: set[str] = set()
        self._events: dict[str, asyncio.Event] = {}
        self.started = self.stopped = False

    def _event(self, bus: str) -> asyncio.Event:
        return self._events.setdefault(bus, asyncio.Event())

    def held(self, bus: str) -> bool:
        return bus in self.owned

    async def wait_held(self, bus: str) -> None:
        while bus not in self.owned:
            await self._event(bus).wait()

    def set(self, bus: str, held: bool) -> None:
        (self.owned.add if held else self.owned.discard)(bus)
        event = self._event(bus)
        event.set() if held else event.clear()
        for listener in self.listeners:
            listener(bus, held)

    def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def fields(self) -> dict[str, float]:
        return {"leases_held": float(len(self.owned))}


def _service(transport: FakeTransport, leases: FakeLeases, **dev: Any) -> ModbusService:
    cfg = config.parse({
        "buses": {"bus": {"transport": "tcp", "host": "127.0.0.1", "timeout": 0.05, "retries": 0}},
        "devices": {"b1": {"bus": "bus", "unit": 1, "profile": "qala_board", **dev}},
    })
    return ModbusService(cfg, "ast-01", transports={"bus": transport}, wall_ms=lambda: NOW_MS, leases=leases)


async def test_a_bus_is_polled_only_while_its_lease_is_held() -> None:
    board = SimulatedDevice(builtin("qala_board"))
    transport = FakeTransport({1: board})
    leases = FakeLeases()
    svc = _service(transport, leases, interval=0.05)
    batches: list[int] = []
    task = asyncio.create_task(svc.run(lambda readings: batches.append(len(readings))))
    await asyncio.sleep(0.2)
    assert leases.started
    assert transport.log == []  # another hub holds it: nothing on the wire, no Readings, no status
    assert batches == []
    leases.set("bus", held=True)
    await asyncio.sleep(0.2)
    assert len(batches) >= 2
    polls = len(transport.log)
    closed = transport.closed
    leases.set("bus", held=False)
    assert transport.closed == closed + 1  # the connection goes at once: a gateway may take one client only
    await asyncio.sleep(0.2)
    assert len(transport.log) <= polls + 1  # at most the transaction already under way
    assert svc.pollers["b1"].online is None  # what this hub knew is forgotten while another hub polls
    assert svc.fields() == {"leases_held": 0.0}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leases.stopped


async def test_a_write_to_a_bus_another_hub_owns_is_refused_naming_the_bus() -> None:
    board = SimulatedDevice(builtin("qala_board"))
    transport = FakeTransport({1: board})
    leases = FakeLeases()
    svc = _service(transport, leases, interval=10)
    task = asyncio.create_task(svc.run(lambda _readings: None))
    await asyncio.sleep(0.05)
    with pytest.raises(BusNotHeldError, match="bus bus is owned by another hub") as refused:
        await svc.write("b1", "actuator1", 42.0)
    assert isinstance(refused.value, WriteRefusedError)  # the control service records it as a refusal
    assert [op for op, _, _ in transport.log].count("write") == 0
    leases.set("bus", held=True)
    assert await svc.write("b1", "actuator1", 42.0) == 42.0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_arbiter_refuses_transactions_once_the_lease_is_gone() -> None:
    board = SimulatedDevice(builtin("qala_board"))
    transport = FakeTransport({1: board}, delay=0.05)
    leases = FakeLeases()
    leases.set("bus", held=True)
    svc = _service(transport, leases, interval=10)
    arbiter = svc.arbiters["bus"]
    runner = asyncio.create_task(arbiter.run())
    first = asyncio.create_task(arbiter.read(1, "input", 0, 1))
    await asyncio.sleep(0.01)
    queued = asyncio.create_task(svc.write("b1", "actuator1", 7.0))
    await asyncio.sleep(0.01)  # the read is on the wire, the write waits in the queue
    leases.set("bus", held=False)
    assert await first == [board.registers("input", 0, 1)[0]]  # a transaction under way finishes
    with pytest.raises(BusNotHeldError, match="bus bus is owned by another hub"):
        await queued
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
