"""Device profiles: TOML files describing a device's registers, loaded into frozen dataclasses.

A profile names each register once (`[registers.NAME]`) with its protocol address (0-based, as on the
wire: Eastron's "30001" is input register 0), its table (`input` FC 4 or `holding` FC 3), type, byte/word
order, scale, catalogue quantity and `sensor` tag; `[profile]` holds defaults for those keys. Registers may
be `writable` (holding only) with `min`/`max` limits the hub enforces before writing. docs/modbus.md is the
guide. Every problem raises ProfileError naming the file and the key path (`sdm120.toml:
registers.voltage.order: must be one of ...`).

Owns the profile layout (DOCUMENT, declared through hub.sections as hub.toml's sections are) and the built-in
profiles folder (hub/profiles). One of the hub's public pieces (hub.PUBLIC): `__all__` is what it promises,
to the poller and to simulators/ alike. Imports protocols (catalogue, registers), hub.errors and hub.sections
only: no I/O besides reading the file, no asyncio, no pymodbus.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub import sections
from hub.errors import ConfigError
from hub.sections import Key, Table, Tables
from protocols import catalogue, registers

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [  # public (hub.PUBLIC): simulators/ read profiles through these
    "BUILTIN_DIR",
    "DEFAULT_SENSOR",
    "HOLDING",
    "INPUT",
    "TABLES",
    "Profile",
    "ProfileError",
    "Register",
    "builtin_names",
    "load",
    "parse",
    "resolve",
]

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "profiles"

INPUT = "input"
HOLDING = "holding"
TABLES = (INPUT, HOLDING)
DEFAULT_SENSOR = "meter"

HEAD = Table({
    "name": Key(str, id=True),
    "manufacturer": Key(str, "", empty=True),
    "model": Key(str, "", empty=True),
    "source": Key(str, "", empty=True),
    "description": Key(str, "", empty=True),
    "table": Key(str, INPUT, choices=TABLES),
    "type": Key(str, "f32", choices=tuple(registers.TYPES)),
    "order": Key(str, "ABCD", choices=registers.ORDERS),
    "sensor": Key(str, DEFAULT_SENSOR, id=True),
    "max_gap": Key(int, 0, 0, 120),
}, missing="required")
"""[profile]: the device, and the defaults of its registers' table, type, order and sensor."""
REGISTER = Table({
    "address": Key(int, lo=0, hi=0xFFFF, note="0-based, as on the wire: Eastron's 30001 is 0"),
    "quantity": Key(str),
    "table": Key(str, None, choices=TABLES),
    "type": Key(str, None, choices=tuple(registers.TYPES)),
    "order": Key(str, None, choices=registers.ORDERS),
    "scale": Key(float, 1.0),
    "sensor": Key(str, None, id=True),
    "writable": Key(bool, default=False),
    "min": Key(float, None),
    "max": Key(float, None),
    "description": Key(str, "", empty=True),
})
"""[registers.NAME]: one value; table, type, order and sensor default to [profile]'s."""
DOCUMENT = Table({"profile": HEAD, "registers": Tables(REGISTER)})
"""A profile file, declared through hub.sections as hub.toml is."""


class ProfileError(ValueError):
    """A profile cannot be used; the message names the file, the key path and the rule."""


@dataclass(frozen=True)
class Register:
    name: str
    address: int
    quantity: str
    table: str = INPUT
    type: str = "f32"
    order: str = "ABCD"
    scale: float = 1.0
    sensor: str = DEFAULT_SENSOR
    writable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""

    @property
    def size(self) -> int:
        return registers.size(self.type)

    @property
    def end(self) -> int:
        """One past the last register this value occupies."""
        return self.address + self.size


@dataclass(frozen=True)
class Profile:
    name: str
    registers: tuple[Register, ...]
    manufacturer: str = ""
    model: str = ""
    source: str = ""
    description: str = ""
    max_gap: int = 0
    """Unused registers a single read may bridge to merge two neighbours (0: only adjacent ones)."""

    def register(self, name: str) -> Register:
        for reg in self.registers:
            if reg.name == name:
                return reg
        raise KeyError(f"profile {self.name} has no register {name!r}")


def parse(document: Mapping[str, Any], origin: str) -> Profile:
    """Validate a parsed profile; `origin` (usually the file name) starts every error message."""
    try:
        return _parse(sections.check(DOCUMENT, document))
    except ConfigError as exc:
        raise ProfileError(f"{origin}: {exc}") from None


def load(path: Path) -> Profile:
    """Read and validate one profile file."""
    try:
        with path.open("rb") as fh:
            document = tomllib.load(fh)
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path.name}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path.name}: not a TOML file: it holds bytes that are not UTF-8 text") from None
    return parse(document, path.name)


def resolve(ref: str, base: Path | None = None) -> Path:
    """The file a device's `profile` key names: a built-in name (`sdm630`) or a path to a .toml file."""
    if ref.endswith(".toml") or "/" in ref:
        path = Path(ref)
        if not path.is_absolute() and base is not None:
            path = base / path
        return path
    return BUILTIN_DIR / f"{ref}.toml"


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def _parse(values: Mapping[str, Any]) -> Profile:
    head = values["profile"]
    if not values["registers"]:
        raise sections.fail("registers", "must define at least one register ([registers.NAME] tables)")
    regs = tuple(_register(f"registers.{name}", name, body, head) for name, body in values["registers"].items())
    _check_layout(regs)
    texts = {k: head[k] for k in ("manufacturer", "model", "source", "description")}
    return Profile(name=head["name"], registers=regs, max_gap=head["max_gap"], **texts)


def _register(path: str, name: str, body: Mapping[str, Any], head: Mapping[str, Any]) -> Register:
    v = {k: head[k] if body[k] is None and k in head else body[k] for k in body}
    if v["quantity"] not in catalogue.QUANTITIES:
        raise sections.fail(f"{path}.quantity",
                            f"unknown quantity {v['quantity']!r} (see docs/protocol.md catalogue)")
    if v["address"] + registers.size(v["type"]) > 0x10000:
        raise sections.fail(f"{path}.address", f"a {v['type']} at {v['address']} runs past register 65535")
    if v["writable"] and v["table"] != HOLDING:
        raise sections.fail(f"{path}.writable", 'only holding registers can be written (table = "holding")')
    if v["scale"] == 0:
        raise sections.fail(f"{path}.scale", "must not be zero")
    for key in ("min", "max"):
        if v[key] is not None and not v["writable"]:
            raise sections.fail(f"{path}.{key}", "limits apply to writable registers only (writable = true)")
    lo, hi = v["min"], v["max"]
    if lo is not None and hi is not None and lo > hi:
        raise sections.fail(f"{path}.max", f"must not be below min ({hi:g} < {lo:g})")
    return Register(
        name=name,
        address=v["address"],
        quantity=v["quantity"],
        table=v["table"],
        type=v["type"],
        order=v["order"],
        scale=v["scale"],
        sensor=v["sensor"],
        writable=v["writable"],
        minimum=lo,
        maximum=hi,
        description=v["description"],
    )


def _check_layout(regs: tuple[Register, ...]) -> None:
    """No two registers overlap in a table, and no two share (sensor, quantity): they would be one series."""
    seen: dict[tuple[str, str], str] = {}
    for reg in regs:
        key = (reg.sensor, reg.quantity)
        if key in seen:
            raise sections.fail(
                f"registers.{reg.name}",
                f"same sensor {reg.sensor!r} and quantity {reg.quantity!r} as registers.{seen[key]} "
                "(give one a different sensor tag)",
            )
        seen[key] = reg.name
    for table in TABLES:
        ordered = sorted((r for r in regs if r.table == table), key=lambda r: r.address)
        for prev, nxt in itertools.pairwise(ordered):
            if nxt.address < prev.end:
                raise sections.fail(
                    f"registers.{nxt.name}.address",
                    f"{table} register {nxt.address} overlaps registers.{prev.name} ({prev.address}..{prev.end - 1})",
                )
