"""A flood of made-up device ids against a real influxd whose per-tag limit is small enough to reach.

influxd 1.x refuses a point that would add a value to a tag past `max-values-per-tag` (default 100,000) and
answers the whole batch with `400 partial write: max-values-per-tag limit exceeded`. Every made-up id that
the hub stores is a new value of the `device` tag, so a flood of ids fills the limit and, from then on, a
real board that speaks for the first time is refused: its readings go to the dead-letter file, not to the
database. The first test shows the hub with its provisioning store (the session's: FLEET) storing every
reading of every real board through such a flood; the second shows the same flood without the rule (plain
mode: no store, a plain broker) costing a new real board its readings, so the first test would fail without
the feature.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import pytest

from tests.hub.conftest import (
    SITE,
    T0,
    Publisher,
    async_wait_until,
    device_name,
    expected_pm25,
    influx_count,
    influx_pm25,
    running_hub,
    v1_table,
    write_config,
)

if TYPE_CHECKING:
    from pathlib import Path

    from hub.service import Hub
    from simulators.services import Influxd, Mosquitto
    from tests._plugins.services import ServiceFactory

pytestmark = pytest.mark.integration

LIMIT = 500
"""influxd's max-values-per-tag here (100,000 by default): the flood passes it after about 500 ids."""
FLOOD = 3000
"""Made-up device ids, one telemetry message each."""
FLOOD_STATUS = 300
FLOOD_ACK = 300
REAL = 20
"""Provisioned boards publishing from the start, their readings interleaved with the flood."""
LATE = 5
"""Provisioned boards that speak for the first time after the flood (new boards on a flooded site)."""
READINGS = 30
KNOWN = frozenset(device_name(i) for i in range(REAL + LATE))
DB = "flood"


def fake(j: int) -> str:
    return f"fake-{j:05d}"


def publish_flood(pub: Publisher, *, other_kinds: bool) -> None:
    """Births and readings of the REAL boards interleaved with the flood, then the LATE boards' births and readings.

    Reading k of board i has ts T0 + k*1000 + i and value i + k/1000 (conftest.expected_pm25). With
    `other_kinds`, made-up ids also send births and acks.
    """
    for i in range(REAL):
        pub.birth(device_name(i))
    per_round = FLOOD // READINGS
    for k in range(READINGS):
        for j in range(k * per_round, (k + 1) * per_round):
            pub.telemetry(fake(j), 0, T0 + j, 1.0)
        _readings(pub, range(REAL), k)
        pub.wait()
    if other_kinds:
        _births_and_acks(pub)
    for i in range(REAL, REAL + LATE):
        pub.birth(device_name(i))
    for k in range(READINGS):
        _readings(pub, range(REAL, REAL + LATE), k)
    pub.wait()


def _readings(pub: Publisher, boards: range, k: int) -> None:
    for i in boards:
        pub.telemetry(device_name(i), k, T0 + k * 1000 + i, i + k / 1000)


def _births_and_acks(pub: Publisher) -> None:
    for j in range(FLOOD_STATUS):
        pub.birth(fake(j))
    ack = b'{"v":1,"id":"c1","act":"fan","st":"applied","ts":%d}' % T0
    for j in range(FLOOD_ACK):
        pub.publish(f"qala/{SITE}/{fake(j)}/ack", ack)
    pub.wait()


def flooded_influxd(influxd_factory: ServiceFactory[Influxd]) -> Influxd:
    influxd = influxd_factory(settings={"data": {"max-values-per-tag": LIMIT}})
    influxd.create_database(DB)
    return influxd


def tag_values(influxd: Influxd, measurement: str | None = None) -> set[str]:
    source = f' FROM "{measurement}"' if measurement else ""
    answer = influxd.query(DB, f'SHOW TAG VALUES{source} WITH KEY = "device"')
    return {value for series in answer["results"][0].get("series", []) for _, value in series["values"]}


def config(tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd) -> Path:
    # require_birth = false is the shipped default; with true, a flood sends births first (and grows the registry)
    return write_config(tmp_path, mosquitto, v1_table(influxd, DB), site={"require_birth": False})


def _all_taken(hub: Hub, messages: int) -> bool | int:
    taken = hub.metrics.messages_in + hub.metrics.unprovisioned["ack"]
    return (taken == messages and hub.spool.used_bytes == 0 and not hub.writer.pending) or taken


async def test_a_flood_of_unprovisioned_ids_costs_no_real_board_a_reading(
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxd_factory: ServiceFactory[Influxd],
    publisher: Publisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    influxd = flooded_influxd(influxd_factory)
    caplog.set_level(logging.WARNING, logger="hub.ingest.process")
    real_readings = (REAL + LATE) * READINGS
    async with running_hub(config(tmp_path, mosquitto, influxd)) as hub:
        await asyncio.to_thread(publish_flood, publisher, other_kinds=True)
        await async_wait_until(lambda: influx_count(influxd, DB) == real_readings or influx_count(influxd, DB), 60,
                               what=f"{real_readings} real readings in influxd")
        flood = FLOOD + FLOOD_STATUS + FLOOD_ACK
        await async_wait_until(lambda: sum(hub.metrics.unprovisioned.values()) == flood, 30, what="the whole flood")
    assert influx_pm25(influxd, DB) == expected_pm25(REAL + LATE, READINGS)  # every reading of every real board
    assert tag_values(influxd, "air") == set(KNOWN)
    assert not any(value.startswith("fake-") for value in tag_values(influxd))  # in no measurement at all
    assert not (tmp_path / "state" / "dead-letter.lp").exists()
    assert hub.metrics.dead_letter_points == 0
    assert hub.metrics.unprovisioned == {"telemetry": FLOOD, "status": FLOOD_STATUS, "ack": FLOOD_ACK, "cmd": 0,
                                         "conf": 0, "ota": 0, "otaack": 0}
    assert set(hub.registry.devices) == set(KNOWN)  # no made-up id entered the registry
    assert hub.metrics.rejects == dict.fromkeys(hub.metrics.rejects, 0)
    rows = influxd.points(DB, 'SELECT last("unprovisioned_dropped"), last("unprovisioned_telemetry") FROM "qala_hub"')
    assert (rows[0]["last"], rows[0]["last_1"]) == (flood, FLOOD)  # the final snapshot, taken at shutdown
    named = [r for r in caplog.records if r.getMessage().startswith("unprovisioned device dropped ")]
    assert 1 <= len(named) <= 10  # a flood does not flood the log


async def test_without_the_rule_the_same_flood_costs_a_new_board_its_readings(
    tmp_path: Path,
    plain_mosquitto: Mosquitto,
    influxd_factory: ServiceFactory[Influxd],
) -> None:
    """Plain mode (no provisioning store; a plain broker, since only the store's boards could log in to a
    provisioned one): the documented reason the rule exists, and the control experiment for the test above."""
    influxd = flooded_influxd(influxd_factory)
    messages = REAL + FLOOD + REAL * READINGS + LATE * (1 + READINGS)  # births and telemetry
    publisher = Publisher(plain_mosquitto)
    try:
        async with running_hub(config(tmp_path, plain_mosquitto, influxd)) as hub:
            await asyncio.to_thread(publish_flood, publisher, other_kinds=False)
            await async_wait_until(lambda: _all_taken(hub, messages), 60, what="every message taken and written")
    finally:
        publisher.close()
    assert sum(hub.metrics.unprovisioned.values()) == 0
    stored = tag_values(influxd, "air")
    # the flood filled the device tag (influxd checks the limit per batch: a batch begun under it is taken whole)
    assert len(stored) >= LIMIT
    late = {device_name(i) for i in range(REAL, REAL + LATE)}
    assert not stored & late  # the boards that came after the flood: refused
    dead_letter = (tmp_path / "state" / "dead-letter.lp").read_text()
    assert "max-values-per-tag limit exceeded" in dead_letter
    assert all(f"device={device}," in dead_letter for device in late)  # their readings went there instead
    assert hub.metrics.dead_letter_points > 0
