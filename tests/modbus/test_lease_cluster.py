"""Bus leases against a real three-node RabbitMQ 3.10 cluster (the session's secure `rabbit_cluster`,
tests/_plugins/cluster.py: about 20 s to start): one hub holds a bus, another takes it when the holder dies, and a
holder cut off (its process stopped with SIGSTOP, so the broker hears nothing until its heartbeat timeout) has
stopped counting the lease before the other hub gets it.

The hubs log in as the store's hub users `h2` and `h3` over AMQPS, verifying the nodes with the store's CA, each on
another node (exclusivity holds across the cluster). One hub runs in this process, the other in a subprocess
(tests/modbus/lease_holder.py) so that it can be killed or stopped; both sample `held(bus)` every 20 ms and stamp
what they saw with CLOCK_MONOTONIC (time.monotonic: one clock for every process of this machine), so their intervals
can be compared.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hub.config import ClusterConfig, MqttConfig
from hub.modbus.lease import Leases
from tests._plugins.cluster import CLUSTER_SITE as SITE

if TYPE_CHECKING:
    from simulators.rabbitmq import RabbitCluster

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HELPER = Path(__file__).with_name("lease_holder.py")
BUS = "lease-plant"
HEARTBEAT = 2
"""cluster.heartbeat for these hubs: round trips every 0.5 s, a lease counts 1 s after the last one."""
RETRY = 0.5


def login(cluster: RabbitCluster, hub: str) -> MqttConfig:
    """The store's hub user `hub`, TLS verified with the store's CA (as hub.config builds it from [trust])."""
    assert cluster.store is not None
    user, password = cluster.store.hub(hub)
    return MqttConfig(host="", client_id=user, username=user, password=password, tls=True,
                      ca_file=str(cluster.store.ca_file), reconnect_min=0.2, reconnect_max=1.0)


class Holder:
    """A hub's Leases in a subprocess: what it printed, read by a thread."""

    def __init__(self, cluster: RabbitCluster, index: int, hub: str) -> None:
        mine = login(cluster, hub)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "QALA_LEASE_USER": mine.username or "",
               "QALA_LEASE_PASSWORD": mine.password or "", "QALA_LEASE_CA": mine.ca_file or "",
               "QALA_LEASE_SITE": SITE}
        port = cluster.nodes[index].amqp_port
        self.proc = subprocess.Popen(
            [sys.executable, str(HELPER), str(port), hub, BUS, str(HEARTBEAT), str(RETRY)],
            stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.held: list[float] = []
        self.changes: list[tuple[float, int]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            kind, *rest = line.split()
            if kind == "H":
                self.held.append(float(rest[0]))
            elif kind == "T":
                self.changes.append((float(rest[0]), int(rest[1])))

    def signal(self, sig: signal.Signals) -> float:
        at = time.monotonic()
        self.proc.send_signal(sig)
        return at

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)


class Local:
    """A hub's Leases in this process, sampled as a poller would."""

    def __init__(self, cluster: RabbitCluster, index: int, hub: str) -> None:
        config = ClusterConfig(nodes=(("127.0.0.1", cluster.nodes[index].amqp_port),), heartbeat=HEARTBEAT)
        self.leases = Leases(config, login(cluster, hub), SITE, hub, [BUS], retry=RETRY)
        self.held: list[float] = []
        self.changes: list[tuple[float, bool]] = []
        self.leases.listeners.append(lambda _bus, held: self.changes.append((time.monotonic(), held)))
        self._sampler: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            if self.leases.held(BUS):
                self.held.append(time.monotonic())
            await asyncio.sleep(0.02)

    def start(self) -> None:
        self.leases.start()
        self._sampler = asyncio.create_task(self._sample())

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        await self.leases.stop()


async def _until(predicate: object, within: float) -> float:
    assert callable(predicate)
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s")
        await asyncio.sleep(0.02)
    return time.monotonic()


async def test_one_hub_holds_a_bus_and_another_takes_it_when_the_holder_dies(rabbit_cluster: RabbitCluster) -> None:
    a = Holder(rabbit_cluster, 0, "h2")
    b = Local(rabbit_cluster, 1, "h3")
    try:
        await _until(lambda: a.held, 15)
        b.start()
        await asyncio.sleep(4 * RETRY)  # b asks several times and is refused
        assert b.held == []
        assert b.leases.taken == 0
        killed = a.signal(signal.SIGKILL)
        taken = await _until(lambda: b.held, 3 * HEARTBEAT + RETRY)
        takeover = taken - killed
        print(f"takeover after SIGKILL of the holder: {takeover:.2f} s")
        assert takeover < 3 * HEARTBEAT + RETRY
        assert max(a.held) < b.held[0]
    finally:
        a.close()
        await b.close()


async def test_a_holder_cut_off_stops_counting_its_lease_before_another_hub_gets_it(
        rabbit_cluster: RabbitCluster) -> None:
    c = Holder(rabbit_cluster, 0, "h2")
    d = Local(rabbit_cluster, 2, "h3")
    try:
        await _until(lambda: c.held, 15)
        d.start()
        await asyncio.sleep(4 * RETRY)
        assert d.held == []
        stopped = c.signal(signal.SIGSTOP)  # no heartbeats, no round trips: the broker waits for its timeout
        taken = await _until(lambda: d.held, 6 * HEARTBEAT)
        resumed = c.signal(signal.SIGCONT)
        await asyncio.sleep(2 * HEARTBEAT)  # c finds its connection gone and asks again: refused, d holds
        assert d.leases.holding() == {BUS}
        c_last = max(c.held)
        print(f"SIGSTOP -> other hub holds: {taken - stopped:.2f} s; holder's last held sample {taken - c_last:.2f} s "
              f"before that; stopped {resumed - stopped:.2f} s")
        assert taken - stopped < 4 * HEARTBEAT + RETRY  # measured: about 3 heartbeats (docs/scale.md)
        assert c_last < stopped + 0.1  # nothing counted held after the stop, not even when it ran again
        assert c_last < d.held[0]  # the two intervals never overlap
        assert c.changes[-1][1] == 0  # and it said so when it ran again
        assert c.changes[-1][0] > resumed
    finally:
        c.close()
        await d.close()
