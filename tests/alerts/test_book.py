"""The AlertBook: events become alerts with a life cycle; de-duplicated, rate-limited, flap-damped, kept across
restarts, and every transition a `qala_alert` point."""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING

import pytest

from hub.alerts import (
    ACKNOWLEDGED,
    FIRING,
    RESOLVED,
    Alert,
    AlertBook,
    AlertError,
    AlertNotFoundError,
    AlertResolvedError,
    alert_readings,
)
from hub.detect.events import CLEAR, CRITICAL, FIRE, LEAK, SILENT, WARNING, Event
from hub.model import ALERT
from hub.sinks.lineproto import encode

if TYPE_CHECKING:
    from pathlib import Path

T0 = 1_795_553_687_000
MIN = 60_000


def fire(device: str = "w1", kind: str = LEAK, quantity: str = "water_flow", ts: int = T0,
         severity: str = WARNING, value: float = 0.4) -> Event:
    return Event(kind, FIRE, device, quantity, severity, ts, f"{quantity} never below {value} at night",
                 {"value": value, "limit": 0.05})


def clear(device: str = "w1", kind: str = LEAK, quantity: str = "water_flow", ts: int = T0) -> Event:
    return Event(kind, CLEAR, device, quantity, WARNING, ts, "back to normal", {})


class Seen:
    def __init__(self) -> None:
        self.changes: list[tuple[str, str, str]] = []

    def __call__(self, alert: Alert, transition: str) -> None:
        self.changes.append((alert.id, transition, alert.state))


def test_life_cycle_fire_update_ack_resolve(tmp_path: Path) -> None:
    seen = Seen()
    book = AlertBook(tmp_path / "alerts.json", district=lambda d: "esil" if d == "w1" else None, listener=seen)
    (alert, transition), = book.apply([fire()], T0 + 1000)
    assert transition == "fired"
    assert re.fullmatch(r"a-[0-9a-f]{12}", alert.id)
    doc = alert.as_dict()
    assert doc == {
        "id": alert.id, "kind": "leak", "severity": "warning", "state": "firing", "device": "w1",
        "quantity": "water_flow", "district": "esil", "message": "water_flow never below 0.4 at night",
        "evidence": {"value": 0.4, "limit": 0.05}, "fired_at": T0, "updated_at": T0 + 1000, "acked_at": None,
        "acked_by": None, "note": None, "resolved_at": None, "count": 1,
    }
    # the same key again: the same alert, new evidence, no transition
    assert book.apply([fire(ts=T0 + MIN, severity=CRITICAL, value=0.5)], T0 + MIN) == []
    assert (alert.count, alert.severity, alert.evidence["value"]) == (2, CRITICAL, 0.5)
    assert len(book.alerts()) == 1
    acked, changed = book.ack(alert.id, "api:control", "crew sent", T0 + 2 * MIN)
    assert changed
    assert (acked.state, acked.acked_by, acked.note, acked.acked_at) == (ACKNOWLEDGED, "api:control", "crew sent",
                                                                        T0 + 2 * MIN)
    again, changed = book.ack(alert.id, "api:other", None, T0 + 3 * MIN)
    assert not changed
    assert again.acked_by == "api:control"
    assert book.alerts()[0].id == alert.id  # acknowledged stays open
    book.apply([clear(ts=T0 + 5 * MIN)], T0 + 5 * MIN + 10)
    assert (alert.state, alert.resolved_at) == (RESOLVED, T0 + 5 * MIN)
    assert book.alerts() == []
    assert book.alerts(include_resolved=True) == [alert]
    with pytest.raises(AlertResolvedError, match=f"alert {alert.id} is resolved: nothing to acknowledge"):
        book.ack(alert.id, "api:control", None, T0 + 6 * MIN)
    with pytest.raises(AlertNotFoundError):
        book.ack("a-000000000000", "api:control", None, T0)
    with pytest.raises(AlertError, match="note: at most 200"):
        book.ack(alert.id, "api:control", "x" * 201, T0)
    assert seen.changes == [(alert.id, "fired", FIRING), (alert.id, "acknowledged", ACKNOWLEDGED),
                            (alert.id, "resolved", RESOLVED)]


def test_a_clear_without_an_alert_changes_nothing() -> None:
    book = AlertBook()
    assert book.apply([clear()], T0) == []
    assert book.alerts(include_resolved=True) == []


def test_keys_are_kind_device_and_quantity() -> None:
    book = AlertBook()
    changes = book.apply([fire(), fire(quantity="heat_flow"), fire(device="w2"), fire(kind=SILENT, quantity="")],
                         T0)
    assert len(changes) == 4
    assert len({a.id for a, _ in changes}) == 4
    silent = book.alerts()[0] if book.alerts()[0].kind == SILENT else next(a for a in book.alerts() if a.kind == SILENT)
    assert silent.quantity is None


def test_flapping_reopens_the_same_alert() -> None:
    seen = Seen()
    book = AlertBook(reopen_s=300, listener=seen)
    (alert, _), = book.apply([fire()], T0)
    book.ack(alert.id, "op", None, T0 + 1)
    book.apply([clear(ts=T0 + MIN)], T0 + MIN)
    (again, transition), = book.apply([fire(ts=T0 + 3 * MIN)], T0 + 3 * MIN)  # within 5 min of resolving
    assert (again.id, transition, again.state, again.count) == (alert.id, "reopened", ACKNOWLEDGED, 2)
    assert again.resolved_at is None
    book.apply([clear(ts=T0 + 4 * MIN)], T0 + 4 * MIN)
    (third, transition), = book.apply([fire(ts=T0 + 10 * MIN)], T0 + 10 * MIN)  # 6 min later: a new alert
    assert transition == "fired"
    assert third.id != alert.id
    assert third.state == FIRING


def test_rate_limit_per_device_and_hour(caplog: pytest.LogCaptureFixture) -> None:
    book = AlertBook(per_device_hour=3)
    quantities = ["q1", "q2", "q3", "q4", "q5"]
    with caplog.at_level(logging.WARNING, logger="hub.alerts"):
        changes = book.apply([fire(quantity=q) for q in quantities], T0)
        book.apply([fire(quantity="q6")], T0 + MIN)
    assert len(changes) == 3
    assert book.suppressed == 3
    assert len(book.apply([fire(device="other")], T0 + MIN)) == 1  # another device has its own budget
    limited = [r.getMessage() for r in caplog.records if "rate limit" in r.getMessage()]
    assert len(limited) == 1  # one line when it starts, not one per dropped alert
    assert "device=w1" in limited[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hub.alerts"):
        assert len(book.apply([fire(quantity="q7")], T0 + 61 * MIN)) == 1  # the hour is over
    summary = [r.getMessage() for r in caplog.records if "rate limit over" in r.getMessage()]
    assert summary == ["alerts: rate limit over device=w1: 3 new alerts were left out in the last hour"]


def test_open_alerts_are_bounded() -> None:
    book = AlertBook(max_open=2, per_device_hour=100)
    assert len(book.apply([fire(quantity=f"q{i}") for i in range(5)], T0)) == 2
    assert book.suppressed == 3


def test_resolved_alerts_kept_are_bounded() -> None:
    book = AlertBook(keep_resolved=3, per_device_hour=100, reopen_s=0)
    for i in range(10):
        book.apply([fire(quantity=f"q{i}")], T0 + i)
        book.apply([clear(quantity=f"q{i}")], T0 + i)
    kept = book.alerts(include_resolved=True)
    assert [a.quantity for a in kept] == ["q9", "q8", "q7"]
    assert len(book._by_id) == 3


def test_kept_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    book = AlertBook(path)
    (alert, _), (other, _) = book.apply([fire(), fire(device="w2")], T0)
    book.ack(alert.id, "op", "seen", T0 + 1)
    book.apply([clear(device="w2")], T0 + 2)
    book.save()
    again = AlertBook(path)
    assert again.get(alert.id) == alert
    assert again.get(other.id) == other
    assert [a.id for a in again.alerts()] == [alert.id]
    # still de-duplicated and flap-damped after the restart
    assert again.apply([fire()], T0 + 3) == []
    (reopened, transition), = again.apply([fire(device="w2")], T0 + 4)
    assert (reopened.id, transition) == (other.id, "reopened")
    mode = path.stat().st_mode & 0o777
    assert mode == 0o644


def test_a_corrupt_file_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "alerts.json"
    for bad in (b"{not json", b'{"format": 1, "alerts": [{"id": "x"}]}', b"[1]", b"\xff\xfe"):
        path.write_bytes(bad)
        with caplog.at_level(logging.ERROR, logger="hub.alerts"):
            book = AlertBook(path)
        assert book.alerts(include_resolved=True) == []
        assert not path.exists()
        assert (tmp_path / "alerts.json.corrupt").read_bytes() == bad
        assert any(r.levelno == logging.ERROR and "moved aside" in r.getMessage() for r in caplog.records)
        caplog.clear()
    book.apply([fire()], T0)
    book.save()
    assert json.loads(path.read_text())["alerts"][0]["device"] == "w1"


def test_save_only_when_changed(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    book = AlertBook(path)
    book.save()
    assert not path.exists()
    book.apply([fire()], T0)
    book.save()
    stamp = path.stat().st_mtime_ns
    path.unlink()
    book.save()
    assert not path.exists()  # nothing changed since
    assert stamp


def test_readings_of_each_transition() -> None:
    book = AlertBook(district=lambda _d: "esil")
    (alert, _), = book.apply([fire()], T0 + 5)
    book.ack(alert.id, "api:control", 'line one\nsaid "hi"', T0 + 10)
    points = alert_readings("astana", alert)
    assert {(r.measurement, r.site, r.device, r.sensor, r.quality, r.ts) for r in points} == {
        (ALERT, "astana", "w1", "leak", "acknowledged", T0 + 10)}
    fields = {r.field: r.value for r in points}
    assert fields == {"id": alert.id, "severity": "warning", "message": "water_flow never below 0.4 at night",
                      "evidence": '{"limit":0.05,"value":0.4}', "count": 1.0, "fired_at": float(T0),
                      "quantity": "water_flow", "district": "esil", "acked_by": "api:control",
                      "note": 'line one said "hi"'}
    (line,) = encode(points)
    assert line.startswith("qala_alert,device=w1,quality=acknowledged,sensor=leak,site=astana ")


def test_each_transition_is_told_as_it_happens() -> None:
    """A fire and a clear of one key in the same round: the listener sees firing, then resolved."""
    told: list[tuple[str, str]] = []
    book = AlertBook(listener=lambda a, transition: told.append((transition, alert_readings("s", a)[0].quality)))
    book.apply([fire(), clear(ts=T0 + 1)], T0 + 2)
    assert told == [("fired", "firing"), ("resolved", "resolved")]
    assert book.alerts(include_resolved=True)[0].state == RESOLVED


def test_reopen_s_zero_never_reopens() -> None:
    book = AlertBook(reopen_s=0)
    (first, _), = book.apply([fire()], T0)
    book.apply([clear()], T0)
    (second, transition), = book.apply([fire()], T0)
    assert (transition, second.id != first.id) == ("fired", True)
