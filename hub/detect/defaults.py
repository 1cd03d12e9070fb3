"""Per-quantity limits of the detectors: the defaults (from the measurement catalogue) and their overrides.

One row per catalogue quantity says what the data-quality and utility detectors may assume about it:
how long it may stay at one value (flatline), the largest step one sample may take (spike), how far two
co-located sensors of it may differ (drift), and for flows the night flow above which a building leaks.
A field that is None switches that detector off for the quantity. docs/detect.md explains each number.

`limits(overrides)` gives the table with `[detect.quantities.NAME]` overrides applied (hub.config checks
the names and keys, then calls it). Imports protocols.catalogue; knows nothing of the stream or of events.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocols import catalogue

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True)
class Limits:
    """What the detectors assume of one quantity (None: that detector is off for it)."""

    flatline_s: float | None = None
    """Seconds a reading may stay at exactly one value before it counts as stuck."""
    flat_zero_ok: bool = False
    """A value of 0 may last any time (a flow or a power that is off), only other values count as stuck."""
    spike_step: float | None = None
    """The largest step between two samples up to a minute apart that the physics allows (scaled up with
    the time between them); a larger one is a spike."""
    drift_abs: float | None = None
    """Co-located sensors may differ by max(drift_abs, drift_rel * |group median|) in hourly means."""
    drift_rel: float = 0.0
    leak_min: float | None = None
    """A flow whose night minimum exceeds its usual night minimum by max(leak_min, 0.3 * usual) leaks."""


COUNTER_QUANTITIES = ("energy_import", "energy_export", "water_volume", "gas_volume", "heat_energy")
"""Meter counters: watched for stops, steps backwards and consumption far from the usual (hourly increments)."""

_H = 3600.0

# quantity: limits; a quantity not listed (device health, actuator positions, counters) has none of these
DEFAULTS: dict[str, Limits] = {
    "pm1": Limits(flatline_s=2 * _H, spike_step=300, drift_abs=8, drift_rel=0.25),
    "pm25": Limits(flatline_s=2 * _H, spike_step=300, drift_abs=8, drift_rel=0.25),
    "pm10": Limits(flatline_s=2 * _H, spike_step=400, drift_abs=12, drift_rel=0.25),
    "co2": Limits(flatline_s=3 * _H, spike_step=2000, drift_abs=100, drift_rel=0.15),
    "tvoc": Limits(flatline_s=3 * _H, spike_step=20000),
    "voc_index": Limits(flatline_s=6 * _H, spike_step=300),
    "no2": Limits(flatline_s=3 * _H, spike_step=500, drift_abs=20, drift_rel=0.25),
    "o3": Limits(flatline_s=3 * _H, spike_step=500, drift_abs=20, drift_rel=0.25),
    "temperature": Limits(flatline_s=3 * _H, spike_step=10, drift_abs=1.5),
    "humidity": Limits(flatline_s=3 * _H, spike_step=30, drift_abs=8),
    "pressure": Limits(flatline_s=6 * _H, spike_step=20, drift_abs=3),
    "aqi": Limits(flatline_s=3 * _H, spike_step=300),
    "voltage": Limits(flatline_s=2 * _H, spike_step=150, flat_zero_ok=True),
    "frequency": Limits(flatline_s=1 * _H, spike_step=5),
    "power_active": Limits(flatline_s=6 * _H, flat_zero_ok=True),
    "water_flow": Limits(flatline_s=12 * _H, flat_zero_ok=True, leak_min=0.03),
    "heat_flow": Limits(flatline_s=12 * _H, flat_zero_ok=True, leak_min=0.3),
    "heat_supply_temp": Limits(flatline_s=6 * _H, spike_step=40),
    "heat_return_temp": Limits(flatline_s=6 * _H, spike_step=40),
    "heat_power": Limits(flatline_s=6 * _H, flat_zero_ok=True),
}

FIELDS = tuple(f.name for f in dataclasses.fields(Limits))
"""The keys a `[detect.quantities.NAME]` table may set."""


def limits(overrides: Mapping[str, Mapping[str, object]] | None = None) -> dict[str, Limits]:
    """Limits of every catalogue quantity, with `overrides` (quantity -> {field: value}) applied.

    KeyError/TypeError are the caller's to prevent: hub.config checks names and types first.
    """
    table = {q: DEFAULTS.get(q, Limits()) for q in catalogue.QUANTITIES}
    for quantity, values in (overrides or {}).items():
        table[quantity] = dataclasses.replace(table[quantity], **values)  # type: ignore[arg-type]
    return table
