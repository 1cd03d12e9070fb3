"""The OTA server and roll-out service with fake boards and no broker (hub.ota.server, hub.ota.service), and
the roll-out endpoints of the HTTP API (hub.ota.api): the real control service's API application, the real
services, publish functions that hand each payload to a FakeBoard and its answers back to the hub.

Shows: a fleet updated wave by wave with every byte served and checked; a rollback halting the roll-out with
the rest untouched; chunk requests for unknown ids, files and offsets answered with a nochunk; forged
reports, garbage and boards without a key counted and dropped; audit rows and points; a restart carrying a
roll-out on from its file; the API's roles (401, 403), its errors naming the field (400, 404, 409, 422) and
the Python entry's shape.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.config import ApiConfig
from hub.control.api import make_app
from hub.model import AUDIT, SECURITY
from hub.ota import rollout as ro
from hub.ota.api import add_routes
from hub.ota.config import OtaConfig
from hub.ota.selector import Facts
from hub.ota.server import OtaServer
from hub.ota.service import OTA, ROLLOUT, OtaError, OtaService
from protocols import ota
from tests.control.test_service_api import Rig
from tests.ota.fakes import SITE, FakeBoard, fake_release

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from hub.model import Reading

T0 = 1_800_000_000_000
TOKEN = "control-test-token-0123"
READ = "read-token-0123456789abc"
CONTROL = {"Authorization": f"Bearer {TOKEN}"}
READER = {"Authorization": f"Bearer {READ}"}
FLEET = [f"aq-{i:02d}" for i in range(12)]


class Fleet:
    """An OtaService with fake boards; every publish is delivered at once (depth first, like a fast broker)."""

    def __init__(self, tmp: Path, boards: dict[str, FakeBoard] | None = None, **config: Any) -> None:
        self.tmp = tmp
        self.now = T0
        self.rig = Rig(tmp)
        self.stored: list[Reading] = self.rig.stored
        self.boards = boards if boards is not None else {d: FakeBoard(d, bytes([i + 1]) * 32)
                                                          for i, d in enumerate(FLEET)}
        self.online = dict.fromkeys(self.boards, True)
        self.districts = {d: ("north" if i % 2 else "south") for i, d in enumerate(self.boards)}
        self.keys = {d: b.key for d, b in self.boards.items()}
        self.sent: list[tuple[str, bytes]] = []
        self.config = OtaConfig(releases=tmp / "releases", **config)
        self.service = self.make_service()

    def make_service(self) -> OtaService:
        server = OtaServer(SITE, self.keys.get, self.publish, clock_ms=lambda: self.now, emit=self.stored.extend)
        service = OtaService(SITE, self.config, self.tmp / "state", server, boards=self.facts,
                             online=lambda d: self.online.get(d, False), emit=self.stored.extend,
                             auditor=self.rig.control, clock_ms=lambda: self.now)
        service.load()
        return service

    def facts(self) -> dict[str, Facts]:
        return {d: Facts(self.districts[d], b.fw) for d, b in self.boards.items()}

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        assert qos == 1
        self.sent.append((topic, payload))
        _root, _site, device, kind = topic.split("/")
        assert kind == ota.OTA
        board = self.boards.get(device)
        if board is None or not self.online[device]:
            return
        for answer in board.handle(payload):
            self.deliver(device, answer)

    def deliver(self, device: str, payload: bytes) -> None:
        report = self.service.server.on_message(device, payload)
        if report is not None:
            self.service.on_report(device, report)
        self.service.flush()  # as the hub does before it acknowledges a batch

    def run(self, seconds: int = 5) -> None:
        for _ in range(seconds):
            self.now += 1000
            self.service.tick()

    def points(self, measurement: str) -> list[Reading]:
        return [r for r in self.stored if r.measurement == measurement]


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    f = Fleet(tmp_path)
    fake_release(tmp_path / "releases", "0.2.0")
    return f


def test_a_rollout_reaches_every_board_wave_by_wave(fleet: Fleet) -> None:
    rollout = fleet.service.start("0.2.0", "all", by="api:control")
    assert rollout.counts()["healthy"] == 1  # the first wave ran to its end at once (a fast broker)
    fleet.run(10)
    assert rollout.state == ro.DONE
    assert rollout.counts()["healthy"] == len(FLEET)
    assert all(b.fw == "0.2.0" and b.states[-1] == "healthy" for b in fleet.boards.values())
    actions = {r.quality for r in fleet.points(AUDIT)}
    assert actions == {"start", "wave", "done"}
    start = {r.field: r.value for r in fleet.points(AUDIT) if r.quality == "start"}
    assert start["source"] == "api:control"
    assert start["version"] == "0.2.0"
    last = {r.field: r.value for r in fleet.points(ROLLOUT)[-25:] if r.ts == fleet.points(ROLLOUT)[-1].ts}
    assert (last["healthy"], last["targeted"], last["state"], last["wave"]) == (12.0, 12.0, "done", 4.0)
    ota_points = fleet.points(OTA)
    assert {r.quality for r in ota_points} >= {"downloading", "verifying", "installed", "healthy"}
    assert ota_points[0].sensor == rollout.id
    assert fleet.service.server.counts["bad_message"] == 0
    file_bytes = sum(f.size for f in fleet.service.releases["0.2.0"].files)
    assert fleet.service.server.counts["chunk_bytes"] == len(FLEET) * (file_bytes +
                                                                       len(fleet.service.releases["0.2.0"].manifest))


def test_a_rollback_halts_and_leaves_the_rest_on_the_old_version(tmp_path: Path) -> None:
    boards = {d: FakeBoard(d, bytes([i + 1]) * 32, outcome="rolledback") for i, d in enumerate(FLEET)}
    fleet = Fleet(tmp_path, boards)
    fake_release(tmp_path / "releases", "0.2.0")
    rollout = fleet.service.start("0.2.0", "all", by="cli:control")
    fleet.run(5)
    assert rollout.state == ro.HALTED
    assert rollout.counts()["rolledback"] == 1
    assert rollout.counts()["waiting"] == len(FLEET) - 1
    assert sum(1 for b in boards.values() if b.offer is not None) == 1
    failed = next(d for d, b in rollout.boards.items() if b.state == ro.ROLLEDBACK)
    assert rollout.boards[failed].reason == "raised at start-up: ValueError: broken"
    assert "halt" in {r.quality for r in fleet.points(AUDIT)}


def test_a_silent_board_times_out(tmp_path: Path) -> None:
    boards = {d: FakeBoard(d, bytes([i + 1]) * 32, outcome="silent") for i, d in enumerate(FLEET[:2])}
    fleet = Fleet(tmp_path, boards, board_timeout=60)
    fake_release(tmp_path / "releases", "0.2.0")
    rollout = fleet.service.start("0.2.0", "all", by="x")
    fleet.run(59)
    assert rollout.counts()["installed"] == 1
    fleet.run(2)
    assert rollout.counts()["timedout"] == 1
    assert rollout.state == ro.HALTED


def test_chunk_requests_that_cannot_be_served_get_a_nochunk(fleet: Fleet) -> None:
    rollout = fleet.service.start("0.2.0", "devices:aq-00", by="x", waves=[100])
    fleet.sent.clear()
    for get, why in ((ota.encode_get("r-unknown", -1, 0, 100), "unknown id"),
                     (ota.encode_get(rollout.id, 7, 0, 100), "unknown file"),
                     (ota.encode_get(rollout.id, 0, 99_999, 100), "offset past the end")):
        fleet.deliver("aq-01", get)
        head, data = ota.split_chunk(fleet.sent[-1][1])
        assert (head["op"], head["why"], len(data)) == ("nochunk", why, 0)
    for offset, n in ((0, 4096), (10_000, 240), (10_240, 0)):  # file 1 holds 10240 bytes
        fleet.deliver("aq-01", ota.encode_get(rollout.id, 1, offset, 4096))
        head, data = ota.split_chunk(fleet.sent[-1][1])
        assert (head["op"], head["o"], head["n"], len(data)) == ("chunk", offset, n, n)
    assert bytes(data) == b""
    fleet.deliver("aq-01", ota.encode_get(rollout.id, 1, 256, 16))
    assert bytes(ota.split_chunk(fleet.sent[-1][1])[1]) == bytes(range(16))
    assert fleet.sent[-1][0] == f"qala/{SITE}/aq-01/ota"


def test_a_hub_of_a_group_stays_silent_on_ids_it_does_not_run(fleet: Fleet) -> None:
    fleet.service.server.quiet_unknown = True
    fleet.deliver("aq-01", ota.encode_get("r-other-hubs", -1, 0, 100))
    assert fleet.sent == []
    assert fleet.service.server.counts["not_ours"] == 1


def test_a_file_gone_or_changed_in_the_release_folder_is_a_nochunk(fleet: Fleet) -> None:
    rollout = fleet.service.start("0.2.0", "devices:aq-00", by="x", waves=[100])
    fleet.service.server.forget(rollout.id)  # its cached files too
    fleet.service.server.serve(rollout.id, fleet.service.releases["0.2.0"])
    (fleet.tmp / "releases" / "0.2.0" / "firmware" / "app.mpy").unlink()
    fleet.deliver("aq-01", ota.encode_get(rollout.id, 1, 0, 100))
    head, _ = ota.split_chunk(fleet.sent[-1][1])
    assert (head["op"], head["why"]) == ("nochunk", "cannot read the file")
    assert fleet.service.fields()["ota_chunks"] > 0
    (fleet.tmp / "releases" / "0.2.0" / "firmware" / "app.mpy").write_bytes(bytes(10240))  # same size, changed
    fleet.deliver("aq-01", ota.encode_get(rollout.id, 1, 0, 100))
    head, _ = ota.split_chunk(fleet.sent[-1][1])
    assert (head["op"], head["why"]) == ("nochunk", "the file changed since the release was loaded")


def test_bad_messages_are_counted_and_dropped(fleet: Fleet) -> None:
    rollout = fleet.service.start("0.2.0", "devices:aq-00", by="x", waves=[100])
    server = fleet.service.server
    fleet.deliver("aq-00", b"not json")
    fleet.deliver("aq-00", b'{"op":"get","id":"x","f":0,"o":0,"n":99999}')
    forged = ota.encode_state(b"\x99" * 32, SITE, "aq-00", rollout.id, "0.2.0", "rolledback", T0, reason="x")
    fleet.deliver("aq-00", forged)
    other = ota.encode_state(fleet.keys["aq-01"], SITE, "aq-01", rollout.id, "0.2.0", "rolledback", T0, reason="x")
    fleet.deliver("aq-00", other)  # another board's report, replayed on this board's topic
    fleet.deliver("stranger", b"{}")
    assert server.counts["bad_message"] == 2
    assert server.counts["bad_signature"] == 2
    forged = [(r.device, r.sensor, r.quality, r.field) for r in fleet.points(SECURITY)]
    assert forged == [("aq-00", "ota", "forged_ota_report", f) for f in ("count", "problem")] * 2
    assert server.counts["no_key"] == 1
    assert rollout.boards["aq-00"].state == ro.HEALTHY
    good = ota.encode_state(fleet.keys["aq-03"], SITE, "aq-03", "r-old", "0.2.0", "healthy", T0)
    fleet.deliver("aq-03", good)
    assert fleet.service.counts["unknown_rollout"] == 1


def test_a_board_without_a_key_is_not_offered(fleet: Fleet) -> None:
    del fleet.keys["aq-00"]
    rollout = fleet.service.start("0.2.0", "devices:aq-00", by="x")
    assert fleet.sent == []
    assert fleet.service.server.counts["no_key"] == 1
    fleet.run(3601)
    assert rollout.boards["aq-00"].state == ro.TIMEDOUT


def test_a_restart_carries_the_rollout_on(fleet: Fleet) -> None:
    for device in FLEET[1:]:
        fleet.online[device] = False  # offers to them are lost
    rollout = fleet.service.start("0.2.0", "all", by="x", waves=[10, 100])
    fleet.run(2)
    assert rollout.state == ro.RUNNING
    assert rollout.counts()["offline"] >= 1
    rid = rollout.id
    fleet.service = fleet.make_service()  # the hub restarts: the roll-out is read back
    again = fleet.service.get(rid)
    assert again.detail() == rollout.detail()
    for device in FLEET:
        fleet.online[device] = True
    fleet.run(3)
    assert again.state == ro.DONE
    assert again.counts()["healthy"] == len(FLEET)


def test_reports_are_saved_once_per_flush(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    for device in FLEET:
        fleet.boards[device].outcome = "silent"
    rollout = fleet.service.start("0.2.0", "all", by="x", waves=[100])
    saved: list[str] = []
    monkeypatch.setattr(fleet.service, "_save", lambda r: saved.append(r.id))
    for device in FLEET[:5]:
        fleet.service.on_report(device, {"id": rollout.id, "version": "0.2.0", "state": "healthy"})
    assert saved == []
    fleet.service.flush()
    assert saved == [rollout.id]
    fleet.service.flush()
    assert saved == [rollout.id]  # nothing changed since


def test_a_rollout_whose_release_is_gone_halts_at_start(fleet: Fleet) -> None:
    for device in FLEET[1:]:
        fleet.online[device] = False
    rollout = fleet.service.start("0.2.0", "all", by="x", waves=[10, 100])
    for path in sorted((fleet.tmp / "releases" / "0.2.0").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    fleet.service = fleet.make_service()
    again = fleet.service.get(rollout.id)
    assert again.state == ro.HALTED
    assert "release 0.2.0 is not in" in again.reason


def test_start_refusals_name_the_field(fleet: Fleet) -> None:
    svc = fleet.service
    cases = [
        (("9.9.9", "all"), 404, "version", "no release 9.9.9"),
        (("bad version!", "all"), 400, "version", "must be"),
        (("0.2.0", "site:x"), 422, "to", "unknown"),
        (("0.2.0", "prefix:zz"), 422, "to", "matches no provisioned board"),
    ]
    for (version, to), status, field, says in cases:
        with pytest.raises(OtaError) as err:
            svc.start(version, to, by="x")
        assert (err.value.status, err.value.field) == (status, field)
        assert says in err.value.message
    fleet.boards["aq-01"].outcome = "silent"
    first = svc.start("0.2.0", "district:north", by="x", waves=[100])
    fleet.run(1)
    assert first.state == ro.RUNNING  # aq-01 is still installing
    with pytest.raises(OtaError, match=f"are in roll-out {first.id}") as err:
        svc.start("0.2.0", "prefix:aq-", by="x")
    assert (err.value.status, err.value.field) == (409, "to")
    assert svc.start("0.2.0", "district:south", by="x").state == ro.RUNNING  # other boards: free


def test_a_config_release_goes_to_its_one_board(fleet: Fleet) -> None:
    fake_release(fleet.tmp / "releases", "cfg-1", {"board.json": b'{"device":"aq-03"}'}, kind="config",
                 device="aq-03")
    with pytest.raises(OtaError, match="config of board aq-03") as err:
        fleet.service.start("cfg-1", "all", by="x")
    assert err.value.status == 422
    rollout = fleet.service.start("cfg-1", "devices:aq-03", by="x")
    assert rollout.kind == "config"
    fleet.run(1)
    assert rollout.state == ro.DONE
    assert fleet.boards["aq-03"].offer is not None
    assert fleet.boards["aq-03"].offer["kind"] == "config"


# ------------------------------------------------------------------------------------------------ the API


@pytest.fixture
async def client(fleet: Fleet) -> AsyncIterator[TestClient[Any, Any]]:
    app = make_app(fleet.rig.control, ApiConfig(control_token=TOKEN, read_token=READ),
                   more=lambda a: add_routes(a, fleet.service))
    async with TestClient(TestServer(app)) as c:
        yield c


async def call(client: TestClient[Any, Any], method: str, path: str, headers: dict[str, str] | None = None,
               body: object = None, raw: bytes | None = None) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {"headers": CONTROL if headers is None else headers}
    if raw is not None:
        kwargs["data"] = raw
    elif body is not None:
        kwargs["json"] = body
    async with client.request(method, path, **kwargs) as r:
        return r.status, await r.json()


async def test_api_start_read_pause_resume_abort(fleet: Fleet, client: TestClient[Any, Any]) -> None:
    for device in FLEET[2:]:
        fleet.online[device] = False
    status, doc = await call(client, "POST", "/v1/rollouts", body={"version": "0.2.0", "to": "all",
                                                                   "waves": [10, 100], "max_failures": 0.5})
    assert status == 201, doc
    rid = doc["id"]
    assert (doc["state"], doc["wave"], doc["waves"], doc["by"]) == ("running", 1, 2, "api:control")
    assert len(doc["boards"]) == len(FLEET)
    status, listed = await call(client, "GET", "/v1/rollouts", READER)
    assert status == 200
    assert [r["id"] for r in listed["rollouts"]] == [rid]
    assert "boards" not in listed["rollouts"][0]
    status, one = await call(client, "GET", f"/v1/rollouts/{rid}", READER)
    assert status == 200
    assert one["counts"]["targeted"] == len(FLEET)
    assert len(one["boards"]) == len(FLEET)
    assert (await call(client, "GET", f"/v1/rollouts/{rid}?boards=none", READER))[1]["boards"] == {}
    assert (await call(client, "GET", f"/v1/rollouts/{rid}?boards=failed", READER))[1]["boards"] == {}
    status, bad = await call(client, "GET", f"/v1/rollouts/{rid}?boards=some", READER)
    assert (status, bad["field"]) == (400, "boards")
    assert (await call(client, "POST", f"/v1/rollouts/{rid}/pause"))[1]["state"] == "paused"
    status, again = await call(client, "POST", f"/v1/rollouts/{rid}/pause")
    assert (status, again["field"]) == (409, "id")
    assert "only a running one" in again["error"]
    assert (await call(client, "POST", f"/v1/rollouts/{rid}/resume"))[1]["state"] == "running"
    status, aborted = await call(client, "POST", f"/v1/rollouts/{rid}/abort", {**CONTROL, "X-Qala-Source": "cli"})
    assert (status, aborted["state"], aborted["reason"]) == (200, "aborted", "aborted by cli:control")
    audit = [(r.quality, r.value) for r in fleet.points(AUDIT) if r.field == "source"]
    assert audit[0] == ("start", "api:control")
    assert ("pause", "api:control") in audit
    assert audit[-1] == ("abort", "cli:control")
    status, releases = await call(client, "GET", "/v1/releases", READER)
    assert status == 200
    assert [r["version"] for r in releases["releases"]] == ["0.2.0"]


async def test_api_roles(client: TestClient[Any, Any]) -> None:
    status, body = await call(client, "GET", "/v1/rollouts", {})
    assert status == 401
    status, body = await call(client, "GET", "/v1/rollouts", {"Authorization": "Bearer wrong-token-000000000"})
    assert status == 401
    status, body = await call(client, "POST", "/v1/rollouts", READER, {"version": "0.2.0", "to": "all"})
    assert (status, body["needed"]) == (403, "control")
    status, body = await call(client, "POST", "/v1/rollouts/r-x/abort", READER)
    assert status == 403


@pytest.mark.parametrize(("body", "status", "field", "says"), [
    (None, 400, None, "not valid JSON"),
    ([], 400, None, "JSON object"),
    ({"to": "all"}, 400, "version", "required"),
    ({"version": "0.2.0"}, 400, "to", "required"),
    ({"version": "0.2.0", "to": "all", "wave": [1]}, 400, "wave", "unknown key"),
    ({"version": 2, "to": "all"}, 422, "version", "non-empty string"),
    ({"version": "0.2.0", "to": "all", "waves": "1,100"}, 422, "waves", "list of percentages"),
    ({"version": "0.2.0", "to": "all", "waves": [50, 10, 100]}, 400, "waves", "growing"),
    ({"version": "0.2.0", "to": "all", "max_failures": 2}, 422, "max_failures", "0..1"),
    ({"version": "0.2.0", "to": "all", "trial": 1}, 422, "trial", "10..86400"),
    ({"version": "0.2.0", "to": "all", "tries": True}, 422, "tries", "1..20"),
    ({"version": "0.2.0", "to": "all", "board_timeout": 1.5}, 422, "board_timeout", "60..604800"),
    ({"version": "9.9.9", "to": "all"}, 404, "version", "no release 9.9.9"),
    ({"version": "0.2.0", "to": "devices:nope"}, 422, "to", "not a provisioned board"),
])
async def test_api_bad_start_bodies_are_named(client: TestClient[Any, Any], body: object, status: int,
                                              field: str | None, says: str) -> None:
    raw = b"{nope" if body is None else json.dumps(body).encode()
    got, doc = await call(client, "POST", "/v1/rollouts", raw=raw)
    assert got == status, doc
    assert doc.get("field") == field
    assert says in doc["error"]


async def test_api_unknown_ids_and_actions(client: TestClient[Any, Any]) -> None:
    status, doc = await call(client, "GET", "/v1/rollouts/r-nope", READER)
    assert (status, doc["field"]) == (404, "id")
    status, doc = await call(client, "POST", "/v1/rollouts/r-nope/abort")
    assert (status, doc["field"]) == (404, "id")
    status, doc = await call(client, "POST", "/v1/rollouts/r-nope/explode")
    assert (status, doc["field"]) == (404, "action")
    status, doc = await call(client, "POST", "/v1/rollouts/r-nope/abort", raw=b'{"x":1}')
    assert status == 400


async def test_openapi_lists_the_rollout_endpoints(client: TestClient[Any, Any]) -> None:
    async with client.get("/openapi.json") as r:
        doc = await r.json()
    assert {"/v1/rollouts", "/v1/rollouts/{id}", "/v1/rollouts/{id}/abort", "/v1/releases",
            "/v1/setpoints"} <= set(doc["paths"])
    post = doc["paths"]["/v1/rollouts"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["required"] == ["version", "to"]
    assert {"201", "400", "401", "403", "404", "409", "422"} == set(post["responses"])


async def test_without_ota_the_endpoints_answer_404(fleet: Fleet) -> None:
    app = make_app(fleet.rig.control, ApiConfig(control_token=TOKEN), more=lambda a: add_routes(a, None))
    async with TestClient(TestServer(app)) as c:
        status, doc = await call(c, "GET", "/v1/rollouts")
    assert (status, doc["error"]) == (404, "this hub runs no roll-outs")
