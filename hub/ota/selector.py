"""Which boards a roll-out goes to: the selector language of `qala fw rollout VERSION --to SELECTOR`.

    all                  every provisioned board
    district:NAME        boards placed in that district (`qala provision place`)
    prefix:TEXT          boards whose id starts with TEXT (a kind of board, by a naming rule: aq-, wm-)
    version:V            boards whose last birth announced firmware V
    devices:a,b,c        those boards (each must be provisioned)

Terms are joined with commas: terms of one kind widen the choice (`district:north,district:south`: either),
terms of different kinds narrow it (`district:north,prefix:aq-`: air-quality boards in the north). After
`devices:` the comma-separated names are that term's list. `select` returns the boards in name order, or
raises SelectorError naming the term at fault.

Imports the standard library and protocols.topics (the id rule); knows nothing of where the facts come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocols.errors import ProtocolError
from protocols.topics import check_id

if TYPE_CHECKING:
    from collections.abc import Mapping

KINDS = ("all", "district", "prefix", "version", "devices")


class SelectorError(ValueError):
    """A selector that cannot be read or names an unknown board; the message says which term."""


@dataclass(frozen=True)
class Facts:
    """What a selector may ask of a board."""

    district: str | None = None
    fw: str | None = None


def parse(selector: str) -> dict[str, list[str]]:
    """kind -> values of a selector (`all` -> [""]); SelectorError for an empty or unknown term."""
    terms: dict[str, list[str]] = {}
    last = ""
    if not isinstance(selector, str) or not selector.strip():
        raise SelectorError("selector: empty (e.g. all, district:north, prefix:aq-, version:0.1.0, devices:a,b)")
    for raw in selector.split(","):
        part = raw.strip()
        kind, sep, value = part.partition(":")
        if not sep and part != "all" and last == "devices":
            kind, value = "devices", part
        elif part == "all":
            kind, value = "all", ""
        elif kind not in KINDS or kind == "all":
            raise SelectorError(f"selector term {part!r}: unknown (known: all, district:NAME, prefix:TEXT, "
                                "version:V, devices:A,B,C)")
        if kind != "all" and not value:
            raise SelectorError(f"selector term {part!r}: {kind}: needs a value")
        if kind in ("district", "devices"):
            try:
                check_id(kind, value)
            except ProtocolError as exc:
                raise SelectorError(f"selector term {part!r}: {exc.problem}") from None
        terms.setdefault(kind, []).append(value)
        last = kind
    return terms


def select(selector: str, boards: Mapping[str, Facts]) -> list[str]:
    """The boards `selector` names among `boards` (the provisioned ones), in name order."""
    terms = parse(selector)
    for name in terms.get("devices", []):
        if name not in boards:
            raise SelectorError(f"selector: devices: {name!r} is not a provisioned board")
    chosen = []
    for name in sorted(boards):
        facts = boards[name]
        if "district" in terms and facts.district not in terms["district"]:
            continue
        if "prefix" in terms and not any(name.startswith(p) for p in terms["prefix"]):
            continue
        if "version" in terms and facts.fw not in terms["version"]:
            continue
        if "devices" in terms and name not in terms["devices"]:
            continue
        chosen.append(name)
    return chosen
