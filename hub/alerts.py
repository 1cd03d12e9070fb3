"""Alerts with a life cycle: the detectors' Events (hub.detect.events) become alerts an operator can see,
acknowledge and watch resolve.

One alert per Event key (kind, device, quantity) at a time:

- a FIRE of a key without an open alert opens one, `firing`, with a new id `a-<12 hex>`; a FIRE of a key
  whose alert is open updates it (message, severity, evidence, `count` + 1): de-duplicated, no new alert;
- a CLEAR resolves the key's open alert (`resolved`, `resolved_at`); a CLEAR of a key without one is ignored;
- `ack(id, by, note)`: an operator has seen it: `acknowledged`, which stays open until the CLEAR comes;
  acknowledging an acknowledged alert changes nothing, a resolved one is refused (AlertResolvedError);
- flap damping: a key that fires again within `reopen_s` of its alert resolving reopens that same alert (same
  id, `count` + 1, back to `firing`, or `acknowledged` if an operator had acknowledged it) instead of opening
  a new one;
- rate limit: at most `per_device_hour` NEW alerts per device in any hour (reopened and updated ones do not
  count). Further FIREs of that device are dropped and counted (`suppressed`); one WARNING names the device
  when it starts, and one more line sums up what was left out once its hour is over.

Every transition (fired, reopened, acknowledged, resolved) goes to the `listener` given (the hub service
turns it into `qala_alert` Readings, the northbound feed and automatic actions); updates of an open alert are
kept (the API shows them, the file saves them) but are not transitions. `alert_readings` gives the Readings.

Persistence: `save()` writes the open alerts and the last `keep_resolved` resolved ones to one JSON file
(`<state>/alerts.json`) atomically (hub.atomic), only when something changed; a restart loads it. A file that
cannot be read is moved aside to `alerts.json.corrupt` with an ERROR, and the book starts empty.

Memory is bounded: at most `max_open` open alerts (10,000 by default; FIREs beyond are suppressed and counted
like rate-limited ones), `keep_resolved` resolved ones (1,000), and per device at most `per_device_hour`
timestamps for the rate limit: a few MB at most.

Imports the standard library, hub.atomic, hub.model and hub.detect.events; knows nothing of MQTT, InfluxDB,
HTTP or the detectors themselves.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from hub.atomic import write_atomic
from hub.detect.events import CLEAR, FIRE, SEVERITIES
from hub.model import ALERT, Reading

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from hub.detect.events import Event

log = logging.getLogger(__name__)

FORMAT = 1

FIRING = "firing"
ACKNOWLEDGED = "acknowledged"
RESOLVED = "resolved"
STATES = (FIRING, ACKNOWLEDGED, RESOLVED)
OPEN_STATES = (FIRING, ACKNOWLEDGED)

# transitions handed to the listener
FIRED = "fired"
REOPENED = "reopened"
ACKED = "acknowledged"
CLEARED = "resolved"

HOUR_MS = 3_600_000
MAX_OPEN = 10_000
NOTE_MAX = 200


class AlertError(ValueError):
    """An operator's request the book refuses; `status` is the HTTP status the API answers with."""

    status = 400


class AlertNotFoundError(AlertError):
    status = 404


class AlertResolvedError(AlertError):
    status = 409


def new_id() -> str:
    return "a-" + os.urandom(6).hex()


@dataclass
class Alert:
    """One alert; `as_dict()` is the Alert JSON of the API and the northbound feed (docs/operators.md)."""

    id: str
    kind: str
    severity: str
    state: str
    device: str
    quantity: str | None
    district: str | None
    message: str
    evidence: dict[str, Any]
    fired_at: int
    updated_at: int
    acked_at: int | None = None
    acked_by: str | None = None
    note: str | None = None
    resolved_at: int | None = None
    count: int = 1
    was_acked: bool = field(default=False, repr=False)
    """Not in the JSON: an acknowledged alert that resolved goes back to acknowledged if it reopens."""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.device, self.quantity or "")

    @property
    def open(self) -> bool:
        return self.state != RESOLVED

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["was_acked"]
        out["evidence"] = dict(self.evidence)
        return out

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Alert:
        """An alert from the state file; ValueError/TypeError/KeyError when it is not one."""
        alert = cls(**doc)
        if alert.state not in STATES or alert.severity not in SEVERITIES or not alert.id.startswith("a-"):
            raise ValueError(f"alert {alert.id!r}: bad state or severity")
        if not isinstance(alert.evidence, dict) or not isinstance(alert.count, int):
            raise TypeError(f"alert {alert.id!r}: bad evidence or count")
        return alert


class AlertBook:
    def __init__(
        self,
        path: Path | None = None,
        *,
        per_device_hour: int = 10,
        reopen_s: float = 300.0,
        keep_resolved: int = 1000,
        max_open: int = MAX_OPEN,
        district: Callable[[str], str | None] | None = None,
        listener: Callable[[Alert, str], None] | None = None,
    ) -> None:
        """`path`: the state file (None: memory only). `district(device)`: the device's district (None if it
        has none). `listener(alert, transition)`: called for each transition (FIRED, REOPENED, ACKED, CLEARED)."""
        self.path = path
        self.per_device_hour = per_device_hour
        self.reopen_ms = int(reopen_s * 1000)
        self.keep_resolved = keep_resolved
        self.max_open = max_open
        self.district = district or (lambda _device: None)
        self.listener = listener
        self.open: dict[tuple[str, str, str], Alert] = {}
        self.resolved: OrderedDict[str, Alert] = OrderedDict()
        """id -> resolved alert, oldest first (at most keep_resolved)."""
        self._by_id: dict[str, Alert] = {}
        self._last_resolved: dict[tuple[str, str, str], str] = {}
        """key -> id of its latest resolved alert (still in `resolved`)."""
        self._recent: dict[str, deque[int]] = {}
        """device -> times (hub clock, ms) of its new alerts in the last hour (at most per_device_hour)."""
        self._held: dict[str, int] = {}
        """device -> FIREs suppressed in its current window (summed up in one line when the window ends)."""
        self.suppressed = 0
        """FIREs dropped by the rate limit or the max_open bound since start."""
        self._dirty = False
        self._save_failing = False
        if path is not None:
            self._load(path)

    # ------------------------------------------------------------------------------------ queries

    def get(self, alert_id: str) -> Alert | None:
        return self._by_id.get(alert_id)

    def alerts(self, *, include_resolved: bool = False, limit: int | None = None) -> list[Alert]:
        """Open alerts (and the kept resolved ones), newest first (by updated_at)."""
        found: Iterable[Alert] = self._by_id.values() if include_resolved else self.open.values()
        ordered = sorted(found, key=lambda a: (a.updated_at, a.fired_at), reverse=True)
        return ordered if limit is None else ordered[:limit]

    def open_count(self, devices: Iterable[str] | None = None) -> int:
        if devices is None:
            return len(self.open)
        wanted = set(devices)
        return sum(1 for a in self.open.values() if a.device in wanted)

    # ------------------------------------------------------------------------------------ changes

    def apply(self, events: Iterable[Event], now_ms: int) -> list[tuple[Alert, str]]:
        """Take the detectors' events in order; the transitions they made (also handed to the listener)."""
        changes: list[tuple[Alert, str]] = []
        for event in events:
            if event.state == FIRE:
                change = self._fire(event, now_ms)
            elif event.state == CLEAR:
                change = self._clear(event, now_ms)
            else:
                log.warning("alerts: event with unknown state=%s kind=%s device=%s: ignored", event.state,
                            event.kind, event.device)
                continue
            if change is not None:
                changes.append(change)
                self._tell(*change)  # now: a later event of this round may change the alert again
        self._expire_windows(now_ms)
        return changes

    def ack(self, alert_id: str, by: str, note: str | None, now_ms: int) -> tuple[Alert, bool]:
        """(the alert, whether it changed): acknowledged by `by`. AlertNotFoundError for an unknown id,
        AlertResolvedError for a resolved one, AlertError for a note too long."""
        if note is not None and len(note) > NOTE_MAX:
            raise AlertError(f"note: at most {NOTE_MAX} characters, got {len(note)}")
        alert = self._by_id.get(alert_id)
        if alert is None:
            raise AlertNotFoundError(f"unknown alert id {alert_id!r}")
        if alert.state == RESOLVED:
            raise AlertResolvedError(f"alert {alert_id} is resolved: nothing to acknowledge")
        if alert.state == ACKNOWLEDGED:
            return alert, False
        alert.state = ACKNOWLEDGED
        alert.acked_at = alert.updated_at = now_ms
        alert.acked_by = by
        alert.note = note
        alert.was_acked = True
        self._dirty = True
        log.info("alert acknowledged id=%s kind=%s device=%s by=%s", alert.id, alert.kind, alert.device, by)
        self._tell(alert, ACKED)
        return alert, True

    def _tell(self, alert: Alert, transition: str) -> None:
        if self.listener is not None:
            try:
                self.listener(alert, transition)
            except Exception:
                log.exception("alerts: the listener failed id=%s transition=%s", alert.id, transition)

    def _fire(self, event: Event, now_ms: int) -> tuple[Alert, str] | None:
        key = event.key
        alert = self.open.get(key)
        if alert is not None:  # the same condition, still on: new evidence
            alert.message, alert.severity, alert.evidence = event.message, event.severity, dict(event.evidence)
            alert.count += 1
            alert.updated_at = now_ms
            self._dirty = True
            return None
        old_id = self._last_resolved.get(key)
        old = self.resolved.get(old_id) if old_id is not None else None
        if old is not None and self.reopen_ms > 0 and now_ms - old.updated_at <= self.reopen_ms:
            return self._reopen(old, event, now_ms)
        if not self._admit(event.device, now_ms):
            return None
        alert = Alert(
            id=new_id(), kind=event.kind, severity=event.severity, state=FIRING, device=event.device,
            quantity=event.quantity or None, district=self.district(event.device), message=event.message,
            evidence=dict(event.evidence), fired_at=event.ts, updated_at=now_ms,
        )
        self.open[key] = alert
        self._by_id[alert.id] = alert
        self._dirty = True
        log.info("alert firing id=%s kind=%s device=%s quantity=%s severity=%s: %s", alert.id, alert.kind,
                 alert.device, event.quantity, alert.severity, alert.message)
        return alert, FIRED

    def _reopen(self, alert: Alert, event: Event, now_ms: int) -> tuple[Alert, str]:
        del self.resolved[alert.id]
        del self._last_resolved[alert.key]
        alert.state = ACKNOWLEDGED if alert.was_acked else FIRING
        alert.resolved_at = None
        alert.message, alert.severity, alert.evidence = event.message, event.severity, dict(event.evidence)
        alert.count += 1
        alert.updated_at = now_ms
        self.open[alert.key] = alert
        self._dirty = True
        log.info("alert reopened (fired again within alerts.reopen_s of resolving) id=%s kind=%s device=%s "
                 "count=%d", alert.id, alert.kind, alert.device, alert.count)
        return alert, REOPENED

    def _admit(self, device: str, now_ms: int) -> bool:
        """Whether a new alert of `device` may open now (rate limit and max_open); counts the refusals."""
        if len(self.open) >= self.max_open:
            if not self.suppressed:
                log.error("alerts: %d alerts open, new ones are dropped and counted until some resolve",
                          self.max_open)
            self.suppressed += 1
            return False
        recent = self._recent.get(device)
        if recent is None:
            recent = self._recent[device] = deque(maxlen=self.per_device_hour)
        if recent and now_ms - recent[0] >= HOUR_MS:
            self._summarise(device)
        while recent and now_ms - recent[0] >= HOUR_MS:
            recent.popleft()
        if len(recent) < self.per_device_hour:
            recent.append(now_ms)
            return True
        self.suppressed += 1
        held = self._held.get(device, 0)
        if not held:
            log.warning("alerts: rate limit: device=%s opened %d alerts within an hour (alerts.per_device_hour); "
                        "its further new alerts are dropped until the hour is over, and summed up then",
                        device, self.per_device_hour)
        self._held[device] = held + 1
        return False

    def _expire_windows(self, now_ms: int) -> None:
        """Sum up the rate-limit windows that are over; forget devices without a new alert for an hour."""
        for device in [d for d in self._held if now_ms - self._recent[d][0] >= HOUR_MS]:
            self._summarise(device)
        for device in [d for d, recent in self._recent.items() if not recent or now_ms - recent[-1] >= HOUR_MS]:
            del self._recent[device]

    def _summarise(self, device: str) -> None:
        held = self._held.pop(device, 0)
        if held:
            log.warning("alerts: rate limit over device=%s: %d new alerts were left out in the last hour",
                        device, held)

    def _clear(self, event: Event, now_ms: int) -> tuple[Alert, str] | None:
        alert = self.open.pop(event.key, None)
        if alert is None:
            return None
        alert.state = RESOLVED
        alert.resolved_at = event.ts
        alert.updated_at = now_ms
        if event.message:
            alert.evidence = dict(event.evidence) or alert.evidence
        self._remember_resolved(alert)
        self._dirty = True
        log.info("alert resolved id=%s kind=%s device=%s count=%d", alert.id, alert.kind, alert.device, alert.count)
        return alert, CLEARED

    def _remember_resolved(self, alert: Alert) -> None:
        self.resolved[alert.id] = alert
        self._last_resolved[alert.key] = alert.id
        while len(self.resolved) > self.keep_resolved:
            _, old = self.resolved.popitem(last=False)
            del self._by_id[old.id]
            if self._last_resolved.get(old.key) == old.id:
                del self._last_resolved[old.key]

    # ------------------------------------------------------------------------------------ the file

    def save(self) -> None:
        """Write the file atomically if anything changed since the last save; OSError logged, kept dirty."""
        if self.path is None or not self._dirty:
            return
        alerts = [a.as_dict() | {"was_acked": a.was_acked} for a in [*self.open.values(), *self.resolved.values()]]
        data = json.dumps({"format": FORMAT, "alerts": alerts}, separators=(",", ":")).encode()
        try:
            write_atomic(self.path, data)
        except OSError as exc:
            if not self._save_failing:
                log.error("alerts: cannot save path=%s error=%s; kept in memory, saved again later",  # noqa: TRY400 - a disk condition
                          self.path, exc.strerror or exc)
            self._save_failing = True
            return
        self._save_failing = False
        self._dirty = False

    def _load(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, UnicodeError) as exc:
            self._corrupt(path, exc)
            return
        try:
            document = json.loads(text)
            if not isinstance(document, dict) or document.get("format") != FORMAT:
                raise ValueError("unknown format")  # noqa: TRY301
            alerts = [Alert.from_dict(doc) for doc in document["alerts"]]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self._corrupt(path, exc)
            return
        for alert in alerts:
            self._by_id[alert.id] = alert
            if alert.open:
                self.open[alert.key] = alert
        for alert in sorted((a for a in alerts if not a.open), key=lambda a: a.updated_at):
            self._remember_resolved(alert)
        log.info("alerts: loaded path=%s open=%d resolved=%d", path, len(self.open), len(self.resolved))

    def _corrupt(self, path: Path, exc: Exception) -> None:
        aside = path.with_name(path.name + ".corrupt")
        log.error("alerts: state file unreadable, moved aside; starting with no alerts path=%s aside=%s error=%s",
                  path, aside, exc)
        try:
            path.replace(aside)
        except OSError as err:
            log.error("alerts: cannot move the file aside path=%s error=%s", path, err.strerror or err)  # noqa: TRY400
        self.open.clear()
        self.resolved.clear()
        self._by_id.clear()
        self._last_resolved.clear()


def alert_readings(site: str, alert: Alert) -> list[Reading]:
    """The `qala_alert` point of an alert's current state (docs/influxdb.md): device = the alert's device,
    sensor = its kind, quality = its state; at the time of the transition (updated_at, hub clock)."""
    fields: list[tuple[str, float | str]] = [
        ("id", alert.id),
        ("severity", alert.severity),
        ("message", _one_line(alert.message)),
        ("evidence", json.dumps(alert.evidence, separators=(",", ":"), sort_keys=True)),
        ("count", float(alert.count)),
        ("fired_at", float(alert.fired_at)),
    ]
    if alert.quantity is not None:
        fields.append(("quantity", alert.quantity))
    if alert.district is not None:
        fields.append(("district", alert.district))
    if alert.acked_by is not None:
        fields.append(("acked_by", alert.acked_by))
    if alert.note is not None:
        fields.append(("note", _one_line(alert.note)))
    if alert.resolved_at is not None:
        fields.append(("resolved_at", float(alert.resolved_at)))
    return [Reading(ALERT, site, alert.device, alert.kind, alert.state, f, v, alert.updated_at) for f, v in fields]


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")
