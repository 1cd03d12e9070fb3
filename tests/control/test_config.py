"""Control config: [api], [control], [[rules]], [[schedules]]; every bad key is named."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hub.config import ConfigError, parse

BASE: dict[str, Any] = {
    "site": {"id": "ast-01"},
    "mqtt": {"host": "127.0.0.1"},
    "influxdb": {"api": "v1", "url": "http://127.0.0.1:8086", "database": "qala"},
    "spool": {"path": "/tmp/qala"},
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
    cfg = parse(doc(api={"token": "${TOK}", "port": 9000}, control={"ttl": 10, "retries": 1},
                    rules=[RULE], schedules=[SCHEDULE]), env={"TOK": "x" * 20})
    assert cfg.api is not None
    assert cfg.api.token == "x" * 20
    assert cfg.api.listen == "127.0.0.1"
    assert "x" * 20 not in repr(cfg)
    assert cfg.rules[0].target_device == "t1"
    assert cfg.rules[0].high_value == 80
    assert cfg.schedules[0].at.hour == 22
    assert cfg.control.retries == 1


@pytest.mark.parametrize(("sections", "message"), [
    ({"api": {}}, "api.token: required"),
    ({"api": {"token": "short"}}, "api.token: must be at least 16 characters"),
    ({"api": {"token": "x" * 16, "bind": "x"}}, "api.bind: unknown key"),
    ({"api": {"token": "x" * 16, "port": 70000}}, "api.port: must be 0..65535"),
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
