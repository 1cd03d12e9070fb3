"""What a detector says: an Event, a condition that started (`fire`) or ended (`clear`) on one device.

Every detector in hub.detect emits Events; hub.alerts turns them into alerts with a life cycle (firing,
acknowledged, resolved), and the northbound feed (hub.north) carries those. An Event is keyed by
(kind, device, quantity): a detector fires a key once, may fire it again to update the evidence while the
condition lasts, and clears it once the condition is over.

Imports only the standard library; knows nothing of MQTT, InfluxDB or how alerts are kept.
"""

from __future__ import annotations

from typing import NamedTuple

FIRE = "fire"
CLEAR = "clear"

INFO = "info"
WARNING = "warning"
CRITICAL = "critical"
SEVERITIES = (INFO, WARNING, CRITICAL)

# data-quality kinds
FLATLINE = "flatline"
SPIKE = "spike"
OUT_OF_RANGE = "out_of_range"
DRIFT = "drift"
SILENT = "silent"
CLOCK = "clock"
SEQ_GAPS = "seq_gaps"
# utility kinds
LEAK = "leak"
COUNTER_STOPPED = "counter_stopped"
COUNTER_BACKWARDS = "counter_backwards"
CONSUMPTION = "consumption"
# air-quality kinds
AQI_FORECAST = "aqi_forecast"

KINDS = (FLATLINE, SPIKE, OUT_OF_RANGE, DRIFT, SILENT, CLOCK, SEQ_GAPS, LEAK, COUNTER_STOPPED, COUNTER_BACKWARDS,
         CONSUMPTION, AQI_FORECAST)


class Event(NamedTuple):
    """One detector's verdict about one device (and quantity, "" for the whole device)."""

    kind: str
    """One of KINDS."""
    state: str
    """FIRE (the condition holds, or holds again with new evidence) or CLEAR (it is over)."""
    device: str
    quantity: str
    """The catalogue quantity concerned, "" when the event is about the device (silent, clock, seq_gaps)."""
    severity: str
    """One of SEVERITIES."""
    ts: int
    """When the condition started (FIRE) or ended (CLEAR), ms since the epoch: the board's clock where the
    evidence is in its readings, the hub's otherwise."""
    message: str
    """One line for a person: what is wrong and what it suggests, e.g.
    `pm25 stuck at 12.0 ug/m3 for 3 h (allowed 2 h): sensor or its fan may have failed`."""
    evidence: dict[str, float | str]
    """The few numbers behind the verdict (value, limit, duration_s, baseline, ...): small, flat, JSON-able."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.device, self.quantity)
