"""protocols/boardmap.py is the single source of the board's register map: the catalogue, the hub's
qala_board profile and the table in docs/modbus.md must agree with it (CPython only: reads files)."""

from __future__ import annotations

import re
from pathlib import Path

from hub.modbus import profile as profiles
from protocols import boardmap, catalogue

ROOT = Path(__file__).resolve().parents[2]


def test_map_follows_the_catalogue_order() -> None:
    assert list(boardmap.QUANTITIES) == list(catalogue.QUANTITIES)
    assert 2 * len(catalogue.QUANTITIES) == boardmap.INPUT_REGISTERS
    assert boardmap.ORDER == "ABCD"


def test_hub_profile_matches_the_map() -> None:
    prof = profiles.load(ROOT / "hub" / "profiles" / "qala_board.toml")
    inputs = [r for r in prof.registers if r.table == "input"]
    assert inputs
    for reg in inputs:
        assert (reg.type, reg.order) == ("f32", boardmap.ORDER), reg.name
        assert reg.address == boardmap.input_address(reg.quantity), reg.name
    holding = [r for r in prof.registers if r.table == "holding"]
    assert [r.address for r in holding] == [boardmap.setpoint_address(i) for i in range(len(holding))]


def test_docs_table_matches_the_map() -> None:
    text = (ROOT / "docs" / "modbus.md").read_text()
    section = text.split("## The Qala board's register map", 1)[1]
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \|", section, re.MULTILINE)
    assert [(int(a), q) for a, q in rows] == [(boardmap.input_address(q), q) for q in boardmap.QUANTITIES]
