"""Profile loading: the shipped profiles load, and every kind of bad key is refused with file and key path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from hub.modbus import profile as profiles
from protocols import catalogue

GOOD: dict[str, Any] = {
    "profile": {"name": "meter", "order": "ABCD", "table": "input"},
    "registers": {
        "voltage": {"address": 0, "quantity": "voltage"},
        "sp": {"address": 10, "quantity": "setpoint", "table": "holding", "writable": True, "min": 0, "max": 50},
    },
}


@pytest.mark.parametrize("name", ["qala_board", "sdm120", "sdm630", "onicon_system10"])
def test_builtin_profiles_load(name: str) -> None:
    prof = profiles.load(profiles.resolve(name))
    assert prof.name == name
    assert prof.registers
    assert all(r.quantity in catalogue.QUANTITIES for r in prof.registers)


def test_builtin_names() -> None:
    assert {"qala_board", "sdm120", "sdm630", "onicon_system10"} <= set(profiles.builtin_names())


def test_eastron_addresses_follow_the_manual() -> None:
    sdm630 = profiles.load(profiles.resolve("sdm630"))
    assert sdm630.register("voltage_l1").address == 0  # 30001
    assert sdm630.register("frequency").address == 0x46  # 30071
    assert sdm630.register("energy_import").address == 0x48  # 30073
    assert {r.order for r in sdm630.registers} == {"ABCD"}
    assert {r.table for r in sdm630.registers} == {"input"}


def test_qala_board_slots_follow_the_catalogue() -> None:
    board = profiles.load(profiles.resolve("qala_board"))
    order = list(catalogue.QUANTITIES)
    for reg in board.registers:
        if reg.table == "input":
            assert reg.address == 2 * order.index(reg.quantity)
    sp = board.register("actuator1")
    assert sp.writable
    assert sp.table == "holding"
    assert (sp.minimum, sp.maximum) == (0.0, 100.0)


def test_defaults_and_overrides() -> None:
    prof = profiles.parse(GOOD, "x.toml")
    v = prof.register("voltage")
    assert (v.type, v.order, v.table, v.scale, v.sensor, v.writable) == ("f32", "ABCD", "input", 1.0, "meter", False)
    sp = prof.register("sp")
    assert sp.writable
    assert sp.minimum == 0
    assert sp.maximum == 50


def _mutate(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


_DELETE = object()

BAD = [
    (("profile",), _DELETE, "profile: required"),
    (("extra",), 1, "extra: unknown section (known sections: profile, registers)"),
    (("profile", "name"), _DELETE, "profile.name: required"),
    (("profile", "name"), "bad name", "profile.name: character ' ' not allowed"),
    (("profile", "colour"), "red", "profile.colour: unknown key"),
    (("profile", "order"), "ABDC", "profile.order: must be one of ABCD, CDAB, BADC, DCBA"),
    (("profile", "table"), "coils", "profile.table: must be one of input, holding"),
    (("profile", "type"), "f64", "profile.type: must be one of"),
    (("profile", "max_gap"), 500, "profile.max_gap: must be 0..120"),
    (("profile", "source"), 3, "profile.source: must be a string"),
    (("registers",), {}, "registers: must define at least one register"),
    (("registers",), [], "registers: must be a table"),
    (("registers", "voltage"), 5, "registers.voltage: must be a table"),
    (("registers", "bad/name"), {"address": 4, "quantity": "current"}, "registers.bad/name: character '/'"),
    (("registers", "voltage", "address"), _DELETE, "registers.voltage.address: required"),
    (("registers", "voltage", "address"), -1, "registers.voltage.address: must be 0..65535"),
    (("registers", "voltage", "address"), 65535, "registers.voltage.address: a f32 at 65535 runs past"),
    (("registers", "voltage", "address"), "0x10", "registers.voltage.address: must be an integer"),
    (("registers", "voltage", "address"), True, "registers.voltage.address: must be an integer"),
    (("registers", "voltage", "quantity"), "volts", "registers.voltage.quantity: unknown quantity 'volts'"),
    (("registers", "voltage", "quantity"), _DELETE, "registers.voltage.quantity: required"),
    (("registers", "voltage", "type"), "float", "registers.voltage.type: must be one of"),
    (("registers", "voltage", "order"), "dcba", "registers.voltage.order: must be one of"),
    (("registers", "voltage", "scale"), 0, "registers.voltage.scale: must not be zero"),
    (("registers", "voltage", "scale"), "x", "registers.voltage.scale: must be a number"),
    (("registers", "voltage", "scale"), float("nan"), "registers.voltage.scale: must be finite"),
    (("registers", "voltage", "sensor"), "", "registers.voltage.sensor: must not be empty"),
    (("registers", "voltage", "unit"), "V", "registers.voltage.unit: unknown key"),
    (("registers", "voltage", "writable"), True, "registers.voltage.writable: only holding registers"),
    (("registers", "voltage", "writable"), "yes", "registers.voltage.writable: must be true or false"),
    (("registers", "voltage", "max"), 10, "registers.voltage.max: limits apply to writable registers only"),
    (("registers", "sp", "max"), -5, "registers.sp.max: must not be below min"),
    (("registers", "sp", "address"), 9, None),  # fine: no overlap with voltage at 0..1
    (("registers", "current"), {"address": 1, "quantity": "current"}, ("registers.current.address: input register 1 "
                                                                      "overlaps registers.voltage")),
    (("registers", "voltage2"), {"address": 20, "quantity": "voltage"}, "registers.voltage2: same sensor 'meter'"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[".".join(b[0]) + f"={b[1]!r}"[:20] for b in BAD])
def test_bad_profiles_name_file_and_key(path: tuple[str, ...], value: Any, message: str | None) -> None:
    doc = _mutate(path, value)
    if message is None:
        profiles.parse(doc, "meter.toml")
        return
    with pytest.raises(profiles.ProfileError) as info:
        profiles.parse(doc, "meter.toml")
    assert str(info.value).startswith("meter.toml: ")
    assert message in str(info.value)


def test_load_reports_toml_syntax_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("[profile\nname = 1\n")
    with pytest.raises(profiles.ProfileError, match=r"^broken.toml: not valid TOML"):
        profiles.load(bad)
    with pytest.raises(profiles.ProfileError, match="cannot read"):
        profiles.load(tmp_path / "absent.toml")


def test_resolve() -> None:
    assert profiles.resolve("sdm630") == profiles.BUILTIN_DIR / "sdm630.toml"
    assert profiles.resolve("site/meter.toml", Path("/etc/qala")) == Path("/etc/qala/site/meter.toml")
    assert profiles.resolve("/abs/m.toml", Path("/etc/qala")) == Path("/abs/m.toml")
