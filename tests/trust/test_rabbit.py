"""The broker policy as RabbitMQ definitions (hub/trust/rabbit.py) and `qala provision rabbitmq`: the regular
expressions against routing keys and binding keys, the password hash against one the real broker made, the
document's shape. No broker here: tests/cluster/test_rabbit_cluster.py loads such definitions into a real
three-node cluster and tries them as a board, a hub and a stranger."""

from __future__ import annotations

import json
import re
import stat
from typing import TYPE_CHECKING, Any

import pytest

from firmware.mqtt import client_for
from hub import cli
from hub.trust import broker, rabbit
from tests._plugins.trust import provision_site

if TYPE_CHECKING:
    from pathlib import Path

    from hub.trust.store import TrustStore

SITE = "s-1"
# Made by RabbitMQ 3.10.8 itself: `rabbitmqctl add_user probe-user 'S3cret-pässword'`, then export_definitions.
BROKER_HASH = "d6eBsLxp4YYTo8KW5WADgbqoABD+nKr3bALJybciy/HsW0b0"
BROKER_PASSWORD = "S3cret-pässword"


def matches(regex: str, key: str) -> bool:
    return re.search(regex, key) is not None


def test_the_hash_is_rabbitmqs_own() -> None:
    assert rabbit.check_password(BROKER_PASSWORD, BROKER_HASH)
    assert not rabbit.check_password("S3cret-password", BROKER_HASH)
    salt = bytes.fromhex("77a781b0")  # the broker's salt: the same password hashes to the same string
    assert rabbit.password_hash(BROKER_PASSWORD, salt) == BROKER_HASH


def test_each_hash_has_its_own_salt() -> None:
    first, second = rabbit.password_hash("pw"), rabbit.password_hash("pw")
    assert first != second
    assert rabbit.check_password("pw", first)
    assert rabbit.check_password("pw", second)
    with pytest.raises(ValueError, match="salt: must be 4 bytes, got 3"):
        rabbit.password_hash("pw", b"abc")


@pytest.mark.parametrize(("topic_filter", "yes", "no"), [
    ("qala/s-1/d1/telemetry", ["qala.s-1.d1.telemetry"], ["qala.s-1.d2.telemetry", "qala.s-1.d1.telemetryx",
                                                          "qala.s-1xd1.telemetry"]),
    ("qala/s-1/+/telemetry", ["qala.s-1.d1.telemetry", "qala.s-1.*.telemetry"], ["qala.s-1.a.b.telemetry"]),
    ("qala/s-1/#", ["qala.s-1", "qala.s-1.d1.cmd", "qala.s-1.#", "qala.s-1.*.telemetry"], ["qala.s-10.d1.cmd"]),
])
def test_routing_pattern_reads_filters_as_rabbitmq_keys(topic_filter: str, yes: list[str], no: list[str]) -> None:
    regex = f"^(?:{rabbit.routing_pattern(topic_filter)})$"
    assert [k for k in yes if not matches(regex, k)] == []
    assert [k for k in no if matches(regex, k)] == []


@pytest.mark.parametrize("bad", ["qala/#/x", "qala/a+/x", "qala/x#"])
def test_routing_pattern_refuses_a_broken_filter(bad: str) -> None:
    with pytest.raises(ValueError, match="must fill a level"):
        rabbit.routing_pattern(bad)


def entry(doc: dict[str, Any], kind: str, user: str) -> dict[str, Any]:
    found = [e for e in doc[kind] if e.get("user", e.get("name")) == user]
    assert len(found) == 1, (kind, user, found)
    return found[0]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return rabbit.definitions(SITE, {"main": "hpw", "h2": "hpw2"}, {"d1": "b1pw", "d2": "b2pw"}, {"sc": "ipw"})


def test_a_board_writes_only_its_own_topics(doc: dict[str, Any]) -> None:
    write = entry(doc, "topic_permissions", broker.board_user(SITE, "d1"))["write"]
    for kind in ("telemetry", "status", "ack", "otaack"):
        assert matches(write, f"qala.{SITE}.d1.{kind}")
        assert not matches(write, f"qala.{SITE}.d2.{kind}")
    for key in (f"qala.{SITE}.d1.cmd", f"qala.{SITE}.*.telemetry", f"qala.{SITE}.#", f"qala.{SITE}._hub.main",
                f"qala.{SITE}._north.alert", "qala.other.d1.telemetry", ""):
        assert not matches(write, key), key


def test_a_board_reads_only_its_own_cmd_conf_ota_and_the_hubs_liveness(doc: dict[str, Any]) -> None:
    read = entry(doc, "topic_permissions", broker.board_user(SITE, "d1"))["read"]
    for key in (f"qala.{SITE}.d1.cmd", f"qala.{SITE}.d1.conf", f"qala.{SITE}.d1.ota", f"qala.{SITE}._hub.*",
                f"qala.{SITE}._hub.main"):
        assert matches(read, key), key
    for key in (f"qala.{SITE}.d2.cmd", f"qala.{SITE}.*.cmd", f"qala.{SITE}.#", f"qala.{SITE}.d1.telemetry",
                f"qala.{SITE}._hub.#", f"qala.{SITE}._north.#", "#"):
        assert not matches(read, key), key


def test_a_board_declares_only_its_own_session_queues(doc: dict[str, Any]) -> None:
    perm = entry(doc, "permissions", broker.board_user(SITE, "d1"))
    own = f"mqtt-subscription-{rabbit.board_client_id(SITE, 'd1')}qos"
    for access in ("configure", "write", "read"):
        assert matches(perm[access], own + "1")
        assert matches(perm[access], own + "0")
        for name in (f"mqtt-subscription-{rabbit.board_client_id(SITE, 'd2')}qos1", "qala.telemetry", ""):
            assert not matches(perm[access], name), (access, name)
    assert not matches(perm["configure"], "amq.topic")
    assert matches(perm["write"], "amq.topic")  # publish
    assert matches(perm["read"], "amq.topic")  # bind its queue


def test_the_board_client_id_is_the_firmwares() -> None:
    mqtt = {"host": "h", "port": 8883, "user": "u", "password": "p", "keepalive": 60, "tls": True,
            "max_packet": 1024, "ca": None, "server_hostname": None, "clean": False}
    assert client_for(mqtt, SITE, "d1").client_id == rabbit.board_client_id(SITE, "d1")


def test_a_hub_reads_and_writes_its_site_and_its_qala_queues(doc: dict[str, Any]) -> None:
    user = broker.hub_user(SITE, "main")
    topics = entry(doc, "topic_permissions", user)
    for access in ("read", "write"):
        for key in (f"qala.{SITE}.d1.cmd", f"qala.{SITE}.*.telemetry", f"qala.{SITE}.#", f"qala.{SITE}._north.x"):
            assert matches(topics[access], key), (access, key)
        for key in ("qala.other.d1.cmd", f"qala.{SITE}x.d1.cmd", "qala.#", "#"):
            assert not matches(topics[access], key), (access, key)
    perm = entry(doc, "permissions", user)
    for access in ("configure", "write", "read"):
        assert matches(perm[access], f"qala.{SITE}.telemetry")
        assert matches(perm[access], f"mqtt-subscription-{user}qos1")
        assert not matches(perm[access], f"mqtt-subscription-{rabbit.board_client_id(SITE, 'd1')}qos1")
    assert matches(perm["write"], "amq.topic")
    assert not matches(perm["configure"], "amq.topic")


def test_an_integrator_only_reads_the_northbound_feed(doc: dict[str, Any]) -> None:
    user = broker.integrator_user(SITE, "sc")
    topics = entry(doc, "topic_permissions", user)
    assert topics["write"] == rabbit.NEVER
    assert matches(topics["read"], f"qala.{SITE}._north.#")
    assert matches(topics["read"], f"qala.{SITE}._north.alert")
    for key in (f"qala.{SITE}.d1.telemetry", f"qala.{SITE}.#", f"qala.{SITE}.*.telemetry"):
        assert not matches(topics["read"], key)
    perm = entry(doc, "permissions", user)
    assert not matches(perm["write"], "amq.topic")  # it cannot publish at all
    assert matches(perm["read"], "amq.topic")


def test_never_matches_nothing() -> None:
    assert not any(matches(rabbit.NEVER, key) for key in ("", "a", "qala.s.d.cmd", "#"))


def test_every_user_is_named_as_broker_py_names_it_and_limited_on_amq_topic(doc: dict[str, Any]) -> None:
    names = [u["name"] for u in doc["users"]]
    assert names == [broker.hub_user(SITE, "h2"), broker.hub_user(SITE, "main"), broker.board_user(SITE, "d1"),
                     broker.board_user(SITE, "d2"), broker.integrator_user(SITE, "sc")]
    assert "guest" not in names
    assert {u["hashing_algorithm"] for u in doc["users"]} == {rabbit.ALGORITHM}
    assert {str(u["tags"]) for u in doc["users"]} == {"[]"}
    assert rabbit.check_password("b1pw", entry(doc, "users", broker.board_user(SITE, "d1"))["password_hash"])
    # a user without a topic permission on amq.topic could publish any routing key
    assert sorted(t["user"] for t in doc["topic_permissions"] if t["exchange"] == "amq.topic") == sorted(names)
    assert sorted(p["user"] for p in doc["permissions"] if p["vhost"] == "/") == sorted(names)
    assert doc["vhosts"] == [{"name": "/"}]


def test_a_store_gives_every_identity_it_holds(tmp_path: Path) -> None:
    store = provision_site(tmp_path / "store", ["c01", "c02"], SITE, hubs=["h2"])
    doc = rabbit.store_definitions(store)
    board = store.board("c01")
    assert board is not None
    assert {u["name"] for u in doc["users"]} == {board.user, broker.board_user(SITE, "c02"),
                                                 store.hub("main")[0], store.hub("h2")[0], store.hub("tools")[0]}
    assert rabbit.check_password(board.password, entry(doc, "users", board.user)["password_hash"])


@pytest.fixture
def store(tmp_path: Path) -> TrustStore:
    return provision_site(tmp_path / "store", ["c01"], SITE, hubs=[])


def test_provision_rabbitmq_writes_the_definitions_readable_by_the_owner_only(
        store: TrustStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "defs.json"
    out.write_text("old")
    out.chmod(0o644)
    assert cli.main(["provision", "rabbitmq", "--store", str(store.root), "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    doc = json.loads(out.read_text())
    assert {u["name"] for u in doc["users"]} == {broker.board_user(SITE, "c01"), store.hub("main")[0],
                                                 store.hub("tools")[0]}
    said = capsys.readouterr()
    assert f"wrote {out} (mode 600): 3 users" in said.out
    board = store.board("c01")
    assert board is not None
    assert board.password not in said.out + said.err + out.read_text()


def test_provision_rabbitmq_names_a_bad_store_and_a_bad_out(tmp_path: Path, store: TrustStore,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "defs.json"
    assert cli.main(["provision", "rabbitmq", "--store", str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"qala provision: --store: {tmp_path / 'nope'}: not a provisioning store (no such folder; "
                   "`qala provision init` makes one)\n")
    assert cli.main(["provision", "rabbitmq", "--store", str(store.root), "--out", str(tmp_path)]) == 2
    assert "a folder is there; give a file name" in capsys.readouterr().err
    assert not out.exists()
