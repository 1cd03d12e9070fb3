"""[trust]: the provisioning store the hub trusts, or plain mode; its effect on [mqtt]; the store at start-up."""

from __future__ import annotations

import copy
import logging
import signal
from pathlib import Path
from typing import Any

import pytest

from hub import cli
from hub.config import ConfigError, parse
from hub.service import Hub
from hub.trust import provision
from hub.trust.store import StoreError
from tests._plugins.trust import provision_site
from tests.hub.conftest import HubProcess, wait_until, write_config

BASE: dict[str, Any] = {
    "site": {"id": "t-site"},
    "mqtt": {"host": "broker.example"},
    "influxdb": {"api": "v1", "url": "http://127.0.0.1:8086", "database": "qala"},
    "spool": {"path": "/tmp/qala"},
}


def doc(trust: dict[str, Any] | None, **mqtt: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out["mqtt"].update(mqtt)
    if trust is not None:
        out["trust"] = trust
    return out


def error(document: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse(document, {}, base=Path("/etc/qala"))
    return str(info.value)


def test_a_store_gives_tls_the_ca_the_port_and_the_client_id() -> None:
    config = parse(doc({"store": "store"}), {}, base=Path("/etc/qala"))
    assert config.trust.store == Path("/etc/qala/store")
    assert config.trust.hub == "main"
    assert not config.trust.plain
    assert (config.mqtt.tls, config.mqtt.port, config.mqtt.ca_file) == (True, 8883, "/etc/qala/store/tls/ca.pem")
    assert config.mqtt.client_id == "hub/t-site/main"
    hub2 = parse(doc({"store": "/s", "hub": "hub-2"}, port=9883), {})
    assert (hub2.mqtt.port, hub2.mqtt.client_id) == (9883, "hub/t-site/hub-2")
    bench = parse(doc({"store": "/s"}, tls=False), {})  # plain MQTT with a store: said explicitly
    assert (bench.mqtt.tls, bench.mqtt.port, bench.mqtt.ca_file) == (False, 1883, None)


def test_plain_mode_is_explicit() -> None:
    config = parse(doc({"plain": True}), {})
    assert config.trust.plain
    assert config.trust.store is None
    assert (config.mqtt.tls, config.mqtt.port) == (False, 1883)


@pytest.mark.parametrize(("document", "message"), [
    (doc(None), "trust: required section [trust] is missing (store = the provisioning store's folder"),
    (doc({}), "trust.store: required: the provisioning store's folder (`qala provision init"),
    (doc({"store": ""}), "trust.store: must not be empty"),
    (doc({"store": "/s", "plain": True}), "trust.plain: true runs without a store"),
    (doc({"store": "/s", "hub": "a/b"}), "trust.hub: character '/' not allowed"),
    (doc({"store": "/s", "hubs": "x"}), "trust.hubs: unknown key"),
    (doc({"store": 7}), "trust.store: must be a string"),
    (doc({"plain": "yes"}), "trust.plain: must be true or false"),
    (doc({"store": "/s"}, username="u"), "mqtt.username: comes from the provisioning store"),
    (doc({"store": "/s"}, password="p"), "mqtt.password: comes from the provisioning store"),
    (doc({"store": "/s"}, ca_file="/ca.pem"), "mqtt.ca_file: comes from the provisioning store"),
])
def test_bad_trust_sections_are_named(document: dict[str, Any], message: str) -> None:
    assert error(document).startswith(message), error(document)


def test_the_hub_stops_at_start_when_the_store_cannot_be_used(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    store = provision_site(tmp_path / "store", ["b1"])
    good = doc({"store": str(store.root)}) | {"spool": {"path": str(tmp_path / "spool")}}
    hub = Hub(parse(good, {}))
    assert hub.trust is not None
    assert hub.config.mqtt.username == "hub/t-site/main"
    assert hub.config.mqtt.password
    assert hub.config.mqtt.password not in repr(hub.config)
    assert hub.processor.known == frozenset({"b1"})
    cases = [
        (doc({"store": str(tmp_path / "nowhere")}), "not a provisioning store (no such folder"),
        (doc({"store": str(store.root), "hub": "hub-9"}), "no hub identity 'hub-9' (have: main, obs-1"),
        (doc({"store": str(store.root)}) | {"site": {"id": "other"}}, "the store is for site 't-site'"),
    ]
    for document, message in cases:
        with pytest.raises(StoreError, match=message.replace("(", r"\(").replace(")", r"\)")):
            Hub(parse(document | {"spool": {"path": str(tmp_path / "spool")}}, {}))
    (store.root / "secrets" / "boards" / "b1.json").chmod(0o644)
    path = tmp_path / "hub.toml"
    path.write_text(f'[site]\nid="t-site"\n[mqtt]\nhost="h"\n[influxdb]\napi="v1"\nurl="http://h"\ndatabase="d"\n'
                    f'[spool]\npath="{tmp_path / "spool"}"\n[trust]\nstore="{store.root}"\n')
    assert cli.main(["hub", "run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "provisioning store ([trust] store):" in err
    assert "b1.json: mode 644: group or others may read it (chmod 600)" in err
    assert "Traceback" not in err


def test_a_reload_takes_new_revoked_and_rotated_boards(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = provision_site(tmp_path / "store", ["b1", "b2"])
    hub = Hub(parse(doc({"store": str(store.root)}) | {"spool": {"path": str(tmp_path / "spool")}}, {}))
    assert hub.signer is not None
    assert hub.processor.known == frozenset({"b1", "b2"})
    provision.add_board(store.root, "b3")
    provision.revoke_board(store.root, "b1")
    rotated = provision.rotate_board(store.root, "b2")
    caplog.set_level(logging.INFO, logger="hub.service")
    hub.reload_trust()
    assert hub.processor.known == frozenset({"b2", "b3"})
    assert hub.signer.can_sign("b3")
    assert not hub.signer.can_sign("b1")
    assert "trust: store reloaded devices=2 added=1 removed=1" in caplog.text
    assert hub.trust is not None
    assert hub.trust.cmd_key("b2") == rotated.cmd_key
    (store.root / "devices.json").write_text("{broken")
    hub.reload_trust()  # a store that does not load: the one loaded before stays
    assert hub.processor.known == frozenset({"b2", "b3"})
    assert "trust: reload refused, keeping the store loaded before" in caplog.text


@pytest.mark.integration
def test_sighup_reloads_the_store_of_a_running_hub(tmp_path: Path, mosquitto_factory: Any) -> None:
    store = provision_site(tmp_path / "store", ["b1"])
    broker = mosquitto_factory(store=store.root)
    path = write_config(tmp_path, broker, {"api": "v1", "url": "http://127.0.0.1:9", "database": "x"})
    process = HubProcess(path)
    process.start()
    try:
        wait_until(lambda: "mqtt: subscribed" in process.log(), 30, what="the hub's subscription")
        provision.add_board(store.root, "b2")
        assert process.process is not None
        process.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "trust: store reloaded devices=2 added=1 removed=0" in process.log(), 10,
                   what="the reload")
        assert process.alive()
    finally:
        assert process.terminate() == 0
