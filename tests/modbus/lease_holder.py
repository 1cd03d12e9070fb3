"""A hub's Leases alone in a process, for tests/modbus/test_lease_cluster.py: the test SIGKILLs or SIGSTOPs it.

    python tests/modbus/lease_holder.py PORT HUB BUS HEARTBEAT RETRY

Connects over AMQPS to the RabbitMQ node on 127.0.0.1:PORT with the hub login and CA file given in
QALA_LEASE_USER, QALA_LEASE_PASSWORD and QALA_LEASE_CA (not on the command line), site QALA_LEASE_SITE, and
asks for BUS's lease. Every 20 ms it
asks `held(BUS)`, as a poller does before each poll, and writes `H <time.monotonic()>` when it holds the bus
(CLOCK_MONOTONIC: the test compares these times with its own); `T <time> <0|1>` at each change.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from hub.config import ClusterConfig, MqttConfig
from hub.modbus.lease import Leases


async def main(port: int, hub: str, bus: str, heartbeat: int, retry: float) -> None:
    cluster = ClusterConfig(nodes=(("127.0.0.1", port),), heartbeat=heartbeat)
    env = os.environ
    login = MqttConfig(host="", client_id=env["QALA_LEASE_USER"], username=env["QALA_LEASE_USER"],
                       password=env["QALA_LEASE_PASSWORD"], tls=True, ca_file=env["QALA_LEASE_CA"],
                       reconnect_min=0.2, reconnect_max=1.0)
    leases = Leases(cluster, login, env["QALA_LEASE_SITE"], hub, [bus], retry=retry)
    out = sys.stdout
    leases.listeners.append(lambda _bus, held: out.write(f"T {time.monotonic():.4f} {int(held)}\n"))
    leases.start()
    out.write("R\n")
    out.flush()
    while True:
        if leases.held(bus):
            out.write(f"H {time.monotonic():.4f}\n")
        out.flush()
        await asyncio.sleep(0.02)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
