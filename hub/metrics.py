"""The hub's self-metrics: plain counters on the hot path, turned into `qala_hub` Readings periodically.

Counters are cumulative since the hub started (use non_negative_difference / increase() in queries);
gauges (spool depth, write latency) are sampled when the snapshot is taken. Reject reasons are a closed
set (REASONS) so each becomes its own field. docs/influxdb.md lists every field.

Pure: no I/O, no asyncio. Imports hub.model and protocols.topics (the message kinds).
"""

from __future__ import annotations

from hub.model import HUB, HUB_SENSOR, Reading
from protocols import topics

# Why an incoming message was not stored (or, for out_of_range, stored flagged `range`).
BAD_TOPIC = "bad_topic"  # not qala/{site}/{device}/{kind}, or a kind the hub does not ingest
OTHER_SITE = "other_site"  # a well-formed topic of another site
BAD_PAYLOAD = "bad_payload"  # the payload failed decoding (protocols.payloads)
UNKNOWN_DEVICE = "unknown_device"  # telemetry from a device whose birth message was never seen
OUT_OF_RANGE = "out_of_range"  # a reading outside the catalogue's plausible range: stored with quality=range
REASONS = (BAD_TOPIC, OTHER_SITE, BAD_PAYLOAD, UNKNOWN_DEVICE, OUT_OF_RANGE)

UNPROVISIONED_KINDS = (topics.TELEMETRY, topics.STATUS, topics.ACK)
"""The kinds the hub subscribes to, each with its own `unprovisioned_<kind>` field."""


class Metrics:
    """Mutable counters; the service and its parts increment attributes directly."""

    def __init__(self) -> None:
        self.messages_in = 0
        self.telemetry_in = 0
        self.status_in = 0
        self.readings_in = 0
        self.rejects = dict.fromkeys(REASONS, 0)
        self.points_spooled = 0
        self.points_written = 0
        self.batches_written = 0
        self.write_retries = 0
        self.write_errors = 0
        self.dead_letter_batches = 0
        self.dead_letter_points = 0
        self.spool_full_events = 0
        self.spool_write_errors = 0  # spool writes the disk refused (full, read-only, failing); retried
        self.confirmations_sent = 0  # confirmations published to boards (hub.ingest.confirm)
        self.mqtt_connects = 0
        self.unknown_device_stored = 0  # telemetry of devices never seen born, stored (site.require_birth false)
        self.readings_dropped = 0  # non-MQTT readings (Modbus, audit) dropped while the spool stayed full
        self.unprovisioned = dict.fromkeys(topics.KINDS, 0)
        """Messages dropped by kind because their device id is not provisioned (hub.ingest.process)."""
        self._latency_sum = 0.0
        self._latency_max = 0.0
        self._latency_n = 0

    def reject(self, reason: str) -> None:
        self.rejects[reason] += 1

    def write_latency(self, seconds: float) -> None:
        self._latency_sum += seconds
        self._latency_n += 1
        self._latency_max = max(self._latency_max, seconds)

    def snapshot(
        self,
        site: str,
        hub: str,
        ts: int,
        gauges: dict[str, float],
    ) -> list[Reading]:
        """The `qala_hub` Readings at ts (ms): counters, the interval's write latency, and `gauges`."""
        fields: dict[str, float] = {
            "messages_in": self.messages_in,
            "telemetry_in": self.telemetry_in,
            "status_in": self.status_in,
            "readings_in": self.readings_in,
            "points_spooled": self.points_spooled,
            "points_written": self.points_written,
            "batches_written": self.batches_written,
            "write_retries": self.write_retries,
            "write_errors": self.write_errors,
            "dead_letter_batches": self.dead_letter_batches,
            "dead_letter_points": self.dead_letter_points,
            "spool_write_errors": self.spool_write_errors,
            "confirmations_sent": self.confirmations_sent,
            "spool_full_events": self.spool_full_events,
            "mqtt_connects": self.mqtt_connects,
            "unknown_device_stored": self.unknown_device_stored,
            "readings_dropped": self.readings_dropped,
            "rejects": sum(self.rejects.values()) - self.rejects[OUT_OF_RANGE],
            "unprovisioned_dropped": sum(self.unprovisioned.values()),
        }
        for kind in UNPROVISIONED_KINDS:
            fields["unprovisioned_" + kind] = self.unprovisioned[kind]
        for reason, count in self.rejects.items():
            fields["rejects_" + reason] = count
        if self._latency_n:
            fields["write_latency_ms"] = 1000.0 * self._latency_sum / self._latency_n
            fields["write_latency_max_ms"] = 1000.0 * self._latency_max
        self._latency_sum = self._latency_max = 0.0
        self._latency_n = 0
        fields.update(gauges)
        return [Reading(HUB, site, hub, HUB_SENSOR, "ok", name, float(value), ts) for name, value in fields.items()]
