"""The control service and its HTTP API, without a broker: a recording publish function, a fake clock.

Bad input of every kind gets a clear refusal (JSON error naming the field) and sends nothing. Commands are
signed with the board's key (hub.control.signing); only acks the board signed for the command count, and a
forged one is a security event, never an outcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.config import ApiConfig, ControlConfig
from hub.control import command as lc
from hub.control import rules
from hub.control.api import make_app
from hub.control.service import ControlService
from hub.control.signing import Counter, Signer
from hub.model import COMMAND, SECURITY, Reading
from hub.registry import Registry
from protocols import catalogue, payloads

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

TOKEN = "s3cret-token-0123456789"
KEY = bytes(range(32))
KEYS = {"t1": KEY, "t2": bytes(range(1, 33))}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_795_553_687_000
CAPS = {"actuators": {"fan1": {"kind": "pwm", "unit": "%", "min": 0, "max": 100, "failsafe": 20},
                      "pump": {"kind": "relay", "min": 0, "max": 1, "failsafe": 0, "min_off": 30}},
        "failsafe_after": 5}


class Rig:
    def __init__(self, tmp: Path, *, shared: bool = False) -> None:
        self.now = T0
        self.sent: list[tuple[str, bytes]] = []
        self.stored: list[Reading] = []
        self.registry = Registry(tmp / "registry.json")
        birth = payloads.decode_status(payloads.encode_status("online", T0, 1, "0.1.0", CAPS))
        self.registry.update("t1", birth, T0)
        self.signer = Signer("lab", KEYS, Counter(tmp / "cmd-counter", lambda: self.now))
        self.control = ControlService("lab", ControlConfig(ttl=10, retries=1, ack_timeout=2), self.registry,
                                      publish=lambda t, p: self.sent.append((t, p)), emit=self.stored.extend,
                                      clock_ms=lambda: self.now, signer=self.signer, shared=shared)

    def ack(self, cmd_id: str, status: str = "applied", value: float | None = 80, device: str = "t1",
            act: str = "fan1", key: bytes | None = None, n: int | None = None) -> None:
        """The board's signed ack (its own key, the command's n unless given)."""
        reason = "150 above max 100" if status == "rejected" else None
        cmd = self.control.commands.get(cmd_id)
        n = (cmd.n if cmd is not None else 1) if n is None else n
        self.control.on_ack(device, payloads.encode_ack(key or KEYS.get(device, KEY), "lab", device, cmd_id, act,
                                                        status, self.now, n, value if status == "applied" else None,
                                                        reason))


@pytest.fixture
async def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


@pytest.fixture
async def client(rig: Rig) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(make_app(rig.control, ApiConfig(control_token=TOKEN)))) as c:
        yield c


async def test_submit_sends_a_cmd_and_the_ack_ends_it(rig: Rig) -> None:
    cmd = rig.control.submit("t1", "fan1", 80)
    topic, payload = rig.sent[0]
    assert topic == "qala/lab/t1/cmd"
    sent = payloads.decode_cmd(payload, KEY, "lab", "t1")
    assert (sent.id, sent.actuator, sent.value, sent.expires) == (cmd.id, "fan1", 80, T0 + 10_000)
    assert sent.n == cmd.n == T0  # the hub clock, the first command
    rig.now += 150
    rig.ack(cmd.id)
    assert cmd.state == "applied"
    assert cmd.latency_ms == 150
    point = {r.field: r.value for r in rig.stored}
    assert {r.measurement for r in rig.stored} == {COMMAND}
    assert {r.quality for r in rig.stored} == {"applied"}
    assert {r.sensor for r in rig.stored} == {"fan1"}
    assert point["latency_ms"] == 150
    assert point["id"] == cmd.id
    assert point["applied"] == 80
    assert rig.control.devices()[0]["actuators"]["fan1"]["last"] == 80  # type: ignore[index]


async def test_acks_that_change_nothing(rig: Rig) -> None:
    cmd = rig.control.submit("t1", "fan1", 80)
    rig.ack("c-unknown")
    rig.ack(cmd.id, device="t2")
    rig.control.on_ack("t1", b"{not json")
    assert cmd.state == "sent"
    rig.ack(cmd.id, "rejected")
    rig.ack(cmd.id, "applied")  # a board that acks twice
    assert cmd.state == "rejected"
    assert cmd.reason == "board: 150 above max 100"
    assert rig.control.counts == {"unknown_ack": 2, "duplicate_ack": 1, "late_ack": 0, "bad_ack": 1,
                                  "forged_ack": 0, "other_hub_ack": 0}
    assert len([r for r in rig.stored if r.field == "id"]) == 1  # one outcome, one audit point


async def test_a_hub_among_several_takes_another_hubs_ack_as_the_actuators_value(tmp_path: Path) -> None:
    """With other hubs (a cluster, a share group) every hub reads every ack: one of a command this hub never
    sent is another hub's, counted, not refused with a warning; its value is the actuator's last (rate
    limits). A forged one is still a forgery."""
    rig = Rig(tmp_path, shared=True)
    rig.ack("c-of-hub-2", value=55)
    assert rig.control.counts["other_hub_ack"] == 1
    assert rig.control.counts["unknown_ack"] == 0
    assert rig.control.devices()[0]["actuators"]["fan1"]["last"] == 55  # type: ignore[index]
    rig.ack("c-of-hub-2", value=99, key=bytes(32))  # not the board's key
    assert rig.control.counts["forged_ack"] == 1
    assert not rig.stored or all(r.measurement == SECURITY for r in rig.stored)  # no command outcome audited


async def test_forged_acks_are_security_events_never_outcomes(rig: Rig) -> None:
    cmd = rig.control.submit("t1", "fan1", 80)
    unsigned = f'{{"v":1,"id":"{cmd.id}","act":"fan1","st":"applied","val":80,"ts":{rig.now}}}'.encode()
    rig.control.on_ack("t1", unsigned)  # version 1: no signature at all
    rig.ack(cmd.id, key=bytes(32))  # signed, with the wrong key
    rig.ack(cmd.id, device="t1", key=KEYS["t2"])  # another board's key
    rig.ack(cmd.id, n=cmd.n - 1)  # the board's signature, but of an earlier command's n
    assert cmd.state == "sent"
    assert rig.control.counts["forged_ack"] == 4
    security = [r for r in rig.stored if r.measurement == SECURITY]
    assert {r.quality for r in security} == {"forged_ack"}
    assert {r.device for r in security} == {"t1"}
    assert [r.value for r in security if r.field == "claimed"] == ["applied"] * 4
    assert not [r for r in rig.stored if r.measurement == COMMAND]  # nothing audited as an outcome
    rig.ack(cmd.id)  # the board's own ack still ends it
    assert cmd.state == "applied"


async def test_a_device_without_a_key_is_refused_and_audited(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.signer.replace_keys({})  # e.g. revoked, and the store reloaded
    cmd = rig.control.submit("t1", "fan1", 80)
    assert cmd.state == "rejected"
    assert cmd.reason is not None
    assert "no command key" in cmd.reason
    assert rig.sent == []
    plain = ControlService("lab", ControlConfig(), rig.registry, publish=lambda t, p: None, emit=rig.stored.extend)
    cmd = plain.submit("t1", "fan1", 80)
    assert cmd.state == "rejected"
    assert cmd.reason is not None
    assert "plain" in cmd.reason


async def test_the_counter_grows_across_restarts_even_when_the_clock_goes_back(tmp_path: Path) -> None:
    clock = [T0]
    counter = Counter(tmp_path / "n", lambda: clock[0])
    first = [counter.next() for _ in range(3)]
    assert first == [T0, T0 + 1, T0 + 2]
    clock[0] = T0 - 3_600_000  # the clock set back an hour, then a restart
    again = Counter(tmp_path / "n", lambda: clock[0])
    assert again.next() > first[-1]


async def test_out_of_limits_is_refused_by_the_hub_and_audited(rig: Rig) -> None:
    cmd = rig.control.submit("t1", "fan1", 150)
    assert cmd.state == "rejected"
    assert cmd.reason == "hub: 150 above max 100"
    assert rig.sent == []
    assert {r.quality for r in rig.stored} == {"rejected"}


async def test_resend_then_time_out(rig: Rig) -> None:
    cmd = rig.control.submit("t1", "fan1", 50)
    # run() is a loop; drive one round of its logic by hand with the fake clock


    rig.now += 2000
    assert lc.due(cmd, rig.now) == lc.RESEND
    rig.control._send_mqtt(cmd, rig.now)
    assert [payloads.decode_cmd(p, KEY, "lab", "t1").id for _, p in rig.sent] == [cmd.id, cmd.id]
    assert rig.sent[0][1] == rig.sent[1][1]  # the same message: same id, same n
    rig.now = cmd.expires_ms + 2000
    assert lc.due(cmd, rig.now) == lc.TIMEOUT
    rig.control._finish(cmd, "timeout", rig.now, reason="no ack")
    rig.ack(cmd.id)  # a late ack is counted, the outcome stays
    assert cmd.state == "timed_out"
    assert rig.control.counts["late_ack"] == 1


async def test_http_setpoint_and_command_state(client: TestClient[Any, Any], rig: Rig) -> None:
    r = await client.post("/v1/setpoints", json={"device": "t1", "actuator": "fan1", "value": 80}, headers=AUTH)
    assert r.status == 202
    body = await r.json()
    assert body["state"] == "sent"
    assert len(rig.sent) == 1
    rig.ack(body["id"])
    r = await client.get(f"/v1/commands/{body['id']}", headers=AUTH)
    assert (await r.json())["state"] == "applied"
    r = await client.get("/v1/devices", headers=AUTH)
    devices = (await r.json())["devices"]
    assert devices[0]["device"] == "t1"
    assert devices[0]["actuators"]["fan1"]["limits"]["max"] == 100
    r = await client.get("/openapi.json")
    doc = await r.json()
    assert doc["openapi"].startswith("3.1")
    assert "/v1/setpoints" in doc["paths"]


@pytest.mark.parametrize(("headers", "body", "status", "needle"), [
    ({}, {"device": "t1", "actuator": "fan1", "value": 1}, 401, "missing bearer token"),
    ({"Authorization": "Bearer wrong"}, {"device": "t1", "actuator": "fan1", "value": 1}, 401, "wrong token"),
    (AUTH, b"{nope", 400, "not valid JSON"),
    (AUTH, [1, 2], 400, "must be a JSON object"),
    (AUTH, {"device": "t1", "actuator": "fan1"}, 400, "value"),
    (AUTH, {"device": "t1", "actuator": "fan1", "value": 1, "colour": "red"}, 400, "colour"),
    (AUTH, {"device": "t9", "actuator": "fan1", "value": 1}, 404, "unknown device"),
    (AUTH, {"device": "t1", "actuator": "fan9", "value": 1}, 404, "no actuator 'fan9'"),
    (AUTH, {"device": "t1", "actuator": "fan1", "value": "80"}, 422, "must be a finite number"),
    (AUTH, {"device": "t1", "actuator": "fan1", "value": True}, 422, "must be a finite number"),
    (AUTH, {"device": "t1", "actuator": "fan1", "value": 101}, 422, "101 above max 100"),
    (AUTH, {"device": "t1", "actuator": "pump", "value": 0.5}, 422, "neither off"),
    (AUTH, {"device": "t1", "actuator": "fan1", "value": 1, "ttl_s": -1}, 422, "ttl_s"),
    (AUTH, {"device": "t1", "actuator": "fan1", "value": 1, "wait": "yes"}, 422, "wait"),
])
async def test_http_bad_input_sends_nothing(client: TestClient[Any, Any], rig: Rig, headers: dict[str, str],
                                           body: object, status: int, needle: str) -> None:
    data = body if isinstance(body, bytes) else None
    r = await client.post("/v1/setpoints", data=data, json=None if data else body, headers=headers)
    assert r.status == status
    answer = await r.json()
    assert needle in answer["error"] + answer.get("field", ""), answer
    assert rig.sent == []


async def test_http_unknown_command_and_path(client: TestClient[Any, Any]) -> None:
    r = await client.get("/v1/commands/c-nope", headers=AUTH)
    assert r.status == 404
    assert (await r.json())["field"] == "id"
    r = await client.get("/v1/nothing", headers=AUTH)
    assert r.status == 404
    assert "error" in await r.json()
    r = await client.get("/v1/devices")
    assert r.status == 401


async def test_a_rule_is_not_driven_by_an_implausible_reading(tmp_path: Path) -> None:
    """A CO2 sensor reading 60,000 ppm (quality `range`: an out_of_range alert) or flagged `fault` must not
    turn the fan up: the rule holds its state; a good reading past the threshold drives it as before."""
    rule = rules.Rule(name="co2-fan", device="t1", sensor="env", quantity="co2", above=1000, below=800, hold_s=0,
                      target_device="t1", actuator="fan1", high_value=80, low_value=20)
    rig = Rig(tmp_path)
    rig.control = ControlService("lab", ControlConfig(ttl=10, retries=1, ack_timeout=2), rig.registry,
                                 publish=lambda t, p: rig.sent.append((t, p)), emit=rig.stored.extend,
                                 clock_ms=lambda: rig.now, signer=rig.signer, rule_list=[rule])
    for quality in (catalogue.RANGE, catalogue.FAULT):
        rig.control.observe([Reading("air", "lab", "t1", "env", quality, "co2", 60_000.0, T0)])
    assert rig.sent == []
    rig.control.observe([Reading("air", "lab", "t1", "env", catalogue.OK, "co2", 1500.0, T0)])
    assert [topic for topic, _ in rig.sent] == ["qala/lab/t1/cmd"]
