"""Read planning (merging under the 125-register limit, gaps, tables) and decoding of a read's registers."""

from __future__ import annotations

import pytest

from hub.modbus import plan
from protocols import registers
from protocols.errors import ProtocolError
from tests.modbus.conftest import builtin, make_profile


def _regs(*specs: tuple[str, int, str]) -> list:  # (name, address, table)
    prof = make_profile({n: {"address": a, "quantity": "setpoint" if t == "holding" else "voltage", "table": t,
                             "sensor": n} for n, a, t in specs})
    return list(prof.registers)


def test_adjacent_registers_merge_into_one_read() -> None:
    reads = plan.plan(_regs(("a", 0, "input"), ("b", 2, "input"), ("c", 4, "input")))
    assert [(r.table, r.address, r.count, [x.name for x in r.registers]) for r in reads] == [
        ("input", 0, 6, ["a", "b", "c"])]


def test_gaps_split_unless_bridged() -> None:
    regs = _regs(("a", 0, "input"), ("b", 10, "input"))
    assert [(r.address, r.count) for r in plan.plan(regs)] == [(0, 2), (10, 2)]
    assert [(r.address, r.count) for r in plan.plan(regs, max_gap=7)] == [(0, 2), (10, 2)]
    assert [(r.address, r.count) for r in plan.plan(regs, max_gap=8)] == [(0, 12)]


def test_tables_never_merge() -> None:
    reads = plan.plan(_regs(("a", 0, "input"), ("b", 2, "holding")), max_gap=100)
    assert [(r.table, r.address) for r in reads] == [("holding", 2), ("input", 0)]


def test_125_register_limit() -> None:
    # 70 float32 values back to back: 140 registers, so two reads, the first as long as allowed
    prof = make_profile({f"v{i}": {"address": 2 * i, "quantity": "voltage", "sensor": f"s{i}"} for i in range(70)})
    reads = plan.plan(prof.registers)
    assert [(r.address, r.count) for r in reads] == [(0, 124), (124, 16)]
    assert all(r.count <= 125 for r in reads)
    assert sum(len(r.registers) for r in reads) == 70
    # a value is never split across reads
    assert all(x.end <= r.end for r in reads for x in r.registers)


def test_max_count_and_bad_arguments() -> None:
    regs = _regs(("a", 0, "input"), ("b", 2, "input"))
    assert len(plan.plan(regs, max_count=3)) == 2
    with pytest.raises(ValueError, match="max_count"):
        plan.plan(regs, max_count=126)
    with pytest.raises(ValueError, match="max_gap"):
        plan.plan(regs, max_gap=-1)


@pytest.mark.parametrize(("name", "expected"), [("sdm120", 1), ("sdm630", 1), ("onicon_system10", 1),
                                                 ("qala_board", 2)])
def test_shipped_profiles_need_few_reads(name: str, expected: int) -> None:
    prof = builtin(name)
    assert len(plan.plan(prof.registers, prof.max_gap)) == expected


def test_decode_values_scale_and_order() -> None:
    prof = make_profile({
        "v": {"address": 0, "quantity": "voltage", "order": "CDAB"},
        "i": {"address": 2, "quantity": "current", "type": "u16", "scale": 0.01},
        "p": {"address": 3, "quantity": "power_active", "type": "s32", "order": "DCBA"},
    })
    (read,) = plan.plan(prof.registers)
    words = [*registers.encode(230.5, "f32", "CDAB"), 523, *registers.encode(-1500, "s32", "DCBA")]
    good, bad = plan.decode(read, words)
    assert [(r.name, v) for r, v in good] == [("v", 230.5), ("i", pytest.approx(5.23)), ("p", -1500.0)]
    assert bad == []


def test_decode_nan_is_reported_apart() -> None:
    prof = make_profile({"v": {"address": 0, "quantity": "voltage"}, "i": {"address": 2, "quantity": "current"}})
    (read,) = plan.plan(prof.registers)
    good, bad = plan.decode(read, [0x7FC0, 0x0000, *registers.encode(5.0, "f32")])
    assert [(r.name, v) for r, v in good] == [("i", 5.0)]
    assert [r.name for r, _ in bad] == ["v"]


def test_decode_refuses_a_short_or_bad_answer() -> None:
    prof = make_profile({"v": {"address": 0, "quantity": "voltage"}})
    (read,) = plan.plan(prof.registers)
    with pytest.raises(ProtocolError, match="expected 2 registers, got 1"):
        plan.decode(read, [1])
    with pytest.raises(ProtocolError):
        plan.decode(read, [70000, 1])
