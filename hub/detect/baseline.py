"""The consumption baseline at start-up: past hourly increments of meter counters, read from InfluxDB.

`load_baseline(detectors, influx_config, site)` asks InfluxDB 1.x (`GET /query`, InfluxQL) for the last value
of each meter counter (hub.detect.defaults.COUNTER_QUANTITIES) per hour over the past `weeks` weeks, per
device and sensor, turns consecutive hours into increments and hands them to `Detectors.preload`: the
consumption and counter_stopped detectors then judge from the first hour instead of after days of learning.
Series are read `SERIES_PAGE` at a time (SLIMIT/SOFFSET), so a big site is never one huge answer.

With `influxdb.api = "v2"` there is no InfluxQL endpoint to rely on (InfluxDB 2.x has only a compatibility
one, VictoriaMetrics none): the baseline starts from the stream, and the hub logs so once. Errors (the
database down, refused, a strange answer) are logged and leave the baseline to the stream: start-up never
fails for it.

Imports aiohttp, hub.detect.defaults, hub.detect.engine (for types) and protocols.catalogue; knows nothing
of the service loop that calls it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from hub.detect.defaults import COUNTER_QUANTITIES
from protocols import catalogue

if TYPE_CHECKING:
    from hub.config import InfluxConfig
    from hub.detect.engine import Detectors

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
SERIES_PAGE = 500
"""Series (device x sensor) per query."""


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def increments(rows: list[list[Any]]) -> list[tuple[int, float]]:
    """(end of hour ms, increment) from rows of (start of hour ms, last value or None), in time order."""
    out: list[tuple[int, float]] = []
    prev: float | None = None
    for start, value in rows:
        if not isinstance(value, (int, float)):
            prev = None
            continue
        if prev is not None:
            out.append((int(start) + HOUR_MS, float(value) - prev))
        prev = float(value)
    return out


async def load_baseline(detectors: Detectors, influx: InfluxConfig, site: str, *, weeks: int = 4,
                        now_ms: int | None = None) -> int:
    """Preload the detectors' consumption baselines from InfluxDB v1; the number of series loaded."""
    if not detectors.enabled:
        return 0
    if influx.api != "v1":
        log.info("detect: influxdb.api = v2: the consumption baseline starts from the stream (it judges a meter "
                 "after 3 days of its hours), not from stored history")
        return 0
    now = int(time.time() * 1000) if now_ms is None else now_ms
    start = (now - weeks * 7 * 24 * HOUR_MS) // HOUR_MS * HOUR_MS
    end = now // HOUR_MS * HOUR_MS
    loaded = 0
    params = {"db": influx.database, "epoch": "ms"}
    if influx.retention_policy:
        params["rp"] = influx.retention_policy
    if influx.username is not None:
        params["u"] = influx.username
        params["p"] = influx.password or ""
    timeout = aiohttp.ClientTimeout(total=max(influx.timeout, 30.0))
    try:
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            for quantity in COUNTER_QUANTITIES:
                loaded += await _load_quantity(session, detectors, influx.url, params, quantity,
                                               f"site = {_literal(site)} AND quality = 'ok' AND time >= {start}ms "
                                               f"AND time < {end}ms")
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("detect: consumption baseline not loaded from %s (%s: %s); it starts from the stream",
                    influx.url, type(exc).__name__, exc)
        return loaded
    log.info("detect: consumption baseline loaded series=%d weeks=%d", loaded, weeks)
    return loaded


async def _load_quantity(session: aiohttp.ClientSession, detectors: Detectors, url: str, params: dict[str, str],
                         quantity: str, where: str) -> int:
    measurement = str(catalogue.QUANTITIES[quantity][0])
    loaded = offset = 0
    while True:
        q = (f"SELECT last({_quote(quantity)}) FROM {_quote(measurement)} WHERE {where} "  # noqa: S608 - quoted
             f"GROUP BY time(1h), device, sensor SLIMIT {SERIES_PAGE} SOFFSET {offset}")
        series = await _query(session, url, params | {"q": q})
        for one in series:
            tags = one.get("tags") or {}
            device, sensor = str(tags.get("device", "")), str(tags.get("sensor", ""))
            if device and detectors.preload(device, sensor, quantity, increments(one.get("values", []))):
                loaded += 1
        if len(series) < SERIES_PAGE:
            return loaded
        offset += SERIES_PAGE


async def _query(session: aiohttp.ClientSession, url: str, params: dict[str, str]) -> list[dict[str, Any]]:
    async with session.get(url + "/query", params=params) as response:
        text = await response.text(errors="replace")
        if response.status != 200:
            raise ValueError(f"HTTP {response.status}: {text.strip()[:300]}")
    answer = json.loads(text)
    result = answer["results"][0]
    if "error" in result:
        raise ValueError(str(result["error"])[:300])
    series: list[dict[str, Any]] = result.get("series", [])
    return series
