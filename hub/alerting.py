"""The hub's alerting loop: detectors' events -> the alert book -> InfluxDB, the northbound feed and
automatic actions; district coverage rounds.

`Alerting` owns the AlertBook (hub.alerts, `<state>/alerts.json`) and the last values (hub.coverage.LastValues,
fed by the ingest). Its `run()` task:
- every `interval` seconds (`detect.interval`, 10 by default) takes `detectors.tick(now_ms)` (hub.detect; no
  detectors, or detectors switched off: no events), hands the events to the book and saves it when it changed;
- every `alerts.summary_interval` seconds computes the District documents (hub.coverage.summaries), stores
  them as `qala_coverage` Readings and hands each to the northbound feed (`north.summary(doc)`).
Each alert transition (fired, reopened, acknowledged, resolved) becomes `qala_alert` Readings (through `emit`,
into the spool), goes to the northbound feed (`north.alert(alert_json)`), and, when it fired or reopened, to
the automatic actions of [[alerts.actions]] that match it: a setpoint through the control service
(`submit_automatic`, source `alert:<id>`), so the limits, the journal and the audit apply as to any command.

Which devices the site expects comes from `places()`, a callable the service gives: provisioned boards with
their district and coordinates (the store), configured Modbus devices (their [modbus.devices.NAME] table),
their online state (registry, poller) and the quantities they announce.

Imports hub.alerts, hub.coverage, hub.model and the config types; the detectors, the northbound feed and the
control service are handed in (any objects with the methods used), so it knows nothing of MQTT or HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from hub.alerts import FIRED, REOPENED, Alert, AlertBook, alert_readings
from hub.coverage import LastValues, Place, coverage_readings, device_view, summaries
from protocols import payloads

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from pathlib import Path

    from hub.config import AlertsConfig
    from hub.detect.events import Event
    from hub.model import Reading

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 10.0
"""Seconds between detector ticks without a [detect] section."""
DEFAULT_REPORT_S = 60.0
"""A device's reporting interval before one is learned or configured (coverage's on-time check)."""
STATE_FILE = "alerts.json"


class DetectorsLike(Protocol):
    enabled: bool

    def tick(self, now_ms: int) -> list[Event]: ...


class NorthLike(Protocol):
    def alert(self, alert_json: dict[str, Any]) -> None: ...

    def summary(self, summary_json: dict[str, Any]) -> None: ...


class ControlLike(Protocol):
    def submit_automatic(self, device: str, actuator: str, value: float, source: str) -> Any: ...


class Alerting:
    def __init__(
        self,
        site: str,
        config: AlertsConfig,
        state: Path | None,
        *,
        emit: Callable[[list[Reading]], None],
        places: Callable[[], Mapping[str, Place]],
        control: ControlLike | None = None,
        detectors: DetectorsLike | None = None,
        north: NorthLike | None = None,
        interval: float = DEFAULT_INTERVAL,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.site = site
        self.config = config
        self.emit = emit
        self.places = places
        self.control = control
        self.detectors = detectors
        self.north = north
        self.interval = interval
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.values = LastValues()
        self._cached: tuple[float, Mapping[str, Place]] | None = None
        self.book = AlertBook(
            None if state is None else state / STATE_FILE, per_device_hour=config.per_device_hour,
            reopen_s=config.reopen_s, keep_resolved=config.keep_resolved, district=self._district,
            listener=self._transition,
        )
        self.actions_sent = 0
        self.last_summary: list[dict[str, Any]] = []
        self.last_summary_ms = 0

    def _district(self, device: str) -> str | None:
        place = self._places().get(device)
        return None if place is None else place.district

    def _places(self) -> Mapping[str, Place]:
        """The expected devices, built at most once a second (a tick may open many alerts)."""
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] >= 1.0:
            self._cached = (now, self.places())
        return self._cached[1]

    # ------------------------------------------------------------------------------ transitions

    def _transition(self, alert: Alert, transition: str) -> None:
        self.emit(alert_readings(self.site, alert))
        if self.north is not None:
            self.north.alert(alert.as_dict())
        if transition in (FIRED, REOPENED):
            self._act(alert)

    def _act(self, alert: Alert) -> None:
        if self.control is None:
            return
        for action in self.config.actions:
            if not action.matches(alert.kind, alert.device, alert.district):
                continue
            target = action.target_device or alert.device
            log.warning("alert action: alert=%s kind=%s device=%s -> %s.%s=%g", alert.id, alert.kind, alert.device,
                        target, action.actuator, action.value)
            self.control.submit_automatic(target, action.actuator, action.value, f"alert:{alert.id}")
            self.actions_sent += 1

    # ------------------------------------------------------------------------------ operators

    def ack(self, alert_id: str, by: str, note: str | None) -> tuple[Alert, bool]:
        """hub.alerts.AlertBook.ack at the hub's clock; saved at once (an operator's word is not lost)."""
        alert, changed = self.book.ack(alert_id, by, note, self.clock_ms())
        if changed:
            self.book.save()
        return alert, changed

    def districts(self) -> list[dict[str, Any]]:
        """The District documents as of now."""
        opened: dict[str, int] = {}
        for alert in self.book.open.values():
            opened[alert.device] = opened.get(alert.device, 0) + 1
        return summaries(self._places(), self.values, opened, self.clock_ms(), factor=self.config.on_time_factor,
                         default_interval_s=DEFAULT_REPORT_S)

    def devices(self) -> dict[str, dict[str, Any]]:
        """device -> the fields GET /v1/devices adds (district, lat, lon, online, last_seen, values)."""
        return {name: device_view(name, place, self.values.entries(name)) for name, place in self._places().items()}

    # ------------------------------------------------------------------------------ the loop

    def tick(self, now_ms: int | None = None) -> int:
        """One detector round: their events into the book (transitions emitted), the book saved; the number of
        transitions."""
        now = self.clock_ms() if now_ms is None else now_ms
        events: list[Event] = []
        detectors = self.detectors
        if detectors is not None and detectors.enabled:
            try:
                events = detectors.tick(now)
            except Exception:
                log.exception("detectors: tick failed; no events this round")
        changes = self.book.apply(events, now)
        self.book.save()
        return len(changes)

    def summary_round(self) -> list[dict[str, Any]]:
        """Coverage now: stored as qala_coverage points and handed to the northbound feed."""
        docs = self.districts()
        now = self.clock_ms()
        self.emit(coverage_readings(self.site, docs, now))
        if self.north is not None:
            for doc in docs:
                self.north.summary(doc)
        self.last_summary, self.last_summary_ms = docs, now
        return docs

    async def run(self) -> None:
        """Ticks every `interval` s; a coverage round every summary_interval s (the first after at most 10 s)."""
        now = time.monotonic()
        next_tick = now + self.interval
        next_summary = now + min(self.config.summary_interval, 10.0)
        while True:
            await asyncio.sleep(max(0.0, min(next_tick, next_summary) - time.monotonic()))
            now = time.monotonic()
            if now >= next_tick:
                self.tick()
                next_tick += self.interval
                if next_tick < now:  # a slow round (or a suspended machine): no burst of catch-up ticks
                    next_tick = now + self.interval
            if now >= next_summary:
                self.summary_round()
                next_summary = now + self.config.summary_interval

    def close(self) -> None:
        self.book.save()


def site_places(
    trust: Any,
    registry: Any,
    modbus_devices: Iterable[Any],
    modbus_online: Callable[[str], bool | None],
    values: LastValues,
) -> dict[str, Place]:
    """The devices a site expects, with their place and state: provisioned boards (`trust`, a
    hub.trust.store.TrustStore; None in plain mode: every device in the registry), and the configured Modbus
    devices (hub.modbus.config.DeviceConfig). `registry`: hub.registry.Registry (online state, last seen,
    the quantities a birth announced); `modbus_online(name)`: the poller's view (None before its first poll)."""
    out: dict[str, Place] = {}
    known = registry.devices
    names = sorted(trust.devices()) if trust is not None else sorted(known)
    for name in names:
        entry = trust.entry(name) if trust is not None else None
        info = known.get(name)
        quantities: set[str] = set()
        if info is not None:
            for sensor in (info.caps.get("sensors") or {}).values():
                if isinstance(sensor, dict):
                    quantities.update(q for q in sensor.get("q", ()) if isinstance(q, str))
        out[name] = Place(
            district=None if entry is None else entry.district,
            lat=None if entry is None else entry.lat,
            lon=None if entry is None else entry.lon,
            online=info is not None and info.state != payloads.OFFLINE,
            last_seen=(info.last_seen or None) if info is not None else None,
            quantities=frozenset(quantities),
        )
    for device in modbus_devices:
        newest = max((ts for _v, ts in values.last(device.name).values()), default=None)
        out[device.name] = Place(
            district=device.district, lat=device.lat, lon=device.lon, online=modbus_online(device.name) is True,
            last_seen=newest,
            quantities=frozenset(r.quantity for r in device.profile.registers if not r.writable),
            interval_s=device.interval, transport="modbus",
        )
    return out
