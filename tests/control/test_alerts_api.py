"""The alert and district endpoints of the HTTP API, and automatic actions, without a broker: the real
control service (signed commands, a recording publish function), the real alerting loop fed with events.

Roles (read GETs, control acknowledges), the error style of the other endpoints, the OpenAPI document; an
[[alerts.actions]] entry turns a fired alert into a real command, audited with source `alert:<id>`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.alerting import Alerting
from hub.config import AlertAction, AlertsConfig, ApiConfig
from hub.control.api import make_app
from hub.coverage import Place
from hub.detect.events import CLEAR, FIRE, LEAK, WARNING, Event
from hub.model import ALERT, COMMAND
from protocols import payloads
from tests.control.test_service_api import KEY, T0, TOKEN, Rig

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from hub.model import Reading

READ = "read-token-0123456789abc"
CONTROL = {"Authorization": f"Bearer {TOKEN}"}
READER = {"Authorization": f"Bearer {READ}"}


class Detectors:
    """Stands in for hub.detect's: hands out the events it is given."""

    enabled = True

    def __init__(self) -> None:
        self.events: list[Event] = []

    def tick(self, _now_ms: int) -> list[Event]:
        events, self.events = self.events, []
        return events


class North:
    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.summaries: list[dict[str, Any]] = []

    def alert(self, doc: dict[str, Any]) -> None:
        self.alerts.append(doc)

    def summary(self, doc: dict[str, Any]) -> None:
        self.summaries.append(doc)


def leak(state: str = FIRE, device: str = "t1") -> Event:
    return Event(LEAK, state, device, "water_flow", WARNING, T0, "flow never below 0.4 m3/h at night",
                 {"night_min": 0.4, "limit": 0.05})


class Setup:
    def __init__(self, tmp: Path, actions: tuple[AlertAction, ...] = ()) -> None:
        self.rig = Rig(tmp)
        self.stored: list[Reading] = self.rig.stored
        self.detectors = Detectors()
        self.north = North()
        self.places = {"t1": Place("esil", 51.13, 71.43, online=True, quantities=frozenset({"pm25"})),
                       "w9": Place(None)}
        self.alerting = Alerting("lab", AlertsConfig(actions=actions), tmp, emit=self.stored.extend,
                                 places=lambda: self.places, control=self.rig.control, detectors=self.detectors,
                                 north=self.north, clock_ms=lambda: self.rig.now)

    def fire(self, *events: Event) -> None:
        self.detectors.events += events
        self.alerting.tick()


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


@pytest.fixture
async def client(setup: Setup) -> AsyncIterator[TestClient[Any, Any]]:
    app = make_app(setup.rig.control, ApiConfig(control_token=TOKEN, read_token=READ), alerting=setup.alerting)
    async with TestClient(TestServer(app)) as c:
        yield c


async def call(client: TestClient[Any, Any], method: str, path: str, headers: dict[str, str],
               body: object = None, raw: bytes | None = None) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {"headers": headers}
    if raw is not None:
        kwargs["data"] = raw
    elif body is not None:
        kwargs["json"] = body
    async with client.request(method, path, **kwargs) as r:
        return r.status, await r.json()


async def test_list_get_ack_and_resolve(setup: Setup, client: TestClient[Any, Any]) -> None:
    assert await call(client, "GET", "/v1/alerts", READER) == (200, {"alerts": []})
    setup.fire(leak())
    status, body = await call(client, "GET", "/v1/alerts", READER)
    assert status == 200
    (alert,) = body["alerts"]
    assert (alert["state"], alert["district"], alert["device"], alert["count"]) == ("firing", "esil", "t1", 1)
    assert await call(client, "GET", f"/v1/alerts/{alert['id']}", READER) == (200, alert)
    status, refused = await call(client, "POST", f"/v1/alerts/{alert['id']}/ack", READER, {"note": "x"})
    assert status == 403
    assert refused["needed"] == "control"
    setup.rig.now += 5000
    status, acked = await call(client, "POST", f"/v1/alerts/{alert['id']}/ack", CONTROL, {"note": "crew on the way"})
    assert status == 200
    assert (acked["state"], acked["acked_by"], acked["note"], acked["acked_at"]) == (
        "acknowledged", "api:control", "crew on the way", T0 + 5000)
    assert await call(client, "POST", f"/v1/alerts/{alert['id']}/ack", CONTROL) == (200, acked)  # unchanged
    setup.fire(leak(CLEAR))
    status, body = await call(client, "POST", f"/v1/alerts/{alert['id']}/ack", CONTROL, {})
    assert (status, body) == (409, {"error": f"alert {alert['id']} is resolved: nothing to acknowledge",
                                    "field": "id"})
    assert await call(client, "GET", "/v1/alerts?state=open", READER) == (200, {"alerts": []})
    status, body = await call(client, "GET", "/v1/alerts?state=all&limit=5", READER)
    assert [a["state"] for a in body["alerts"]] == ["resolved"]
    # each transition: qala_alert points (through emit) and a northbound document
    assert [r.quality for r in setup.stored if r.measurement == ALERT and r.field == "id"] == [
        "firing", "acknowledged", "resolved"]
    assert [d["state"] for d in setup.north.alerts] == ["firing", "acknowledged", "resolved"]


@pytest.mark.parametrize(("method", "path", "body", "status", "error", "field"), [
    ("GET", "/v1/alerts?state=closed", None, 400, "must be open or all, got 'closed'", "state"),
    ("GET", "/v1/alerts?limit=0", None, 400, "must be a whole number 1..1000, got '0'", "limit"),
    ("GET", "/v1/alerts?limit=x", None, 400, "must be a whole number 1..1000, got 'x'", "limit"),
    ("GET", "/v1/alerts/a-000000000000", None, 404, "unknown alert id", "id"),
    ("POST", "/v1/alerts/a-000000000000/ack", {}, 404, "unknown alert id 'a-000000000000'", "id"),
    ("POST", "/v1/alerts/{id}/ack", {"note": "x" * 201}, 400, "at most 200 characters, got 201", "note"),
    ("POST", "/v1/alerts/{id}/ack", {"note": 5}, 400, "must be a string", "note"),
    ("POST", "/v1/alerts/{id}/ack", {"by": "me"}, 400, "unknown key 'by' (known: note)", "by"),
    ("POST", "/v1/alerts/{id}/ack", b"{nope", 400, "body is not valid JSON", None),
    ("POST", "/v1/alerts/{id}/ack", b"[1]", 400, "body must be a JSON object", None),
])
async def test_refusals(setup: Setup, client: TestClient[Any, Any], method: str, path: str, body: object,
                        status: int, error: str, field: str | None) -> None:
    setup.fire(leak())
    alert_id = setup.alerting.book.alerts()[0].id
    raw = body if isinstance(body, bytes) else None
    got = await call(client, method, path.replace("{id}", alert_id), CONTROL, None if raw else body, raw)
    expected: dict[str, Any] = {"error": error} | ({"field": field} if field else {})
    assert got == (status, expected)
    assert setup.alerting.book.get(alert_id).state == "firing"  # type: ignore[union-attr]


async def test_tokens_are_needed(client: TestClient[Any, Any]) -> None:
    for path in ("/v1/alerts", "/v1/districts", "/v1/alerts/a-000000000000"):
        assert (await call(client, "GET", path, {}))[0] == 401
    assert (await call(client, "POST", "/v1/alerts/a-000000000000/ack", {"Authorization": "Bearer wrong"}))[0] == 401


async def test_districts_and_devices(setup: Setup, client: TestClient[Any, Any]) -> None:
    setup.alerting.values.sample("t1", "s1", T0 - 2000, [("pm25", 30.0, "ok")])
    setup.alerting.values.sample("t1", "s1", T0 - 1000, [("pm25", 40.0, "ok")])
    setup.fire(leak())
    status, body = await call(client, "GET", "/v1/districts", READER)
    assert status == 200
    assert body["generated_at"] == T0
    assert body["districts"] == [
        {"district": "", "expected": 1, "online": 0, "on_time": 0, "coverage": 0.0, "quantities": {}, "aqi": None,
         "open_alerts": 0, "consumption": {"water_m3_h": None, "energy_kw": None, "heat_kw": None}},
        {"district": "esil", "expected": 1, "online": 1, "on_time": 1, "coverage": 1.0,
         "quantities": {"pm25": {"expected": 1, "on_time": 1}}, "aqi": 112.0, "open_alerts": 1,
         "consumption": {"water_m3_h": None, "energy_kw": None, "heat_kw": None}},
    ]
    status, body = await call(client, "GET", "/v1/devices", READER)
    assert status == 200
    (t1,) = body["devices"]  # w9, provisioned but never heard from, is counted in its district only
    assert (t1["device"], t1["district"], t1["lat"], t1["lon"], t1["online"]) == ("t1", "esil", 51.13, 71.43, True)
    assert t1["values"] == {"pm25": {"value": 40.0, "ts": T0 - 1000, "quality": "ok"}}
    assert set(t1["actuators"]) == {"fan1", "pump"}  # what the control service lists is kept
    setup.places["w9"].last_seen = T0
    setup.alerting._cached = None  # the places are cached for a second
    status, body = await call(client, "GET", "/v1/devices", READER)
    w9 = body["devices"][1]
    assert (w9["device"], w9["district"], w9["online"], w9["actuators"], w9["values"]) == ("w9", None, False, {}, {})


async def test_openapi_documents_the_endpoints(client: TestClient[Any, Any]) -> None:
    async with client.get("/openapi.json") as r:
        doc = await r.json()
    for path in ("/v1/alerts", "/v1/alerts/{id}", "/v1/alerts/{id}/ack", "/v1/districts", "/v1/devices"):
        assert path in doc["paths"]
    assert set(doc["components"]["schemas"]["Alert"]["properties"]) == {
        "id", "kind", "severity", "state", "device", "quantity", "district", "message", "evidence", "fired_at",
        "updated_at", "acked_at", "acked_by", "note", "resolved_at", "count"}
    assert "409" in doc["paths"]["/v1/alerts/{id}/ack"]["post"]["responses"]


async def test_an_app_without_alerting_answers_404(setup: Setup) -> None:
    app = make_app(setup.rig.control, ApiConfig(control_token=TOKEN))
    async with TestClient(TestServer(app)) as c:
        status, body = await call(c, "GET", "/v1/alerts", CONTROL)
    assert (status, body) == (404, {"error": "this hub keeps no alerts"})


def test_an_action_sends_a_real_command_audited_with_the_alert(tmp_path: Path) -> None:
    actions = (AlertAction(kind=LEAK, district="esil", actuator="pump", value=0),
               AlertAction(kind=LEAK, device="other", actuator="pump", value=1))  # another device: not this one
    setup = Setup(tmp_path, actions)
    setup.fire(leak())
    alert = setup.alerting.book.alerts()[0]
    (topic, payload), = setup.rig.sent
    cmd = payloads.decode_cmd(payload, KEY, "lab", "t1")
    assert (topic, cmd.actuator, cmd.value) == ("qala/lab/t1/cmd", "pump", 0)
    command = setup.rig.control.commands[cmd.id]
    assert command.source == f"alert:{alert.id}"
    setup.rig.now += 100
    setup.rig.ack(cmd.id, value=0, act="pump")
    audit = {r.field: r.value for r in setup.stored if r.measurement == COMMAND}
    assert (audit["source"], audit["applied"]) == (f"alert:{alert.id}", 0)
    setup.fire(leak())  # the same alert updated: no second command
    assert len(setup.rig.sent) == 1


def test_an_action_outside_the_limits_is_a_refused_audited_command(tmp_path: Path) -> None:
    setup = Setup(tmp_path, (AlertAction(kind=LEAK, actuator="fan1", value=150),))
    setup.fire(leak())
    assert setup.rig.sent == []
    (command,) = setup.rig.control.commands.values()
    assert (command.state, command.source) == ("rejected", f"alert:{setup.alerting.book.alerts()[0].id}")
    assert {r.quality for r in setup.stored if r.measurement == COMMAND} == {"rejected"}


async def test_the_loop_ticks_and_sends_summaries(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    setup.alerting.interval = 0.05
    setup.alerting.config = AlertsConfig(summary_interval=0.1)
    setup.detectors.events.append(leak())
    task = asyncio.create_task(setup.alerting.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if setup.north.summaries and setup.alerting.book.open:
                break
    finally:
        task.cancel()
    assert len(setup.alerting.book.open) == 1
    assert {d["district"] for d in setup.north.summaries} == {"", "esil"}
    assert any(r.measurement == "qala_coverage" for r in setup.stored)
    assert (tmp_path / "alerts.json").exists()
