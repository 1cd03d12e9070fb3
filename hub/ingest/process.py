"""One MQTT message in, Readings out: topic and payload decoding, checks, sequence and registry updates.

Owns the bad-input policy. A message that cannot be stored is counted by reason (hub.metrics.REASONS),
logged at most once per device (or, for a bad topic, per reason) per minute, and yields no Readings; it
never raises, so one bad board cannot stop or delay the others. A reading outside the catalogue's
plausible range is stored with quality `range` and counted as `out_of_range`.

Owns the known-device rule too: given the set of provisioned device ids (`known`), a message of any kind
from another id is counted (`Metrics.unprovisioned`), named in a flood-proof log (`FloodLog`) and dropped
before it reaches the sequence tracker, the registry or the control service. `known=None` (a lab bench
without a provisioning store) admits every id, as before.

Feeds each accepted telemetry message, in sequence (not a duplicate, not a late one), to the stream's
detectors (`detect`, hub.detect.engine) when set.

Synchronous and cheap: no I/O except the registry's save on a status change (rare). Imports protocols/,
hub.model, hub.metrics, hub.registry, hub.ingest.sequence and (for types) hub.detect.engine; knows nothing
of MQTT clients or InfluxDB.
"""

from __future__ import annotations

import logging
import time
from operator import itemgetter
from typing import TYPE_CHECKING

import orjson

from hub import metrics as m
from hub.ingest.sequence import Verdict
from hub.model import DEVICE_STATUS, STATUS_SENSOR, Reading, telemetry_readings
from hub.sinks.lineproto import encode_telemetry
from protocols import catalogue, payloads, topics
from protocols.errors import ProtocolError
from protocols.telemetry import MAX_TELEMETRY, check_telemetry

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.detect.engine import Detectors
    from hub.ingest.sequence import SequenceTracker
    from hub.metrics import Metrics
    from hub.registry import Registry

log = logging.getLogger(__name__)

TOPIC_CACHE = 100_000
"""Admitted topics kept (about 3 per device); the cache starts over when it is full."""

_QUALITY = itemgetter(2)
"""The quality of a decoded reading (quantity, value, quality)."""

_GAP, _DUPLICATE, _LATE, _NEXT = Verdict.GAP, Verdict.DUPLICATE, Verdict.LATE, Verdict.NEXT
"""Module constants: the hot path tests every message against them."""

LOG_EVERY = 60.0
"""Seconds between two log lines about the same device (or the same bad-topic reason)."""


class RateLimitedLog:
    """Log a warning for a key at most once per `every` seconds; count what was suppressed."""

    def __init__(self, every: float = LOG_EVERY, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._last: dict[str, float] = {}
        self.suppressed = 0

    def warning(self, key: str, msg: str, *args: object) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self.suppressed += 1
            return False
        self._last[key] = now
        log.warning(msg, *args)
        return True


FLOOD_DEVICES = 10
"""Unprovisioned device ids named one by one per FloodLog window; the others are summed up in one line."""

FLOOD_TRACKED = 100_000
"""Distinct ids counted for a window's summary line (beyond it the count reads `ids=100000+`): bounds memory."""


class FloodLog:
    """Log lines about dropped messages of unprovisioned devices that a flood of made-up ids cannot flood.

    Per window of `every` seconds: one WARNING for each of the first `devices` ids (an id once per window),
    then silence; when the window is over (at the next drop, or at `tick()`, which the service's housekeeping
    calls), one WARNING sums up what was not named: messages and distinct ids. Memory is bounded by
    FLOOD_TRACKED ids per window.
    """

    def __init__(
        self, every: float = LOG_EVERY, devices: int = FLOOD_DEVICES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.every = every
        self.devices = devices
        self.clock = clock
        self._start = clock()
        self._named: set[str] = set()
        self._unnamed: set[str] = set()
        self._unnamed_messages = 0

    def dropped(self, device: str, kind: str) -> None:
        """Note one dropped message of `device` (an id provisioning did not create)."""
        now = self.clock()
        if now - self._start >= self.every:
            self._close(now)
        named = self._named
        if device in named:
            return
        if len(named) < self.devices:
            named.add(device)
            log.warning(
                "unprovisioned device dropped device=%s kind=%s: the id is not in the provisioning store "
                "(counted in qala_hub.unprovisioned_dropped; an id is named at most once per %.0f s)",
                device, kind, self.every,
            )
            return
        self._unnamed_messages += 1
        if len(self._unnamed) < FLOOD_TRACKED:
            self._unnamed.add(device)

    def tick(self) -> None:
        """Write the summary line of a window that is over (no drop may come to do it)."""
        now = self.clock()
        if now - self._start >= self.every:
            self._close(now)

    def _close(self, now: float) -> None:
        if self._unnamed_messages:
            ids = len(self._unnamed)
            log.warning(
                "unprovisioned devices dropped, not named one by one messages=%d ids=%d%s seconds=%.0f "
                "(at most %d ids are named per %.0f s)",
                self._unnamed_messages, ids, "+" if ids >= FLOOD_TRACKED else "", now - self._start,
                self.devices, self.every,
            )
        self._start = now
        self._named = set()
        self._unnamed = set()
        self._unnamed_messages = 0


def decode_telemetry(payload: bytes) -> payloads.Telemetry:
    """`protocols.payloads.decode_telemetry`, with orjson parsing the JSON (about 3 us less per message).

    For a document both accept, orjson gives the same value as json.loads, except that it reads an integer
    beyond 64 bits as a float; it refuses a few documents json.loads takes (NaN and Infinity literals, numbers
    that overflow a double, escaped lone surrogates). So orjson's value is only trusted when protocols' rules
    accept it; anything orjson or the rules refuse is decoded again by protocols alone, which accepts it or
    refuses it with its own reason. The result is always what `payloads.decode_telemetry` gives
    (tests/hub/test_fastjson.py).
    """
    if len(payload) <= MAX_TELEMETRY:
        try:
            return check_telemetry(orjson.loads(payload))
        except (orjson.JSONDecodeError, ProtocolError):
            pass  # refused: decoded again below, so that the reason is the one protocols gives
    return payloads.decode_telemetry(payload)


def _keep_nothing(_device: str, _sensor: str, _ts: int, _values: list[tuple[str, float, str]]) -> None:
    return


def _watches_all(_device: str, _sensor: str, _values: list[tuple[str, float, str]]) -> bool:
    return True


class Processor:
    def __init__(
        self,
        site: str,
        registry: Registry,
        tracker: SequenceTracker,
        metrics: Metrics,
        *,
        require_birth: bool = False,
        known: frozenset[str] | None = None,
        ratelog: RateLimitedLog | None = None,
        floodlog: FloodLog | None = None,
        sequences: bool = True,
    ) -> None:
        """`known`: the provisioned device ids; a message from any other id is dropped (None: every id is
        admitted, the lab-bench mode without a provisioning store). `sequences` false: other hubs take part of
        each board's messages (a cluster, a share group), so a jump in its seqs is no gap and is not judged."""
        self.site = site
        self.sequences = sequences
        self.registry = registry
        self.tracker = tracker
        self.metrics = metrics
        self.require_birth = require_birth
        self.known = known
        self.ratelog = ratelog or RateLimitedLog()
        self.floodlog = floodlog or FloodLog()
        self.watches: Callable[[str, str, list[tuple[str, float, str]]], bool] = _watches_all
        """Whether the control service must see a sample as Readings (set by the service; default: always)."""
        self._topics: dict[str, tuple[str, str]] = {}
        """(device, kind) of topics admitted before: valid, of this site, of a known device. A device sends on
        the same few topics all day, so the checks cost nothing per message after the first."""
        self.sample: Callable[[str, str, int, list[tuple[str, float, str]]], None] = _keep_nothing
        """Called with each telemetry message's (device, sensor, ts, readings): the service's last values for
        district coverage and the API (hub.coverage.LastValues.sample); by default nothing is kept."""
        self.detect: Detectors | None = None
        """The stream's detectors (hub.detect.engine), fed every accepted telemetry message; None: none (the
        service sets it only when [detect] is enabled, so a disabled one costs one attribute test)."""
        self.ids: list[tuple[str, int, int]] | None = None
        """(device, boot, seq) of every telemetry message to store since the service last took them: what it
        confirms to the boards once they are in the spool (hub.ingest.confirm); None: not collected (the hub
        does not confirm)."""

    def take_ids(self) -> list[tuple[str, int, int]] | None:
        """The ids collected since the last call (None if not collected), and a fresh list for the next ones."""
        ids = self.ids
        if ids:
            self.ids = []
        return ids

    def set_known(self, known: frozenset[str] | None) -> None:
        """Replace the provisioned ids (the store was re-read); topics admitted under the old set are forgotten."""
        self.known = known
        self._topics = {}

    def _admit(self, topic: str) -> tuple[str, str] | None:
        """(device, kind) of a topic not seen before, cached; None (counted, logged) if it must be dropped."""
        try:
            site, device, kind = topics.parse(topic)
        except ProtocolError as exc:
            self._reject(m.BAD_TOPIC, m.BAD_TOPIC, "bad topic: %s", exc)
            return None
        if site != self.site:
            self._reject(m.OTHER_SITE, "site:" + site, "message for another site=%s topic=%s", site, topic)
            return None
        known = self.known
        if known is not None and device not in known:
            self.metrics.unprovisioned[kind] += 1
            self.floodlog.dropped(device, kind)
            return None
        if len(self._topics) >= TOPIC_CACHE:
            self._topics.clear()
        admitted = self._topics[topic] = (device, kind)
        return admitted

    def ack_device(self, topic: str) -> str | None:
        """The device of an ack topic, or None when the ack must be dropped (bad topic, other site, unknown id)."""
        admitted = self._topics.get(topic) or self._admit(topic)
        return None if admitted is None else admitted[0]

    def process(self, topic: str, payload: bytes, now_ms: int, lines: list[str] | None = None) -> list[Reading]:
        """The Readings to store for one message (empty for a status that changed nothing, or a reject).

        With `lines`, telemetry that no control rule watches (`self.watches`) is appended there as line
        protocol instead, without Reading objects (the hot path: the same lines encode() would give).
        """
        self.metrics.messages_in += 1
        admitted = self._topics.get(topic) or self._admit(topic)
        if admitted is None:
            return []
        device, kind = admitted
        if kind == topics.TELEMETRY:
            return self._telemetry(device, payload, now_ms, lines)
        if kind == topics.STATUS:
            return self._status(device, payload, now_ms)
        return self._reject(m.BAD_TOPIC, m.BAD_TOPIC, "kind not ingested by the hub: topic=%s", topic)

    def _reject(self, reason: str, key: str, msg: str, *args: object) -> list[Reading]:
        self.metrics.reject(reason)
        self.ratelog.warning(key, "rejected reason=%s " + msg, reason, *args)
        return []

    def _telemetry(self, device: str, payload: bytes, now_ms: int, lines: list[str] | None) -> list[Reading]:
        metrics = self.metrics
        metrics.telemetry_in += 1
        if not self.registry.known(device):
            if self.require_birth:
                return self._reject(m.UNKNOWN_DEVICE, device, "device=%s: telemetry before any birth message", device)
            # stored all the same (site.require_birth = false), but counted and logged so operators see it
            metrics.unknown_device_stored += 1
            self.ratelog.warning(device, "telemetry before any birth message, stored device=%s", device)
        try:
            t = decode_telemetry(payload)
        except ProtocolError as exc:
            return self._reject(m.BAD_PAYLOAD, device, "device=%s kind=telemetry error=%s", device, exc)
        if self.ids is not None:
            self.ids.append((device, t.boot, t.seq))
        verdict = self.tracker.see(device, t.boot, t.seq) if self.sequences else _NEXT
        if verdict is Verdict.GAP:
            self.ratelog.warning("gap:" + device, "sequence gap device=%s boot=%d seq=%d", device, t.boot, t.seq)
        self.registry.seen(device, now_ms)
        self.sample(device, t.sensor, t.ts, t.readings)
        metrics.readings_in += len(t.readings)
        detect = self.detect
        if detect is not None and verdict is not _DUPLICATE and verdict is not _LATE:
            # a resent or late message is old news to the detectors: its counter would seem to step back
            detect.sample(device, t.sensor, t.ts, t.readings, now_ms, verdict is _GAP)
        if catalogue.RANGE in map(_QUALITY, t.readings):  # rare: the loop only then
            self._out_of_range(device, t)
        if lines is not None and not self.watches(device, t.sensor, t.readings):
            lines += encode_telemetry(self.site, device, t.sensor, t.ts, t.readings, catalogue.QUANTITIES)
            return []
        return telemetry_readings(self.site, device, t.sensor, t.ts, t.readings)

    def _out_of_range(self, device: str, t: payloads.Telemetry) -> None:
        for quantity, value, quality in t.readings:
            if quality == catalogue.RANGE:
                self.metrics.reject(m.OUT_OF_RANGE)
                self.ratelog.warning(
                    "range:" + device,
                    "reading out of range, stored with quality=range device=%s sensor=%s %s=%r",
                    device, t.sensor, quantity, value,
                )

    def _status(self, device: str, payload: bytes, now_ms: int) -> list[Reading]:
        self.metrics.status_in += 1
        try:
            status = payloads.decode_status(payload)
        except ProtocolError as exc:
            return self._reject(m.BAD_PAYLOAD, device, "device=%s kind=status error=%s", device, exc)
        if not self.registry.update(device, status, now_ms):
            return []
        log.info("device status device=%s state=%s fw=%s boot=%s", device, status.state, status.fw, status.boot)
        return status_readings(self.site, device, status, now_ms)


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def status_readings(site: str, device: str, status: payloads.Status, now_ms: int) -> list[Reading]:
    """`qala_device_status` Readings: at the board's timestamp, or the hub's for a last will (it has none)."""
    ts = status.ts if status.ts is not None else now_ms
    fields: list[tuple[str, float | str]] = [
        ("state", status.state),
        ("online", 0.0 if status.state == payloads.OFFLINE else 1.0),
        ("safe", 1.0 if status.state == payloads.SAFE else 0.0),
    ]
    if status.boot is not None:
        fields.append(("boot", float(status.boot)))
    if status.fw is not None:
        fields.append(("fw", _one_line(status.fw)))
    if status.error is not None:
        fields.append(("error", _one_line(status.error)))
    return [Reading(DEVICE_STATUS, site, device, STATUS_SENSOR, catalogue.OK, f, v, ts) for f, v in fields]
