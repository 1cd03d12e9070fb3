"""End-to-end confirmation against the broker's weak spot: real boards under `micropython`, a real mosquitto
SIGKILLed while the hub is away, the hub back: every message the boards produced is in InfluxDB.

Each board produces exactly N telemetry messages (the sim driver's `limit`; no health reports), so what it
produced is known. The broker saves its state rarely here (`autosave_interval 3600`): a SIGKILL loses every
message it acknowledged since, and the hub's session with them, as any broker loses what came after its last
save (mosquitto saves every 10 s in the shipped config; EMQX and NATS also acknowledge before a disk sync).
With confirmation the boards still hold what the hub never confirmed and send it again; without it (the same
run with `buffer.confirm` and `hub.confirm` off) readings are lost, so the test fails without the feature.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from tests.firmware.boards import Board, board_config
from tests.hub.conftest import async_wait_until, running_hub, v1_table, write_config

if TYPE_CHECKING:
    from pathlib import Path

    from hub.service import Hub
    from simulators.services import Influxd, Mosquitto
    from tests._plugins.services import ServiceFactory
    from tests._plugins.trust import TrustStore

pytestmark = [pytest.mark.integration, pytest.mark.micropython]

N = 120
"""Messages each board produces (one every 0.1 s)."""
DEVICES = ("t1", "t2")


def boards(tmp_path: Path, broker: Mosquitto, *, confirm: bool) -> list[Board]:
    out = []
    for device in DEVICES:
        cfg = board_config(broker, device, actuators={}, health_interval=3600,
                           buffer={"ram": 8, "file": 2000, "replay_ms": 5, "confirm": confirm, "resend_after": 2},
                           sensors={"air1": {"driver": "sim", "interval": 0.1, "quantities": ["pm25"],
                                             "options": {"limit": N}}})
        cfg.pop("commands", None)
        out.append(Board(tmp_path / device, cfg))
    return out


def stored(influxd: Influxd, database: str) -> dict[str, int]:
    rows = influxd.points(database, 'SELECT count("pm25") FROM "air" GROUP BY "device"')
    return {r["device"]: int(r["count"]) for r in rows}


def _counts(influxd: Influxd, database: str) -> dict[str, int]:
    return {d: stored(influxd, database).get(d, 0) for d in DEVICES}


async def _run(tmp_path: Path, broker: Mosquitto, influxd: Influxd, database: str, *, confirm: bool
               ) -> tuple[dict[str, int], Hub]:
    path = write_config(tmp_path, broker, v1_table(influxd, database), site={"require_birth": False},
                        hub={"confirm": confirm})
    fleet = boards(tmp_path, broker, confirm=confirm)
    try:
        async with running_hub(path):
            for board in fleet:
                board.start()
            await async_wait_until(lambda: all(n >= 20 for n in _counts(influxd, database).values()), 30,
                                   what="the first readings of every board stored")
        await asyncio.sleep(3)  # the hub is away: the boards' messages queue at the broker for its session
        await asyncio.to_thread(broker.kill)  # SIGKILL: everything since its last save is gone
        await asyncio.to_thread(broker.start)
        await asyncio.sleep(2)
        async with running_hub(path) as hub:
            if confirm:
                await async_wait_until(lambda: all(n == N for n in _counts(influxd, database).values()) or
                                       _counts(influxd, database), 60, what="every reading")
            else:  # what will ever arrive has arrived once the boards are done and the spool is written
                await asyncio.sleep(20)
            return _counts(influxd, database), hub
    finally:
        for board in fleet:
            board.stop()


async def test_a_broker_crash_while_the_hub_is_away_costs_no_reading(
    tmp_path: Path, mosquitto_factory: ServiceFactory[Mosquitto], test_store: TrustStore, influxd: Influxd,
    influxd_database: str,
) -> None:
    broker = mosquitto_factory(store=test_store.root, extra_config=["autosave_interval 3600"])
    counts, hub = await _run(tmp_path, broker, influxd, influxd_database, confirm=True)
    assert counts == dict.fromkeys(DEVICES, N)  # every message of every board, each stored once
    assert hub.metrics.confirmations_sent > 0


async def test_without_confirmation_the_same_crash_loses_readings(
    tmp_path: Path, mosquitto_factory: ServiceFactory[Mosquitto], test_store: TrustStore, influxd: Influxd,
    influxd_database: str,
) -> None:
    """The control experiment: the broker's PUBACK ends a record's life, as before end-to-end confirmation."""
    broker = mosquitto_factory(store=test_store.root, extra_config=["autosave_interval 3600"])
    counts, _ = await _run(tmp_path, broker, influxd, influxd_database, confirm=False)
    assert sum(counts.values()) < N * len(DEVICES), counts
