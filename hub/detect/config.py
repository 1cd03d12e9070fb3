"""The `[detect]` section of hub.toml: the detectors' switches, bounds and per-quantity overrides.

Declared through hub.sections (SECTION, put into hub.config's DOCUMENT) and built into DetectConfig by
`build`, which also checks what the declarations cannot: `[detect.quantities.NAME]` names a catalogue
quantity. docs/hub.md lists every key; docs/detect.md says what each detector does with them.

Imports hub.sections, hub.errors, hub.detect.defaults, hub.detect.events and protocols.catalogue; does no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub.detect import defaults, events
from hub.errors import ConfigError
from hub.sections import Key, Table, Tables
from protocols import catalogue


@dataclass(frozen=True)
class DetectConfig:
    enabled: bool = True
    """Run the detectors at all (off: the ingest skips them and costs nothing more)."""
    interval: float = 10.0
    """Seconds between two evaluations (`Detectors.tick`)."""
    utc_offset_h: float = 5.0
    """The site's local time (UTC+5: Astana) for night hours and hour-of-day baselines."""
    off: frozenset[str] = frozenset()
    """Detector kinds switched off."""
    settle_s: float = 600.0
    """A spike or an out-of-range reading keeps its condition this long before it clears (and a spiked value
    that stays this long is a level shift)."""
    silent_factor: float = 5.0
    """A board is silent after this many of its learned message intervals without a message."""
    silent_min_s: float = 120.0
    """... and never before this many seconds."""
    clock_bound_s: float = 120.0
    """A board clock more than this ahead of the hub's, or behind it while live, is off."""
    clock_window_s: float = 900.0
    """The window over which a board's smallest lag is taken (a backlog drains in it)."""
    seq_gap_rate: float = 0.05
    """Sequence gaps per message above which, over the last hour, a board loses messages."""
    seq_gap_min: int = 3
    """... counting only with at least this many gaps in that hour."""
    night_start_h: int = 1
    """Local hour the night (leak) window starts."""
    night_end_h: int = 5
    """Local hour it ends: a leak is judged then."""
    counter_stop_h: int = 2
    """Hours a meter counter must stand still, in hours it usually moves, to count as stopped."""
    consumption_k: float = 5.0
    """Robust z-score (median, MAD) of an hour's consumption beyond which it is far from usual."""
    aqi_threshold: int = 100
    """The AQI whose crossing within the next hour is forecast (100: the top of `moderate`)."""
    max_devices: int = 100_000
    """Devices tracked; beyond, new devices are not watched (logged once)."""
    quantities: dict[str, defaults.Limits] = field(default_factory=defaults.limits)
    """Per-quantity limits: hub.detect.defaults with the [detect.quantities.NAME] overrides."""

    def on(self, kind: str) -> bool:
        return self.enabled and kind not in self.off


_QUANTITY = Table({
    "flatline_s": Key(float, None, positive=True, unit="seconds"),
    "flat_zero_ok": Key(bool, None),
    "spike_step": Key(float, None, positive=True),
    "drift_abs": Key(float, None, positive=True),
    "drift_rel": Key(float, None, lo=0, hi=10),
    "leak_min": Key(float, None, positive=True),
})

SECTION = Table({
    "enabled": Key(bool, default=True),
    "interval": Key(float, 10.0, 1, 3600, unit="seconds"),
    "utc_offset_h": Key(float, 5.0, -12, 14, unit="hours"),
    "settle_s": Key(float, 600.0, 1, 86400, unit="seconds"),
    "silent_factor": Key(float, 5.0, 2, 1000),
    "silent_min_s": Key(float, 120.0, 1, 86400, unit="seconds"),
    "clock_bound_s": Key(float, 120.0, 1, 86400, unit="seconds"),
    "clock_window_s": Key(float, 900.0, 60, 86400, unit="seconds"),
    "seq_gap_rate": Key(float, 0.05, 0.0001, 1),
    "seq_gap_min": Key(int, 3, 1, 100000),
    "night_start_h": Key(int, 1, 0, 23, unit="hours"),
    "night_end_h": Key(int, 5, 0, 23, unit="hours"),
    "counter_stop_h": Key(int, 2, 1, 48, unit="hours"),
    "consumption_k": Key(float, 5.0, 1, 100),
    "aqi_threshold": Key(int, 100, 50, 300, note="an AQI category's upper bound: 50, 100, 150, 200 or 300"),
    "max_devices": Key(int, 100_000, 1, 10_000_000),
    **{kind: Key(bool, default=True, note="switches the detector off") for kind in events.KINDS},
    "quantities": Tables(_QUANTITY),
})


def build(values: dict[str, Any]) -> DetectConfig:
    """DetectConfig from what sections.check gave for [detect]; ConfigError naming a key at fault."""
    if values["night_start_h"] == values["night_end_h"]:
        raise ConfigError("detect.night_end_h: must differ from detect.night_start_h (the night window)")
    if values["aqi_threshold"] not in (50, 100, 150, 200, 300):
        raise ConfigError(f"detect.aqi_threshold: must be 50, 100, 150, 200 or 300 (a category's top), "
                          f"got {values['aqi_threshold']}")
    overrides: dict[str, dict[str, object]] = {}
    for name, table in (values["quantities"] or {}).items():
        if name not in catalogue.QUANTITIES:
            raise ConfigError(f"detect.quantities.{name}: unknown quantity (not in the catalogue: "
                              f"docs/protocol.md lists them)")
        overrides[name] = {k: v for k, v in table.items() if v is not None}
    off = frozenset(kind for kind in events.KINDS if not values[kind])
    plain = {k: v for k, v in values.items() if k not in events.KINDS and k != "quantities"}
    return DetectConfig(**plain, off=off, quantities=defaults.limits(overrides))
