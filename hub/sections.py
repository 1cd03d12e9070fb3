"""One way to declare and check the sections of a TOML file.

hub.toml (hub.config), its `[modbus]` section (hub.modbus.config) and Modbus device profiles
(hub.modbus.profile) each declare their layout as a tree of Key, Table, Tables and Array, and `check` walks a
parsed document along it. So every section refuses the same things with the same message: an unknown key
(`mqtt.hots: unknown key (did you mean host? known keys: host, port, ...)`), a key of another variant
(`influxdb.bucket: not used when api = "v1" (remove it)`), a missing key, a wrong type, an empty string, a
value out of range or not among the choices. Each message starts with the key path, says the rule and, where
the declaration gives one, what the key is for or what to write instead.

What `check` returns is plain data (dicts, lists, strings, numbers) with the defaults filled in. Rules between
keys (a password needs a username, a device's bus must exist) stay with the section's owner, after `check`,
and raise ConfigError the same way (`path: rule`).

Adding a section: declare it (a Table of Keys) where its dataclass lives, put it in its parent Table, and
build the dataclass from what `check` returns.

Imports the standard library, hub.errors (ConfigError) and protocols.topics (the id rule); knows nothing of
what any section means.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from hub.errors import ConfigError
from protocols.errors import ProtocolError
from protocols.topics import check_id


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
"""The default of a key that must be given."""

_ABSENT: Final = object()
_ENV = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_TYPE_NAMES: Final = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "an array"}


@dataclass(frozen=True)
class Key:
    """One value: its type (str, int, float, bool or list), its default, and the rules it must keep."""

    kind: type
    default: Any = REQUIRED
    """REQUIRED, or what an absent key reads as (None: "not set"; the owner may compute one)."""
    lo: float | None = None
    hi: float | None = None
    unit: str = ""
    """Said after the range: `must be 1..3600 seconds`."""
    choices: tuple[str, ...] = ()
    empty: bool = False
    """A string may be "" (otherwise `must not be empty`)."""
    positive: bool = False
    id: bool = False
    """A string that follows the id rule of docs/protocol.md (protocols.topics.check_id)."""
    note: str = ""
    """Said in parentheses after any complaint about this key: what it is for or what to do."""


@dataclass(frozen=True)
class Table:
    """A table of named keys: a section (`[mqtt]`) or a table inside one (`[modbus.buses.NAME]`)."""

    keys: Mapping[str, Node]
    missing: Literal["defaults", "required", "none"] = "defaults"
    """When the table is absent: its keys' defaults, an error, or None (a section that switches a feature on)."""
    note: str = ""
    """Said when a required table is missing: what to write."""
    by: str = ""
    """The key (one of `keys`, with choices) that picks one of `variants`."""
    variants: Mapping[str, Mapping[str, Node]] = field(default_factory=dict)
    """Keys that exist only with one value of `by` (influxdb's v1/v2 keys, a bus's tcp/rtu keys)."""
    retired: Mapping[str, str] = field(default_factory=dict)
    """Keys that no longer exist, each with what to write instead."""


@dataclass(frozen=True)
class Tables:
    """Tables under names the file chooses (`[modbus.devices.NAME]`); each name follows the id rule."""

    each: Table


@dataclass(frozen=True)
class Array:
    """An array of tables (`[[rules]]`)."""

    each: Table


Node = Key | Table | Tables | Array


def check(spec: Table, value: object, path: str = "", env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`value` checked against `spec`, with defaults filled in; ConfigError naming the first problem.

    `path` is where `value` sits ("" for a whole file: its keys are then sections). With `env`, a string
    value that is exactly `${NAME}` is read from env[NAME] (an unset one is an error naming the key).
    """
    return _table(spec, path, value, env)


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def fail(path: str, rule: str, note: str = "") -> ConfigError:
    """The one message shape: `path: rule (note)`."""
    return ConfigError(f"{path}: {rule} ({note})" if note else f"{path}: {rule}")


def _table(spec: Table, path: str, value: object, env: Mapping[str, str] | None) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        where = f" ([{path}])" if path and "[" not in path else ""
        raise fail(path, f"must be a table{where}, got {type(value).__name__}")
    keys = dict(spec.keys)
    when = ""
    by = keys.get(spec.by)
    if isinstance(by, Key):
        choice = _key(by, join(path, spec.by), value.get(spec.by, _ABSENT), env)
        keys |= spec.variants.get(choice, {})
        when = f' when {spec.by} = "{choice}"'
    for name in value:
        if name not in keys:
            raise _unknown(spec, path, str(name), [*keys], when)
    out: dict[str, Any] = {}
    for name, node in keys.items():
        where = join(path, name)
        given = value.get(name, _ABSENT)
        if isinstance(node, Key):
            required_when = when if name not in spec.keys else ""
            out[name] = _key(node, where, given, env, required_when)
        elif isinstance(node, Table):
            out[name] = _subtable(node, where, given, env)
        elif isinstance(node, Tables):
            out[name] = _tables(node, where, {} if given is _ABSENT else given, env)
        else:
            out[name] = _array(node, where, [] if given is _ABSENT else given, env)
    return out


def _subtable(spec: Table, path: str, value: object, env: Mapping[str, str] | None) -> dict[str, Any] | None:
    if value is not _ABSENT:
        return _table(spec, path, value, env)
    if spec.missing == "required":
        raise fail(path, f"required section [{path}] is missing", spec.note)
    return None if spec.missing == "none" else _table(spec, path, {}, env)


def _tables(spec: Tables, path: str, value: object, env: Mapping[str, str] | None) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping):
        raise fail(path, f"must be a table ([{path}.NAME] tables), got {type(value).__name__}")
    out = {}
    for name, body in value.items():
        where = f"{path}.{name}"
        valid_id(where, name)
        out[name] = _table(spec.each, where, body, env)
    return out


def _array(spec: Array, path: str, value: object, env: Mapping[str, str] | None) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise fail(path, f"must be an array of tables ([[{path}]]), got {type(value).__name__}")
    return [_table(spec.each, f"{path}[{i}]", body, env) for i, body in enumerate(value)]


def _unknown(spec: Table, path: str, name: str, known: list[str], when: str) -> ConfigError:
    """A key `spec` does not have now: retired, of another variant, or unknown (with the nearest known one)."""
    where = join(path, name)
    if name in spec.retired:
        return fail(where, spec.retired[name])
    if any(name in variant for variant in spec.variants.values()):
        return fail(where, f"not used{when} (remove it)")
    kind = "key" if path else "section"
    close = difflib.get_close_matches(name, known, n=1)
    guess = f"did you mean {close[0]}? " if close else ""
    return fail(where, f"unknown {kind} ({guess}known {kind}s: {', '.join(known)})")


def _key(spec: Key, path: str, value: object, env: Mapping[str, str] | None, when: str = "") -> Any:
    if value is _ABSENT:
        if spec.default is REQUIRED:
            one_of = f" (one of {', '.join(spec.choices)})" if spec.choices else ""
            raise fail(path, f"required{when}{one_of}", spec.note)
        return spec.default
    if spec.kind is str and env is not None and isinstance(value, str):
        value = _environment(path, value, env)
    if not _is(spec.kind, value):
        raise fail(path, f"must be {_TYPE_NAMES[spec.kind]}, got {type(value).__name__} {value!r}", spec.note)
    if isinstance(value, str):
        return _string(spec, path, value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(spec, path, value)
    return value


def _string(spec: Key, path: str, value: str) -> str:
    if spec.id:
        return valid_id(path, value)
    if not value and not spec.empty:
        raise fail(path, "must not be empty", spec.note)
    if spec.choices and value not in spec.choices:
        raise fail(path, f"must be one of {', '.join(spec.choices)}, got {value!r}", spec.note)
    return value


def _number(spec: Key, path: str, value: float) -> float:
    if not math.isfinite(value):
        raise fail(path, f"must be finite, got {value!r}", spec.note)
    if spec.positive and value <= 0:
        raise fail(path, f"must be positive, got {value!r}", spec.note)
    lo, hi = spec.lo, spec.hi
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        unit = f" {spec.unit}" if spec.unit else ""
        show = str if spec.kind is int else "{:g}".format
        if lo is not None and hi is not None:
            rule = f"must be {show(lo)}..{show(hi)}{unit}"
        elif lo is not None:
            rule = f"must be at least {show(lo)}{unit}"
        else:
            rule = f"must be at most {show(hi)}{unit}"
        raise fail(path, f"{rule}, got {value!r}", spec.note)
    return float(value) if spec.kind is float else value


def _is(kind: type, value: object) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _environment(path: str, value: str, env: Mapping[str, str]) -> str:
    match = _ENV.match(value)
    if match is None:
        return value
    name = match.group(1)
    if name not in env:
        raise fail(path, f"environment variable {name} is not set")
    return env[name]


def valid_id(path: str, value: object) -> str:
    """`value` if it follows the id rule, else ConfigError naming `path` (for ids in lists)."""
    try:
        return check_id(path, value)
    except ProtocolError as exc:
        raise fail(path, exc.problem) from None
