"""The one Reading model: everything the hub stores in InfluxDB is a Reading before it becomes a point.

A Reading is one value of one field at one board timestamp, with the low-cardinality identity that becomes
InfluxDB tags (site, device, sensor, quality) and the measurement it belongs to. Telemetry, device status
changes and the hub's own metrics all take this shape, so there is one schema (docs/influxdb.md) and one
encoder (hub.sinks.lineproto).

Reading is a NamedTuple rather than a frozen dataclass: it is created once per reading on the hot path
(hundreds of thousands a second at full load), and a tuple costs a fraction of a dataclass to build while
staying typed and immutable. Imports only protocols.catalogue; no I/O, no asyncio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from protocols import catalogue

if TYPE_CHECKING:
    from collections.abc import Callable

# Measurements besides the catalogue domains (air, energy, water, gas, heat, device, actuator).
DEVICE_STATUS = "qala_device_status"
HUB = "qala_hub"
COMMAND = "qala_command"
"""Control audit: one point per command outcome (hub.control.service.audit); quality tag = outcome."""
SECURITY = "qala_security"
"""Security events (hub.control.service): e.g. a forged ack; sensor tag = what was forged, quality = the event."""
ALERT = "qala_alert"
"""Alert transitions (hub.alerts): device = the alert's device, sensor tag = its kind, quality = its state."""
AUDIT = "qala_audit"
"""Operators' and the hub's actions other than commands (hub.control.service.audit_action): device tag = what
was acted on (`rollout:<id>`), sensor tag = its kind (`rollout`), quality = the action."""
COVERAGE = "qala_coverage"
"""District coverage (hub.coverage): device tag = `district:<name>`, sensor tag = `district` or a quantity."""

# `sensor` tag values of the hub's own records.
STATUS_SENSOR = "status"
HUB_SENSOR = "hub"


class Reading(NamedTuple):
    """One stored value: `measurement,site=,device=,sensor=,quality= field=value ts` (ts in ms, board clock)."""

    measurement: str
    site: str
    device: str
    sensor: str
    quality: str
    field: str
    value: float | str
    ts: int


_new: Callable[[type[Reading], tuple[object, ...]], Reading] = tuple.__new__


def telemetry_readings(
    site: str,
    device: str,
    sensor: str,
    ts: int,
    values: list[tuple[str, float, str]],
) -> list[Reading]:
    """The Readings of one decoded telemetry message: measurement = the quantity's catalogue domain."""
    quantities = catalogue.QUANTITIES
    # tuple.__new__ skips the NamedTuple's Python-level __new__: less than half the cost per Reading
    return [
        _new(Reading, (quantities[q][0], site, device, sensor, quality, q, value, ts)) for q, value, quality in values
    ]
