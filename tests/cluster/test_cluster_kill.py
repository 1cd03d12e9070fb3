"""Issue 15's promise on a real three-node RabbitMQ cluster: boards publishing at QoS 1, the node leading the
telemetry queue SIGKILLed and one of two hubs SIGKILLed mid-run, and still every reading is in InfluxDB (each
board produces a known number of messages; duplicates are the same points, so they overwrite themselves); a
command sent by the killed hub just before its death ends in one final state, audited once.

Real parts: the cluster (simulators.rabbitmq: TLS-only listeners, the store's users and topic permissions),
influxd, two hubs as `qala hub run` subprocesses with `[cluster]`, and boards running the real firmware under
`micropython` (a clean session, the three nodes in their server list, `buffer.confirm` off: the cluster's
PUBACK is their confirmation). The killed hub is started again with its spool (a crashed hub's service is
restarted by systemd; what it had spooled and not yet written goes out then): the other hub carries the
site meanwhile.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from simulators import fleet
from simulators.cluster import ClusterSite

if TYPE_CHECKING:
    from pathlib import Path

    from simulators.rabbitmq import RabbitCluster
    from simulators.services import Influxd

pytestmark = [pytest.mark.integration, pytest.mark.micropython, pytest.mark.cluster]

N = 300
"""Telemetry messages each board produces (one every 0.1 s: 30 s)."""
BOARDS = 6


def counts(site: ClusterSite, devices: list[str]) -> dict[str, int]:
    stored = site.stored_by_board()
    return {device: stored.get(device, 0) for device in devices}


def wait(what: str, check: Any, timeout: float, site: ClusterSite) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last is True:
            return last
        time.sleep(0.5)
    logs = "\n".join(f"--- {h.name}\n{h.log.read_text(errors='replace')[-3000:]}" for h in site.hubs
                     if h.log.exists())
    pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})\n{logs}")


def test_a_broker_node_and_a_hub_killed_mid_run_lose_no_reading(
        rabbit_cluster: RabbitCluster, influxd: Influxd, influxd_database: str, tmp_path: Path) -> None:
    store = rabbit_cluster.store
    assert store is not None
    devices = sorted(store.devices())[:BOARDS]
    kinds = {device: fleet.KINDS[i % len(fleet.KINDS)] for i, device in enumerate(devices)}
    air = next(d for d in devices if kinds[d] == "air")
    site = ClusterSite(tmp_path, hubs=2, cluster=rabbit_cluster, store=store, influxd=influxd,
                       database=influxd_database,
                       hub_tables={"control": {"ttl": 60.0, "retries": 3, "ack_timeout": 5.0}})
    killed_node: int | None = None
    try:
        site.start_services()
        for index in range(2):
            site.start_hub(index)
        for index in range(2):
            site.wait_hub_connected(index)
        boards = site.start_boards(devices, interval=0.1, limit=N)
        wait("every board's first readings stored", lambda: min(counts(site, devices).values()) >= 30 or
             counts(site, devices), 90, site)
        wait("the air board's birth at the first hub", lambda: site.api("GET", "/v1/devices")[0] == 200 and
             any(d.get("device") == air for d in site.api("GET", "/v1/devices")[1].get("devices", [])), 30, site)

        # the node leading the telemetry queue dies; boards and hubs on it move to the others
        killed_node = rabbit_cluster.leader(f"qala.{store.site}.telemetry")
        rabbit_cluster.kill(killed_node)
        time.sleep(2)
        # a command through the first hub, which dies right after sending it
        status, cmd = site.api("POST", "/v1/setpoints", {"device": air, "actuator": "fan1", "value": 55})
        assert status == 202, cmd
        site.kill_hub(0)
        time.sleep(5)  # the second hub carries the site alone: the first one's deliveries come to it
        site.start_hub(0)  # with its spool and command journal
        site.wait_hub_connected(0, after=1)

        wait("every reading of every board in InfluxDB",
             lambda: all(n == N for n in counts(site, devices).values()) or counts(site, devices), 120, site)
        final = wait("the command's final state at the hub that sent it",
                     lambda: site.api("GET", f"/v1/commands/{cmd['id']}")[1].get("state") == "applied" or
                     site.api("GET", f"/v1/commands/{cmd['id']}")[1], 60, site)
        assert final is True
        rows = influxd.points(influxd_database, 'SELECT "value" FROM "qala_command" WHERE "id" = '
                              f"'{cmd['id']}' GROUP BY \"quality\"")
        assert [(r["quality"], r["value"]) for r in rows] == [("applied", 55.0)], rows  # one outcome, one point
        for board in boards:
            out = board.console.read_text(errors="replace")
            assert "Traceback" not in out, out[-3000:]
        moved = [b for b in boards if "mqtt: connected to" in b.console.read_text(errors="replace")]
        assert moved, "no board logged its connects"
        second = site.hubs[1].log.read_text(errors="replace")
        assert "Traceback" not in second
        first = site.hubs[0].log.read_text(errors="replace")
        assert first.count("cluster: connected node=") >= 2  # before and after its SIGKILL
    finally:
        site.stop()
        if killed_node is not None:
            rabbit_cluster.restart(killed_node)  # the session's cluster goes on with three nodes
