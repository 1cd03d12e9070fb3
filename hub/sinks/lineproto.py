"""Readings -> InfluxDB line protocol, through influxdb-client's Point (no hand-built escaping).

Owns the mapping of a Reading onto a point: measurement, tags site/device/sensor/quality, one field per
quantity, a millisecond timestamp. Consecutive Readings that share measurement, tags and timestamp become
one line with several fields (a telemetry message with six `ok` readings is one line). The schema is
documented in docs/influxdb.md.

Pure: no I/O, no asyncio. Imports influxdb_client's Point and hub.model only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from influxdb_client.client.write.point import Point as _Point
from influxdb_client.domain.write_precision import WritePrecision

if TYPE_CHECKING:
    from collections.abc import Iterable

    from hub.model import Reading

Point: Any = _Point  # influxdb-client ships no type hints for Point

PRECISION = "ms"
"""Every line carries a millisecond timestamp; writers send `precision=ms`."""


def encode(readings: Iterable[Reading]) -> list[str]:
    """One line per (measurement, tags, timestamp) run of readings, in input order."""
    lines: list[str] = []
    point: Any = None
    key: tuple[str, str, str, str, str, int] | None = None
    for r in readings:
        k = (r.measurement, r.site, r.device, r.sensor, r.quality, r.ts)
        if k != key:
            if point is not None:
                lines.append(point.to_line_protocol())
            key = k
            point = (
                Point(r.measurement)
                .tag("site", r.site)
                .tag("device", r.device)
                .tag("sensor", r.sensor)
                .tag("quality", r.quality)
                .time(r.ts, WritePrecision.MS)
            )
        point.field(r.field, r.value)
    if point is not None:
        lines.append(point.to_line_protocol())
    return lines


def encode_bytes(readings: Iterable[Reading]) -> tuple[bytes, int]:
    """The lines joined with newlines (each line ends with one) and their count."""
    lines = encode(readings)
    if not lines:
        return b"", 0
    return ("\n".join(lines) + "\n").encode("utf-8"), len(lines)
