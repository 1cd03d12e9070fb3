"""[modbus] in hub.toml: delegated to hub.modbus.config, errors name the key path; the Hub wires the poller."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest

from hub import cli
from hub.config import ConfigError, parse
from hub.model import Reading
from hub.service import Hub

BASE: dict[str, Any] = {
    "site": {"id": "ast-01"},
    "mqtt": {"host": "127.0.0.1"},
    "influxdb": {"api": "v1", "url": "http://127.0.0.1:8086", "database": "qala"},
    "spool": {"path": "/tmp/qala"},
    "trust": {"plain": True},  # these tests are about other sections; [trust] has tests/hub/test_config_trust.py
}
MODBUS: dict[str, Any] = {
    "buses": {"plant": {"transport": "tcp", "host": "127.0.0.1", "port": 5020},
              "rs485-1": {"transport": "rtu", "port": "/dev/ttyUSB0", "baudrate": 19200}},
    "devices": {"board-7": {"bus": "rs485-1", "unit": 7, "profile": "qala_board", "interval": 2.0},
                "meter-1": {"bus": "plant", "unit": 1, "profile": "sdm630"}},
}


def doc(**modbus: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE)
    out["modbus"] = copy.deepcopy(MODBUS) | modbus
    return out


def error(document: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse(document, {})
    return str(info.value)


def test_no_modbus_section_means_no_poller() -> None:
    assert parse(BASE, {}).modbus is None


def test_modbus_section_is_parsed_with_defaults() -> None:
    config = parse(doc(), {})
    assert config.modbus is not None
    bus = config.modbus.bus("rs485-1")
    assert (bus.transport, bus.port, bus.baudrate, bus.parity, bus.timeout) == ("rtu", "/dev/ttyUSB0", 19200, "N", 0.5)
    devices = {d.name: d for d in config.modbus.devices}
    assert devices["board-7"].profile.name == "qala_board"
    assert devices["board-7"].interval == 2.0
    assert devices["meter-1"].interval == 10.0


def test_relative_profile_paths_are_taken_from_the_config_folder(tmp_path: Path) -> None:
    profile = Path(__file__).resolve().parents[2] / "hub" / "profiles" / "sdm120.toml"
    (tmp_path / "mine.toml").write_text(profile.read_text())
    document = doc()
    document["modbus"]["devices"]["meter-1"]["profile"] = "mine.toml"
    config = parse(document, {}, base=tmp_path)
    assert config.modbus is not None
    assert {d.name: d for d in config.modbus.devices}["meter-1"].profile.name == "sdm120"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra": 1}, "modbus.extra: unknown key"),
        ({"buses": {"b": {"transport": "udp"}}}, "modbus.buses.b.transport:"),
        ({"buses": {"b": {"transport": "tcp"}}}, "modbus.buses.b.host:"),
        ({"buses": {"b": {"transport": "tcp", "host": "h", "speed": 1}}}, "modbus.buses.b.speed:"),
        ({"devices": {"d": {"bus": "nowhere", "unit": 1, "profile": "sdm120"}}}, "modbus.devices.d.bus:"),
        ({"devices": {"d": {"bus": "rs485-1", "unit": 0, "profile": "sdm120"}}}, "modbus.devices.d.unit:"),
        ({"devices": {"d": {"bus": "plant", "unit": 1, "profile": "nope"}}}, "modbus.devices.d.profile:"),
        ({"devices": {"d": {"bus": "plant", "unit": 1, "profile": "sdm120", "poll": 1}}}, "modbus.devices.d.poll:"),
        ({"devices": {"d": {"bus": "plant", "unit": 1, "profile": "sdm120", "interval": 0}}},
         "modbus.devices.d.interval:"),
    ],
)
def test_every_bad_key_is_named(change: dict[str, Any], message: str) -> None:
    document = doc()
    for key, value in change.items():
        if key in ("buses", "devices"):
            document["modbus"][key] = (document["modbus"][key] | value) if key == "devices" else (
                document["modbus"]["buses"] | value)
        else:
            document["modbus"][key] = value
    assert message in error(document)


def test_modbus_must_be_a_table() -> None:
    document = copy.deepcopy(BASE)
    document["modbus"] = 3
    assert error(document).startswith("modbus")


async def test_hub_starts_a_poller_only_with_devices(tmp_path: Path) -> None:
    base = copy.deepcopy(BASE) | {"spool": {"path": str(tmp_path / "spool")}}
    assert Hub(parse(base, {})).modbus is None
    assert Hub(parse(base | {"modbus": {"buses": MODBUS["buses"]}}, {})).modbus is None
    hub = Hub(parse(base | {"modbus": MODBUS}, {}))
    assert hub.modbus is not None
    assert set(hub.modbus.pollers) == {"board-7", "meter-1"}
    assert hub.control.modbus is hub.modbus  # setpoints to Modbus devices go through the same poller


async def test_modbus_readings_take_the_mqtt_readings_path(tmp_path: Path) -> None:
    hub = Hub(parse(copy.deepcopy(BASE) | {"spool": {"path": str(tmp_path / "spool")}, "modbus": MODBUS}, {}))
    seen: list[Reading] = []
    hub.control.observe = seen.extend  # type: ignore[method-assign]
    reading = Reading("energy", "ast-01", "meter-1", "meter", "ok", "voltage", 230.0, 1)
    hub.ingest([reading])
    assert seen == [reading]
    assert hub._extra == [reading]  # spooled by the ingest task with the next batch


def test_cli_quiets_pymodbus_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging, "basicConfig", lambda **_: None)
    assert cli.main(["version"]) == 0
    assert logging.getLogger("pymodbus.logging").getEffectiveLevel() >= logging.WARNING
