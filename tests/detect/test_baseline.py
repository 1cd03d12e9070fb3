"""hub.detect.baseline against a real influxd 1.6.7: the consumption baseline read at start-up lets the
consumption detector judge from the first hours; v2, a database that is down and bad answers leave it to
the stream without failing."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import pytest

from hub.config import InfluxConfig
from hub.detect import events as ev
from hub.detect.baseline import increments, load_baseline
from hub.detect.config import DetectConfig
from hub.detect.engine import Detectors

if TYPE_CHECKING:
    from simulators.services import Influxd

HOUR = 3_600_000
NOW = 1_767_571_200_000 + 21 * 24 * HOUR  # a Monday, three weeks after the history starts


def history(site: str, device: str, weeks: int = 3) -> list[str]:
    """energy_import of one meter, read every 15 minutes: 5 kWh an hour by day, 2 by night (local)."""
    lines = []
    value = 1000.0
    start = NOW - weeks * 7 * 24 * HOUR
    for k in range(weeks * 7 * 24 * 4):
        ts = start + k * HOUR // 4
        local = ((ts + 5 * HOUR) // HOUR) % 24
        value += (5.0 if 7 <= local < 22 else 2.0) / 4
        lines.append(f"energy,device={device},quality=ok,sensor=meter,site={site} energy_import={value:.3f} {ts}")
    return lines


def test_increments_skip_hours_without_a_value() -> None:
    rows = [[0, 10.0], [HOUR, 12.5], [2 * HOUR, None], [3 * HOUR, 20.0], [4 * HOUR, 21.0]]
    assert increments(rows) == [(2 * HOUR, 2.5), (5 * HOUR, 1.0)]


def test_the_baseline_from_influxdb_judges_the_first_hours(influxd: Influxd, influxd_database: str) -> None:
    influxd.write(influxd_database, history("ast", "m1") + history("other", "m1"), precision="ms")
    det = Detectors(DetectConfig())
    influx = InfluxConfig(api="v1", url=influxd.url, database=influxd_database)
    assert asyncio.run(load_baseline(det, influx, "ast", now_ms=NOW)) == 1
    value = 1e6
    events: list[ev.Event] = []
    for k in range(4 * 60):  # four hours at 20 kWh an hour, a reading a minute
        now = NOW + k * 60_000
        value += 20 / 60
        det.sample("m1", "meter", now, [("energy_import", round(value, 3), "ok")], now, gap=False)
        events += det.tick(now)
    fired = [e for e in events if e.kind == ev.CONSUMPTION]
    assert fired, events
    assert fired[0].evidence["usual"] == pytest.approx(5.0, abs=0.01)


def test_without_v1_or_a_database_the_baseline_starts_from_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    det = Detectors(DetectConfig())
    v2 = InfluxConfig(api="v2", url="http://127.0.0.1:9", org="o", bucket="b", token="t")
    assert asyncio.run(load_baseline(det, v2, "ast")) == 0
    assert "starts from the stream" in caplog.text
    down = InfluxConfig(api="v1", url="http://127.0.0.1:9", database="d", timeout=2.0)
    assert asyncio.run(load_baseline(det, down, "ast")) == 0
    assert "baseline not loaded from http://127.0.0.1:9" in caplog.text


def test_a_missing_database_is_said_not_raised(influxd: Influxd, caplog: pytest.LogCaptureFixture) -> None:
    det = Detectors(DetectConfig())
    influx = InfluxConfig(api="v1", url=influxd.url, database="no_such_database_here")
    assert asyncio.run(load_baseline(det, influx, "ast")) == 0
    assert "database not found" in caplog.text
