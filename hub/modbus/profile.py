"""Device profiles: TOML files describing a device's registers, loaded into frozen dataclasses.

A profile names each register once (`[registers.NAME]`) with its protocol address (0-based, as on the
wire: Eastron's "30001" is input register 0), its table (`input` FC 4 or `holding` FC 3), type, byte/word
order, scale, catalogue quantity and `sensor` tag; `[profile]` holds defaults for those keys. Registers may
be `writable` (holding only) with `min`/`max` limits the hub enforces before writing. docs/modbus.md is the
guide. Every problem raises ProfileError naming the file and the key path (`sdm120.toml:
registers.voltage.order: must be one of ...`).

Owns the profile schema and the built-in profiles folder (hub/profiles). Imports protocols (catalogue,
registers, topics) and hub.modbus.schema only: no I/O besides reading the file, no asyncio, no pymodbus.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.modbus import schema
from protocols import catalogue, registers
from protocols.errors import ProtocolError
from protocols.topics import check_id

if TYPE_CHECKING:
    from collections.abc import Mapping

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "profiles"

INPUT = "input"
HOLDING = "holding"
TABLES = (INPUT, HOLDING)
DEFAULT_SENSOR = "meter"

_PROFILE_KEYS = ("name", "manufacturer", "model", "source", "description", "table", "type", "order", "sensor",
                 "max_gap")
_REGISTER_KEYS = ("address", "quantity", "table", "type", "order", "scale", "sensor", "writable", "min", "max",
                  "description")


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
        return _parse(document)
    except schema.SchemaError as exc:
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


def _parse(document: Mapping[str, Any]) -> Profile:
    root = schema.table("", document)
    schema.known_keys("", root, ("profile", "registers"), ())
    head = schema.table("profile", root["profile"])
    schema.known_keys("profile", head, ("name",), _PROFILE_KEYS[1:])
    name = _id("profile.name", head["name"])
    texts = {k: _text(f"profile.{k}", head.get(k, "")) for k in ("manufacturer", "model", "source", "description")}
    defaults = {
        "table": schema.string("profile.table", head.get("table", INPUT), choices=TABLES),
        "type": schema.string("profile.type", head.get("type", "f32"), choices=tuple(registers.TYPES)),
        "order": schema.string("profile.order", head.get("order", "ABCD"), choices=registers.ORDERS),
        "sensor": _id("profile.sensor", head.get("sensor", DEFAULT_SENSOR)),
    }
    max_gap = schema.integer("profile.max_gap", head.get("max_gap", 0), 0, 120)
    regs_table = schema.table("registers", root["registers"])
    if not regs_table:
        raise schema.SchemaError("registers", "must define at least one register")
    regs = tuple(_register(f"registers.{key}", key, value, defaults) for key, value in regs_table.items())
    _check_layout(regs)
    return Profile(name=name, registers=regs, max_gap=max_gap, **texts)


def _register(path: str, name: str, value: object, defaults: Mapping[str, str]) -> Register:
    _id(path, name)
    body = schema.table(path, value)
    schema.known_keys(path, body, ("address", "quantity"), _REGISTER_KEYS[2:])
    quantity = schema.string(f"{path}.quantity", body["quantity"])
    if quantity not in catalogue.QUANTITIES:
        raise schema.SchemaError(f"{path}.quantity", f"unknown quantity {quantity!r} (see docs/protocol.md catalogue)")
    dtype = schema.string(f"{path}.type", body.get("type", defaults["type"]), choices=tuple(registers.TYPES))
    address = schema.integer(f"{path}.address", body["address"], 0, 0xFFFF)
    if address + registers.size(dtype) > 0x10000:
        raise schema.SchemaError(f"{path}.address", f"a {dtype} at {address} runs past register 65535")
    table = schema.string(f"{path}.table", body.get("table", defaults["table"]), choices=TABLES)
    writable = schema.boolean(f"{path}.writable", body.get("writable", False))
    if writable and table != HOLDING:
        raise schema.SchemaError(f"{path}.writable", 'only holding registers can be written (table = "holding")')
    scale = schema.number(f"{path}.scale", body.get("scale", 1.0))
    if scale == 0:
        raise schema.SchemaError(f"{path}.scale", "must not be zero")
    limits: dict[str, float | None] = {}
    for key in ("min", "max"):
        if key in body:
            if not writable:
                raise schema.SchemaError(f"{path}.{key}", "limits apply to writable registers only (writable = true)")
            limits[key] = schema.number(f"{path}.{key}", body[key])
        else:
            limits[key] = None
    lo, hi = limits["min"], limits["max"]
    if lo is not None and hi is not None and lo > hi:
        raise schema.SchemaError(f"{path}.max", f"must not be below min ({hi:g} < {lo:g})")
    return Register(
        name=name,
        address=address,
        quantity=quantity,
        table=table,
        type=dtype,
        order=schema.string(f"{path}.order", body.get("order", defaults["order"]), choices=registers.ORDERS),
        scale=scale,
        sensor=_id(f"{path}.sensor", body.get("sensor", defaults["sensor"])),
        writable=writable,
        minimum=lo,
        maximum=hi,
        description=_text(f"{path}.description", body.get("description", "")),
    )


def _check_layout(regs: tuple[Register, ...]) -> None:
    """No two registers overlap in a table, and no two share (sensor, quantity): they would be one series."""
    seen: dict[tuple[str, str], str] = {}
    for reg in regs:
        key = (reg.sensor, reg.quantity)
        if key in seen:
            raise schema.SchemaError(
                f"registers.{reg.name}",
                f"same sensor {reg.sensor!r} and quantity {reg.quantity!r} as registers.{seen[key]} "
                "(give one a different sensor tag)",
            )
        seen[key] = reg.name
    for table in TABLES:
        ordered = sorted((r for r in regs if r.table == table), key=lambda r: r.address)
        for prev, nxt in itertools.pairwise(ordered):
            if nxt.address < prev.end:
                raise schema.SchemaError(
                    f"registers.{nxt.name}.address",
                    f"{table} register {nxt.address} overlaps registers.{prev.name} ({prev.address}..{prev.end - 1})",
                )


def _id(path: str, value: object) -> str:
    try:
        return check_id(path, value)
    except ProtocolError as exc:
        raise schema.SchemaError(path, exc.problem) from None


def _text(path: str, value: object) -> str:
    if not isinstance(value, str):
        raise schema.SchemaError(path, f"must be a string, got {type(value).__name__} {value!r}")
    return value
