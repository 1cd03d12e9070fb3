"""[alerts] and [[alerts.actions]] in hub.toml, and a Modbus device's place: defaults, and every bad key named."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hub.config import AlertAction, AlertsConfig, ConfigError, parse
from tests.hub.test_config import ENV, REPO, V1
from tests.hub.test_config_modbus import doc as modbus_doc


def error(document: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse(document, {})
    return str(info.value)


def with_alerts(**alerts: Any) -> dict[str, Any]:
    out = copy.deepcopy(V1)
    out["alerts"] = alerts
    return out


def test_defaults_and_actions() -> None:
    assert parse(V1, {}).alerts == AlertsConfig()
    assert AlertsConfig().actions == ()  # automatic actions are off unless written
    config = parse(with_alerts(per_device_hour=3, reopen_s=0, summary_interval=5, on_time_factor=2.5, actions=[
        {"kind": "leak", "district": "esil", "actuator": "valve1", "value": 0},
        {"kind": "flatline", "device": "a1", "target_device": "a2", "actuator": "fan1", "value": 20.5},
    ]), {})
    assert config.alerts == AlertsConfig(3, 0.0, 1000, 5.0, 2.5, (
        AlertAction("leak", "valve1", 0.0, district="esil"),
        AlertAction("flatline", "fan1", 20.5, device="a1", target_device="a2")))
    leak, flat = config.alerts.actions
    assert leak.matches("leak", "any", "esil")
    assert not leak.matches("leak", "any", "nura")
    assert not leak.matches("spike", "any", "esil")
    assert flat.matches("flatline", "a1", None)
    assert not flat.matches("flatline", "a2", None)


@pytest.mark.parametrize(("alerts", "message"), [
    ({"per_device_hour": 0}, "alerts.per_device_hour: must be 1..1000, got 0"),
    ({"reopen_s": -1}, "alerts.reopen_s: must be 0..86400 seconds, got -1"),
    ({"summary_interval": 0}, "alerts.summary_interval: must be 1..3600 seconds, got 0"),
    ({"on_time_factor": 0.5}, "alerts.on_time_factor: must be 1..100, got 0.5"),
    ({"keep_resolved": 5}, "alerts.keep_resolved: must be 10..100000, got 5"),
    ({"reopen": 5}, "alerts.reopen: unknown key (did you mean reopen_s?"),
    ({"actions": [{"kind": "fire", "actuator": "v", "value": 0}]}, "alerts.actions[0].kind: must be one of flatline"),
    ({"actions": [{"kind": "leak", "value": 0}]}, "alerts.actions[0].actuator: required"),
    ({"actions": [{"kind": "leak", "actuator": "v"}]}, "alerts.actions[0].value: required"),
    ({"actions": [{"kind": "leak", "actuator": "v", "value": 0, "district": "a b"}]},
     "alerts.actions[0].district: character ' ' not allowed"),
    ({"actions": [{"kind": "leak", "actuator": "v", "value": 0, "target_device": "x"}]},
     "alerts.actions[0].target_device: with a target, say which alerts move it"),
    ({"actions": {"kind": "leak"}}, "alerts.actions: must be an array of tables"),
])
def test_every_bad_key_is_named(alerts: dict[str, Any], message: str) -> None:
    assert message in error(with_alerts(**alerts))


def test_modbus_devices_have_a_place() -> None:
    document = modbus_doc()
    document["modbus"]["devices"]["meter-1"] |= {"district": "esil", "lat": 51.128, "lon": 71.43}
    config = parse(document, {})
    assert config.modbus is not None
    meter = next(d for d in config.modbus.devices if d.name == "meter-1")
    board = next(d for d in config.modbus.devices if d.name == "board-7")
    assert (meter.district, meter.lat, meter.lon) == ("esil", 51.128, 71.43)
    assert (board.district, board.lat, board.lon) == (None, None, None)
    for change, message in (({"lat": 51.0}, "modbus.devices.meter-1.lon: required with modbus.devices.meter-1.lat"),
                            ({"lon": 71.0}, "modbus.devices.meter-1.lat: required with modbus.devices.meter-1.lon"),
                            ({"lat": 91.0, "lon": 0.0}, "modbus.devices.meter-1.lat: must be -90..90 degrees"),
                            ({"district": ""}, "modbus.devices.meter-1.district: must not be empty")):
        document = modbus_doc()
        document["modbus"]["devices"]["meter-1"] |= change
        assert message in error(document)


def test_the_example_shows_the_alerts_section() -> None:
    from hub.config import load  # noqa: PLC0415

    config = load(REPO / "hub" / "config.example.toml", env=ENV)
    assert config.alerts == AlertsConfig()  # the example's values are the defaults; its actions commented out
