"""Bus leases: which hub of a site polls which Modbus bus, decided by a RabbitMQ cluster (docs/scale.md, item 4).

A lease is an AMQP *exclusive* queue, `qala.{site}.lease.{bus}`: only the connection that declared it may use
it, RabbitMQ deletes it when that connection closes, and another connection's declare is refused with
RESOURCE_LOCKED (405), which closes the declaring channel. `Leases` keeps one connection of its own to the
cluster (the nodes in turn, jittered backoff, TLS and login as hub.ingest.amqp's), tries each wanted lease on a
channel of its own (a refusal closes it), holds what it got and tries the others again every `retry` seconds.

The broker gives a bus to another hub only once it considers the holder's connection dead: at once when the
socket closes (the process died), after its heartbeat timeout (one to two `cluster.heartbeat` periods of
silence) when the network hangs. So a hub must stop polling before that: every lease counts as held only while
the last round trip to the broker (a passive declare of a held lease queue, every `heartbeat/4` s) was sent
less than `heartbeat/2` s ago. `held(bus)` checks that against the clock each time it is asked, so a hub
whose loop stalled (a stopped process, a blocked loop) finds its leases gone when it runs again, and a lost
connection, a failed or slow round trip drop every lease locally at once and start a new connection.

LeaseBook is that bookkeeping without I/O (the transitions, the deadline, the retry times); Leases is the
asyncio/aio-pika adapter around it. Listeners (`listeners`, `changed`, `wait_held`) learn each change.

Imports aio-pika, hub.backoff and hub.ingest.amqp's connect helpers; knows nothing of Modbus (a bus is a name),
payloads or the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq.exceptions

from hub.backoff import Backoff
from hub.ingest.amqp import (
    CONNECT_TIMEOUT,
    cancelled,
    close_quietly,
    connect_failure,
    connect_kwargs,
    keep_connecting,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from aio_pika.abc import AbstractChannel, AbstractConnection

    from hub.config import ClusterConfig, MqttConfig

log = logging.getLogger(__name__)

RETRY = 3.0
"""Default seconds between two attempts at a lease another hub holds."""


def lease_queue(site: str, bus: str) -> str:
    return f"qala.{site}.lease.{bus}"


class LeaseBook:
    """Which leases are held, until when they count, and when to try the others again. No I/O, no asyncio.

    `deadline`: seconds after the last confirmed round trip was *sent* during which the held leases count;
    past it `valid` is False and `held` empties at the next `expire`. Times are the caller's monotonic clock.
    """

    def __init__(self, buses: Iterable[str], retry: float, deadline: float) -> None:
        if retry <= 0 or deadline <= 0:
            raise ValueError(f"lease retry and deadline must be positive, got {retry}, {deadline}")
        self.buses = tuple(dict.fromkeys(buses))
        self.retry = retry
        self.deadline = deadline
        self.held: set[str] = set()
        self.confirmed = float("-inf")
        """When the last round trip that succeeded was sent (a take or a probe)."""
        self._next: dict[str, float] = dict.fromkeys(self.buses, float("-inf"))

    def valid(self, now: float) -> bool:
        return now - self.confirmed < self.deadline

    def holds(self, bus: str, now: float) -> bool:
        return bus in self.held and self.valid(now)

    def due(self, now: float) -> list[str]:
        """The leases to try now: not held, and their retry time reached."""
        return [b for b in self.buses if b not in self.held and self._next[b] <= now]

    def took(self, bus: str, sent: float) -> bool:
        """The declare sent at `sent` succeeded; True if the lease is new."""
        self.confirm(sent)
        if bus in self.held:
            return False
        self.held.add(bus)
        return True

    def refused(self, bus: str, now: float) -> None:
        """Another hub holds it (or the attempt failed): try again after `retry`."""
        self._next[bus] = now + self.retry

    def confirm(self, sent: float) -> None:
        self.confirmed = max(self.confirmed, sent)

    def expire(self, now: float) -> list[str]:
        """Drop every lease if the deadline passed; the buses dropped."""
        return [] if self.valid(now) else self.drop_all(now)

    def drop_all(self, now: float) -> list[str]:
        """Every held lease given up at once (the connection is lost or cannot be trusted); all are tried
        again as soon as a connection is back."""
        dropped = sorted(self.held)
        self.held.clear()
        self.confirmed = float("-inf")
        for bus in self.buses:
            self._next[bus] = now
        return dropped


class LeaseLostError(Exception):
    """The round trips stopped confirming the leases: the session ends, and with it every lease."""


class Leases:
    """This hub's leases on `buses`, over its own connection to the cluster.

    `held(bus)` says whether the hub may use a bus now; `wait_held(bus)` waits until it may; `listeners` are
    called `(bus, held)` at each change and `changed` is set (cleared by whoever waits on it). `start()` from the
    running loop, `stop()` to release everything (the connection is closed: other hubs take the buses at once).
    """

    def __init__(
        self,
        cluster: ClusterConfig,
        login: MqttConfig,
        site: str,
        hub: str,
        buses: Iterable[str],
        *,
        retry: float = RETRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = cluster
        self.login = login
        self.site = site
        self.hub = hub
        heartbeat = float(cluster.heartbeat)
        self.interval = heartbeat / 4
        """Seconds between round trips while a lease is held."""
        self.book = LeaseBook(buses, retry, deadline=heartbeat / 2)
        self.node: tuple[str, int] | None = None
        self.listeners: list[Callable[[str, bool], None]] = []
        self.changed = asyncio.Event()
        self.taken = 0
        self.lost = 0
        """Leases taken and lost since the start (self-metrics)."""
        self._clock = clock
        self._ssl = ssl.create_default_context(cafile=login.ca_file) if login.tls else None
        self._backoff = Backoff(login.reconnect_min, login.reconnect_max)
        self._next = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: AbstractConnection | None = None
        self._events = {bus: asyncio.Event() for bus in self.book.buses}
        """Per bus: set while its lease is held (what `wait_held` waits on)."""
        self._outage_logged = False

    # ----------------------------------------------------------------------------------------- state

    def held(self, bus: str) -> bool:
        """Whether this hub holds `bus`'s lease now (False once the last round trip is too old, even if the
        loop has not noticed yet)."""
        return self.book.holds(bus, self._clock())

    def holding(self) -> frozenset[str]:
        now = self._clock()
        return frozenset(b for b in self.book.held if self.book.holds(b, now))

    def fields(self) -> dict[str, float]:
        """Self-metrics: leases held now, wanted, and taken and lost since the start."""
        return {"leases_held": float(len(self.holding())), "leases_wanted": float(len(self.book.buses)),
                "leases_taken": float(self.taken), "leases_lost": float(self.lost)}

    async def wait_held(self, bus: str) -> None:
        """Until this hub holds `bus` (KeyError for a bus it does not lease)."""
        event = self._events[bus]
        while not self.held(bus):
            if event.is_set():  # held in the book but past its deadline: the watchdog drops it shortly
                await asyncio.sleep(self.book.deadline / 10)
            else:
                await event.wait()

    def _notify(self, bus: str, held: bool) -> None:
        self.changed.set()
        if held:
            self._events[bus].set()
        else:
            self._events[bus].clear()
        for listener in list(self.listeners):
            try:
                listener(bus, held)
            except Exception:  # a listener's bug must not keep the others (or the lease loop) from running
                log.exception("lease: listener failed bus=%s held=%s", bus, held)

    def _drop(self, why: str) -> None:
        dropped = self.book.drop_all(self._clock())
        node = f"{self.node[0]}:{self.node[1]}" if self.node else "-"
        for bus in dropped:
            self.lost += 1
            log.warning("lease lost bus=%s node=%s hub=%s why=%s (stops polling it; another hub of the site takes "
                        "it)", bus, node, self.hub, why)
            self._notify(bus, held=False)

    # ------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        log.info("lease: connecting buses=%s nodes=%s hub=%s retry=%gs deadline=%gs", ",".join(self.book.buses),
                 ",".join(f"{h}:{p}" for h, p in self.cluster.nodes), self.hub, self.book.retry, self.book.deadline)
        self._task = asyncio.create_task(self._run(), name="qala-hub.leases")

    async def stop(self) -> None:
        """Give every lease up and close the connection (the broker hands the buses over at once)."""
        self._stop.set()
        self._drop("hub stopping")
        await cancelled(self._task)
        await self._close()

    async def _run(self) -> None:
        await keep_connecting(self._session, self._recover, self._backoff, self._stop, log, "lease")

    async def _recover(self) -> None:
        self._drop("unexpected error")
        await self._close()

    async def _session(self) -> None:
        node = self.cluster.nodes[self._next % len(self.cluster.nodes)]
        self._next += 1
        lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        try:
            connection = await self._connect(node, lost)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure to connect is reported the same way
            await self._close()
            why = connect_failure(exc)
            if not self._outage_logged:
                log.warning("lease: cannot connect to %s:%d: %s; trying the next node", node[0], node[1], why)
                self._outage_logged = True
            else:
                log.info("lease: cannot connect to %s:%d: %s", node[0], node[1], why)
            await asyncio.sleep(self._backoff.next())
            return
        self._backoff.reset()
        self._outage_logged = False
        self.node = node
        log.info("lease: connected node=%s:%d hub=%s", node[0], node[1], self.hub)
        why = await self._hold(connection, lost)
        self._drop(why)
        await self._close()
        self.node = None
        if not self._stop.is_set():
            log.warning("lease: connection to %s:%d ended (%s); every lease dropped, reconnecting", node[0], node[1],
                        why)
            await asyncio.sleep(self._backoff.next())

    async def _connect(self, node: tuple[str, int], lost: asyncio.Future[str]) -> AbstractConnection:
        kwargs = connect_kwargs(self.cluster, self.login, node, self._ssl, f"{self.login.client_id}.leases")
        async with asyncio.timeout(CONNECT_TIMEOUT * 2):
            connection: AbstractConnection = await aio_pika.connect(**kwargs)
            self._connection = connection

        def closed(_sender: object, exc: BaseException | None = None) -> None:
            if not lost.done():
                lost.set_result(connect_failure(exc) if exc is not None else "connection closed")
            self._drop("connection lost")  # at once, not after the session's tasks wind down

        connection.close_callbacks.add(closed)
        return connection

    async def _hold(self, connection: AbstractConnection, lost: asyncio.Future[str]) -> str:
        """Take, probe and watch until the connection is lost or stops confirming the leases; why it ended."""
        tasks: set[asyncio.Future[Any]] = {asyncio.create_task(self._taker(connection), name="qala-hub.leases.take"),
                 asyncio.create_task(self._prober(connection), name="qala-hub.leases.probe"),
                 asyncio.create_task(self._watchdog(), name="qala-hub.leases.watch")}
        try:
            waiting: set[asyncio.Future[Any]] = {*tasks, lost}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if lost.done():
            return lost.result()
        for task in done:
            exc = task.exception()
            if exc is not None:
                return str(exc) if isinstance(exc, LeaseLostError) else connect_failure(exc)
        return "ended"  # pragma: no cover - the loops never return

    async def _taker(self, connection: AbstractConnection) -> None:
        book = self.book
        while True:
            for bus in book.due(self._clock()):
                await self._attempt(connection, bus)
            await asyncio.sleep(min(book.retry, self.interval))

    async def _attempt(self, connection: AbstractConnection, bus: str) -> None:
        """Declare the bus's exclusive queue on a channel of its own (a refusal closes the channel)."""
        name = lease_queue(self.site, bus)
        sent = self._clock()
        channel: AbstractChannel | None = None
        try:
            async with asyncio.timeout(self.book.deadline):
                channel = await connection.channel(publisher_confirms=False)
                await channel.declare_queue(name, exclusive=True, durable=False, auto_delete=False)
        except aiormq.exceptions.ChannelLockedResource:
            self.book.refused(bus, self._clock())
            log.debug("lease held by another hub bus=%s queue=%s", bus, name)
            return
        except aiormq.exceptions.ChannelAccessRefused as exc:
            self.book.refused(bus, self._clock())
            log.error("lease refused by the broker bus=%s queue=%s error=%s (the hub's broker user needs configure "  # noqa: TRY400 - a permission, not a bug
                      "permission on qala.%s.lease.*, docs/scale.md)", bus, name, exc, self.site)
            return
        except TimeoutError:
            raise LeaseLostError(f"no answer to the lease declare of {bus} within {self.book.deadline:g} s") from None
        finally:
            if channel is not None and not channel.is_closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(channel.close(), self.book.deadline)
        if self.book.took(bus, sent):
            self.taken += 1
            node = f"{self.node[0]}:{self.node[1]}" if self.node else "-"
            log.info("lease taken bus=%s node=%s hub=%s (this hub polls it)", bus, node, self.hub)
            self._notify(bus, held=True)

    async def _prober(self, connection: AbstractConnection) -> None:
        """A round trip every `interval` s while a lease is held; its send time keeps the leases valid."""
        channel = await connection.channel(publisher_confirms=False)
        book = self.book
        while True:
            await asyncio.sleep(self.interval)
            if not book.held:
                continue
            bus = min(book.held)
            sent = self._clock()
            try:
                async with asyncio.timeout(book.deadline):
                    await channel.declare_queue(lease_queue(self.site, bus), passive=True)
            except TimeoutError:
                raise LeaseLostError(f"no answer to the round trip within {book.deadline:g} s") from None
            except aiormq.exceptions.AMQPError as exc:
                raise LeaseLostError(f"round trip failed: {exc}") from None
            book.confirm(sent)

    async def _watchdog(self) -> None:
        """Ends the session once the last confirmed round trip is older than the deadline."""
        book = self.book
        while True:
            await asyncio.sleep(book.deadline / 10)
            if book.held and not book.valid(self._clock()):
                raise LeaseLostError(f"no round trip confirmed for {book.deadline:g} s")

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        await close_quietly(connection)
