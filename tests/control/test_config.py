"""Control config: [api], [control], [[rules]], [[schedules]]; every bad key is named."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from hub.config import ConfigError, parse

BASE: dict[str, Any] = {
    "site": {"id": "ast-01"},
    "mqtt": {"host": "127.0.0.1"},
    "influxdb": {"api": "v1", "url": "http://127.0.0.1:8086", "database": "qala"},
    "spool": {"path": "/tmp/qala"},
    "trust": {"plain": True},  # these tests are about other sections; [trust] has tests/hub/test_config_trust.py
}
RULE = {"name": "co2fan", "device": "t1", "sensor": "air1", "quantity": "co2", "above": 1000, "below": 800,
        "hold_s": 120, "actuator": "fan1", "high": 80, "low": 20}
SCHEDULE = {"name": "night", "device": "t1", "actuator": "fan1", "at": "22:30", "value": 10}


def doc(**sections: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out.update(sections)
    return out


def test_defaults_and_a_full_control_config() -> None:
    assert parse(BASE).api is None
    assert parse(BASE).control.ttl == 30.0
    cfg = parse(doc(api={"control_token": "${TOK}", "read_token": "${READ}", "port": 9000},
                    control={"ttl": 10, "retries": 1}, rules=[RULE], schedules=[SCHEDULE]),
                env={"TOK": "x" * 20, "READ": "r" * 16})
    assert cfg.api is not None
    assert (cfg.api.control_token, cfg.api.read_token) == ("x" * 20, "r" * 16)
    assert cfg.api.tokens() == (("control", "x" * 20), ("read", "r" * 16))
    assert cfg.api.listen == "127.0.0.1"
    assert (cfg.api.trusted_proxy, cfg.api.tls_cert, cfg.api.tls_key) == (None, None, None)
    assert "x" * 20 not in repr(cfg)
    assert "r" * 16 not in repr(cfg)
    assert cfg.rules[0].target_device == "t1"
    assert cfg.rules[0].high_value == 80
    assert cfg.schedules[0].at.hour == 22
    assert cfg.control.retries == 1


@pytest.mark.parametrize(("sections", "message"), [
    ({"api": {}}, "api.control_token: required (or api.read_token for a read-only API"),
    ({"api": "x"}, "api: must be a table"),
    ({"api": {"token": "x" * 16}}, "api.token: renamed api.control_token"),
    ({"api": {"control_token": "short"}}, "api.control_token: must be at least 16 characters, got 5"),
    ({"api": {"read_token": "r" * 15}}, "api.read_token: must be at least 16 characters, got 15"),
    ({"api": {"control_token": 1234567890123456}}, "api.control_token: must be a string"),
    ({"api": {"read_token": True}}, "api.read_token: must be a string"),
    ({"api": {"control_token": "x" * 10 + " " + "x" * 10}}, "api.control_token: must be printable ASCII"),
    ({"api": {"read_token": "é" * 16}}, "api.read_token: must be printable ASCII"),
    ({"api": {"control_token": "${NOPE}"}}, "api.control_token: environment variable NOPE is not set"),
    ({"api": {"control_token": "x" * 16, "read_token": "x" * 16}}, "api.read_token: must differ from api.control"),
    ({"api": {"control_token": "x" * 16, "bind": "x"}}, "api.bind: unknown key"),
    ({"api": {"control_token": "x" * 16, "port": 70000}}, "api.port: must be 0..65535"),
    ({"api": {"control_token": "x" * 16, "port": "8470"}}, "api.port: must be an integer"),
    ({"api": {"control_token": "x" * 16, "listen": 127}}, "api.listen: must be a string"),
    ({"api": {"control_token": "x" * 16, "trusted_proxy": "nginx"}}, "api.trusted_proxy: must be an IP address"),
    ({"api": {"control_token": "x" * 16, "trusted_proxy": "10.0.0.0/8"}}, "api.trusted_proxy: must be an IP"),
    ({"api": {"control_token": "x" * 16, "trusted_proxy": 1}}, "api.trusted_proxy: must be a string"),
    ({"api": {"control_token": "x" * 16, "tls_cert": "c.pem"}}, "api.tls_key: required with api.tls_cert"),
    ({"api": {"control_token": "x" * 16, "tls_key": "k.pem"}}, "api.tls_cert: required with api.tls_key"),
    ({"api": {"control_token": "x" * 16, "tls_cert": "", "tls_key": "k.pem"}}, "api.tls_cert: must not be empty"),
    ({"api": {"control_token": "x" * 16, "tls_cert": "c.pem", "tls_key": ""}}, "api.tls_key: must not be empty"),
    ({"api": {"control_token": "x" * 16, "tls_cert": "c.pem", "tls_key": 7}}, "api.tls_key: must be a string"),
    ({"control": {"ttl": 0}}, "control.ttl: must be positive"),
    ({"control": {"retries": 11}}, "control.retries: must be 0..10"),
    ({"rules": {"name": "x"}}, "rules: must be an array of tables"),
    ({"rules": [RULE | {"below": 1200}]}, "rules[0].below: must be below rules[0].above"),
    ({"rules": [RULE | {"quantity": "smell"}]}, "rules[0].quantity: unknown quantity 'smell'"),
    ({"rules": [{k: v for k, v in RULE.items() if k != "actuator"}]}, "rules[0].actuator: required"),
    ({"rules": [RULE | {"high": "80"}]}, "rules[0].high: must be a number"),
    ({"rules": [RULE | {"typo": 1}]}, "rules[0].typo: unknown key"),
    ({"rules": [RULE, RULE]}, "rules[1].name: 'co2fan' is used twice"),
    ({"rules": [RULE | {"device": "a/b"}]}, "rules[0].device"),
    ({"schedules": [SCHEDULE | {"at": "25:00"}]}, "schedules[0].at: must be a local time HH:MM"),
    ({"schedules": [SCHEDULE | {"value": True}]}, "schedules[0].value: must be a number"),
])
def test_bad_keys_are_named(sections: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(doc(**sections), env={})
    assert str(info.value).startswith(message), str(info.value)


def test_api_read_only_proxy_and_tls_paths_from_the_config_folder(tmp_path: Path) -> None:
    api = {"read_token": "r" * 16, "trusted_proxy": "2001:DB8:0::1", "tls_cert": "tls/api.pem",
           "tls_key": "/etc/qala/api.key"}
    cfg = parse(doc(api=api), env={}, base=tmp_path)
    assert cfg.api is not None
    assert cfg.api.tokens() == (("read", "r" * 16),)
    assert cfg.api.trusted_proxy == "2001:db8::1"  # normalised as the API compares it
    assert cfg.api.tls_cert == tmp_path / "tls" / "api.pem"
    assert cfg.api.tls_key == Path("/etc/qala/api.key")
