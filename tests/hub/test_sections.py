"""One way to declare and check a section (hub.sections): hub.toml's sections, [modbus] and the device profiles
are all declared through it, so an unknown key is refused the same way in every one of them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from hub import config as hub_config
from hub import sections
from hub.errors import ConfigError
from hub.modbus import config as modbus_config
from hub.modbus import profile as profiles
from hub.sections import Array, Key, Table, Tables

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[2]
ENV = {"QALA_INFLUX_PASSWORD": "p", "QALA_API_CONTROL": "c" * 16, "QALA_API_READ": "r" * 16,
       "QALA_NORTH_SECRET": "n" * 16}
ODD = "zzz_odd"


def example_with_modbus() -> dict[str, Any]:
    """hub/config.example.toml with its commented [modbus] part switched on."""
    text = (REPO / "hub" / "config.example.toml").read_text()
    tail = text[text.index("# [modbus]"):].splitlines()
    modbus = [line[2:] for line in tail if re.match(r"# (\[modbus\.[^\]]+\]|[a-z_]+ = )", line)]
    return tomllib.loads(text + "\n" + "\n".join(modbus) + "\n")


def tables(spec: Table, value: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, table) of every table in `value` that `spec` declares, `value` itself first."""
    yield path, value
    for name, node in spec.keys.items():
        where = sections.join(path, name)
        given = value.get(name)
        if isinstance(node, Table) and isinstance(given, dict):
            yield from tables(node, given, where)
        elif isinstance(node, Tables) and isinstance(given, dict):
            for child, body in given.items():
                yield from tables(node.each, body, f"{where}.{child}")
        elif isinstance(node, Array) and isinstance(given, list):
            for i, body in enumerate(given):
                yield from tables(node.each, body, f"{where}[{i}]")


def test_the_example_and_its_modbus_part_are_declared_through_hub_sections() -> None:
    document = example_with_modbus()
    config = hub_config.parse(document, ENV)
    assert config.modbus is not None
    assert [d.name for d in config.modbus.devices] == ["meter-1", "board-7"]
    assert hub_config.DOCUMENT.keys["modbus"] is modbus_config.SECTION
    found = {path for path, _ in tables(hub_config.DOCUMENT, document) if path}
    assert set(document) - {"rules", "schedules"} <= found  # every section of the file has a declaration
    assert {"modbus.buses.rs485-1", "modbus.devices.meter-1", "rules[0]", "schedules[0]",
            "detect.quantities.pm25"} <= found


def test_an_unknown_key_is_refused_the_same_way_in_every_section() -> None:
    document = example_with_modbus()
    found = list(tables(hub_config.DOCUMENT, document))
    for path, table in found:
        table[ODD] = 1
        with pytest.raises(ConfigError) as info:
            hub_config.parse(document, ENV)
        del table[ODD]
        kind = "key" if path else "section"
        assert str(info.value).startswith(f"{sections.join(path, ODD)}: unknown {kind} (known {kind}s: "), path
    assert len(found) == 23  # the file, its 15 sections, a rule, a schedule, a webhook, a bus, 2 devices and
    # detect.quantities.pm25


def test_a_profile_refuses_an_unknown_key_the_same_way() -> None:
    for name in profiles.builtin_names():
        file = profiles.BUILTIN_DIR / f"{name}.toml"
        document = tomllib.loads(file.read_text())
        for path, table in list(tables(profiles.DOCUMENT, document)):
            if not path:
                continue
            table[ODD] = 1
            with pytest.raises(profiles.ProfileError) as info:
                profiles.parse(document, file.name)
            del table[ODD]
            assert str(info.value).startswith(f"{file.name}: {path}.{ODD}: unknown key (known keys: "), path


def test_modbus_alone_and_in_hub_toml_give_the_same_message() -> None:
    document = example_with_modbus()
    document["modbus"]["devices"]["meter-1"]["slave"] = 1
    with pytest.raises(ConfigError) as in_hub:
        hub_config.parse(document, ENV)
    with pytest.raises(ConfigError) as alone:
        modbus_config.parse(document["modbus"])
    assert str(in_hub.value) == str(alone.value)
    assert str(alone.value).startswith("modbus.devices.meter-1.slave: unknown key (known keys: bus, unit, ")


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text((REPO / "hub" / "config.example.toml").read_text().replace("keepalive = 30", "keepalive = 0"))
    with pytest.raises(ConfigError) as info:
        hub_config.load(path, ENV)
    assert str(info.value) == f"{path}: mqtt.keepalive: must be positive, got 0"


SPEC = Table(
    {
        "kind": Key(str, choices=("a", "b")),
        "name": Key(str, id=True),
        "port": Key(int, 80, 1, 65535, note="0: any"),
        "wait": Key(float, 1.0, 0.1, 60, unit="seconds"),
        "secret": Key(str, None),
        "on": Key(bool, default=False),
        "items": Tables(Table({"size": Key(int, lo=1)})),
        "rows": Array(Table({"x": Key(float)})),
        "extra": Table({"depth": Key(int, 3)}),
        "feature": Table({"level": Key(int)}, missing="none"),
    },
    by="kind",
    variants={"a": {"only_a": Key(str, "x")}, "b": {"only_b": Key(int)}},
    retired={"old": "renamed port"},
)


def check(value: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    return sections.check(SPEC, value, "t", env)


def fails(value: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        check(value, env)
    return str(info.value)


def test_defaults_and_plain_data_come_back() -> None:
    assert check({"kind": "a", "name": "n1", "items": {"i1": {"size": 2}}, "rows": [{"x": 1}]}) == {
        "kind": "a", "name": "n1", "port": 80, "wait": 1.0, "secret": None, "on": False,
        "items": {"i1": {"size": 2}}, "rows": [{"x": 1.0}], "extra": {"depth": 3}, "feature": None, "only_a": "x",
    }


@pytest.mark.parametrize(("value", "message"), [
    ({"name": "n"}, "t.kind: required (one of a, b)"),
    ({"kind": "c", "name": "n"}, "t.kind: must be one of a, b, got 'c'"),
    ({"kind": "a"}, "t.name: required"),
    ({"kind": "a", "name": "a b"}, "t.name: character ' ' not allowed (use A-Z a-z 0-9 _ -)"),
    ({"kind": "a", "name": "n", "prot": 1}, "t.prot: unknown key (did you mean port? known keys: kind, name, port, "),
    ({"kind": "a", "name": "n", "old": 1}, "t.old: renamed port"),
    ({"kind": "a", "name": "n", "only_b": 1}, 't.only_b: not used when kind = "a" (remove it)'),
    ({"kind": "b", "name": "n"}, 't.only_b: required when kind = "b"'),
    ({"kind": "a", "name": "n", "port": "80"}, "t.port: must be an integer, got str '80' (0: any)"),
    ({"kind": "a", "name": "n", "port": True}, "t.port: must be an integer, got bool True (0: any)"),
    ({"kind": "a", "name": "n", "port": 0}, "t.port: must be 1..65535, got 0 (0: any)"),
    ({"kind": "a", "name": "n", "wait": 100}, "t.wait: must be 0.1..60 seconds, got 100"),
    ({"kind": "a", "name": "n", "wait": float("inf")}, "t.wait: must be finite, got inf"),
    ({"kind": "a", "name": "n", "secret": ""}, "t.secret: must not be empty"),
    ({"kind": "a", "name": "n", "on": 1}, "t.on: must be true or false, got int 1"),
    ({"kind": "a", "name": "n", "items": []}, "t.items: must be a table ([t.items.NAME] tables), got list"),
    ({"kind": "a", "name": "n", "items": {"i/1": {"size": 1}}}, "t.items.i/1: character '/' not allowed"),
    ({"kind": "a", "name": "n", "items": {"i1": {"size": 0}}}, "t.items.i1.size: must be at least 1, got 0"),
    ({"kind": "a", "name": "n", "rows": {}}, "t.rows: must be an array of tables ([[t.rows]]), got dict"),
    ({"kind": "a", "name": "n", "rows": [{"y": 1}]}, "t.rows[0].y: unknown key (known keys: x)"),
    ({"kind": "a", "name": "n", "extra": 1}, "t.extra: must be a table ([t.extra]), got int"),
    ({"kind": "a", "name": "n", "feature": {}}, "t.feature.level: required"),
    ({"kind": "a", "name": "n", "secret": "${NOPE}"}, "t.secret: environment variable NOPE is not set"),
])
def test_every_refusal_names_the_key_and_the_rule(value: dict[str, Any], message: str) -> None:
    assert fails(value, {}).startswith(message)


def test_environment_values_only_with_an_environment() -> None:
    value = {"kind": "a", "name": "${NAME}", "secret": "${S}"}
    assert check(value, {"NAME": "n2", "S": "s"})["secret"] == "s"
    assert check(value, {"NAME": "n2", "S": "s"})["name"] == "n2"
    assert fails(value, {"NAME": "bad name", "S": "s"}).startswith("t.name: character ' '")
    assert fails(value).startswith("t.name: character '$'")  # no environment: the text as written


def test_no_other_hub_module_writes_its_own_key_checks() -> None:
    """The messages of the one mechanism are written once: in hub/sections.py."""
    for path in (REPO / "hub").rglob("*.py"):
        if path.name != "sections.py":
            text = path.read_text()
            for words in ("known keys", "must be a table", "must be an integer", "is not set"):
                assert words not in text, (path, words)
