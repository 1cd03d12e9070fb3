"""Pure request planning and decoding: which reads cover a profile, and what values a read carries.

`plan` merges a device's registers into as few reads as the protocol allows: one table per read, at most
125 registers (MAX_READ_REGISTERS), bridging at most `max_gap` unused registers between neighbours (some
devices refuse reads of unmapped addresses with exception 02, so the default bridges nothing). `decode`
turns a read's registers into values through protocols.registers; a register whose bits do not decode
(a NaN float: "not measured" on the Qala board) is reported apart, so one bad value never hides the rest.

Imports protocols and hub.modbus.profile only: no I/O, no asyncio, no pymodbus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocols import registers
from protocols.errors import ProtocolError
from protocols.modbus import MAX_READ_REGISTERS

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from hub.modbus.profile import Register


@dataclass(frozen=True)
class Read:
    """One read request: `count` registers of `table` from `address`, holding `registers`."""

    table: str
    address: int
    count: int
    registers: tuple[Register, ...]

    @property
    def end(self) -> int:
        return self.address + self.count


def plan(regs: Iterable[Register], max_gap: int = 0, max_count: int = MAX_READ_REGISTERS) -> tuple[Read, ...]:
    """Reads covering every register, in (table, address) order; merged greedily within the limits."""
    if not 1 <= max_count <= MAX_READ_REGISTERS:
        raise ValueError(f"max_count must be 1..{MAX_READ_REGISTERS}, got {max_count}")
    if max_gap < 0:
        raise ValueError(f"max_gap must not be negative, got {max_gap}")
    reads: list[Read] = []
    ordered = sorted(regs, key=lambda r: (r.table, r.address))
    group: list[Register] = []
    for reg in ordered:
        if group:
            first, last = group[0], group[-1]
            same_table = reg.table == first.table
            gap = reg.address - last.end
            if same_table and gap <= max_gap and reg.end - first.address <= max_count:
                group.append(reg)
                continue
            reads.append(_read(group))
        group = [reg]
    if group:
        reads.append(_read(group))
    return tuple(reads)


def _read(group: list[Register]) -> Read:
    start = group[0].address
    end = max(r.end for r in group)
    return Read(group[0].table, start, end - start, tuple(group))


def decode(read: Read, values: Sequence[int]) -> tuple[list[tuple[Register, float]], list[tuple[Register, str]]]:
    """(decoded values, undecodable registers with why) of one read's answer.

    Raises ProtocolError if the answer does not carry exactly `read.count` registers of 0..65535.
    """
    if len(values) != read.count:
        raise ProtocolError("registers", f"expected {read.count} registers, got {len(values)}")
    good: list[tuple[Register, float]] = []
    bad: list[tuple[Register, str]] = []
    for reg in read.registers:
        offset = reg.address - read.address
        raw = list(values[offset : offset + reg.size])
        try:
            good.append((reg, registers.decode(raw, reg.type, reg.order, reg.scale)))
        except ProtocolError as exc:
            if exc.field != "registers" or "non-finite" not in exc.problem:
                raise
            bad.append((reg, exc.problem))
    return good, bad
