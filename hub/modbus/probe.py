"""`qala modbus probe`: find the byte/word order and address offset of a device whose map is uncertain.

Float byte order and off-by-one addresses are the most common Modbus support question (telegraf#7518,
#8855; Telegraf's README tells users to try every order by hand). The probe reads each candidate register
with one register of margin on both sides, decodes it in every order (ABCD, CDAB, BADC, DCBA) at address
offsets 0, -1 and +1, and ranks the twelve interpretations by how many values fall in the catalogue's
plausible range for their quantity. A value counts fully when it is plausible and not vanishingly small
(a byte-swapped float is often a denormal like 1e-39, which is "in range" for most quantities), a little
when it is exactly zero (unmapped registers read zero in every order), and not at all otherwise. A
two-register value with one all-zero register counts three quarters: a word-swapped float read one
register late (ABCD at N+1 over CDAB data at N) takes its high word plus the zero after it and looks like a
rounded copy of the real value, so the interpretation whose values use both words wins. Ties go to offset
0 and then to ABCD, the Modbus convention. `snippet` prints the profile lines for the winner.

`rank` and `snippet` are pure; `read_candidates` does the I/O through a hub.modbus.bus Transport.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.modbus.bus import DeviceError, Transport
from hub.modbus.profile import INPUT, Profile
from protocols import catalogue, registers
from protocols.errors import ProtocolError
from protocols.modbus import MAX_READ_REGISTERS

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

OFFSETS = (0, -1, 1)
FULL = 1.0
HALF_ZERO = 0.75
ZERO = 0.25

Words = dict[tuple[str, int], int]
"""(table, address) -> register value, for the registers that could be read."""


@dataclass(frozen=True)
class Candidate:
    """A register we believe holds `quantity` at `address` (the map's claim, to be checked)."""

    name: str
    address: int
    quantity: str
    type: str = "f32"
    table: str = INPUT
    scale: float = 1.0

    @property
    def size(self) -> int:
        return registers.size(self.type)


@dataclass(frozen=True)
class Interpretation:
    order: str
    offset: int
    score: float
    plausible: int
    values: tuple[tuple[Candidate, float | None], ...]


def candidates_from_profile(profile: Profile) -> list[Candidate]:
    return [Candidate(r.name, r.address, r.quantity, r.type, r.table, r.scale) for r in profile.registers]


def windows(cands: Iterable[Candidate]) -> list[tuple[str, int, int]]:
    """(table, address, count) reads covering every candidate with one register of margin on each side."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for c in cands:
        spans.setdefault(c.table, []).append((max(0, c.address - 1), min(0x10000, c.address + c.size + 1)))
    out: list[tuple[str, int, int]] = []
    for table, items in sorted(spans.items()):
        items.sort()
        start, end = items[0]
        for lo, hi in items[1:]:
            if lo <= end and hi - start <= MAX_READ_REGISTERS:
                end = max(end, hi)
                continue
            out.append((table, start, end - start))
            start, end = lo, hi
        out.append((table, start, end - start))
    return out


def _score(cand: Candidate, words: Mapping[tuple[str, int], int], order: str, offset: int) -> float:
    value = decode_at(cand, words, order, offset)
    if value is None:
        return 0.0
    lo, hi = catalogue.info(cand.quantity)[2:4]
    if not lo <= value <= hi:
        return 0.0
    if value == 0:
        return ZERO
    if abs(value) < 1e-6 * max(abs(lo), abs(hi), 1.0):
        return 0.0
    raw = [words[(cand.table, cand.address + offset + i)] for i in range(cand.size)]
    return HALF_ZERO if cand.size > 1 and 0 in raw else FULL


def decode_at(cand: Candidate, words: Mapping[tuple[str, int], int], order: str, offset: int) -> float | None:
    """The candidate's value read `offset` registers away in `order`, or None if unreadable/undecodable."""
    regs = [words.get((cand.table, cand.address + offset + i)) for i in range(cand.size)]
    known = [r for r in regs if r is not None]
    if len(known) != cand.size:
        return None
    try:
        value = registers.decode(known, cand.type, order, cand.scale)
    except ProtocolError:
        return None
    return value if math.isfinite(value) else None


def rank(cands: list[Candidate], words: Mapping[tuple[str, int], int]) -> list[Interpretation]:
    """Every (order, offset) interpretation, best first."""
    out = []
    for order in registers.ORDERS:
        for offset in OFFSETS:
            values = tuple((c, decode_at(c, words, order, offset)) for c in cands)
            scores = [_score(c, words, order, offset) for c in cands]
            plausible = sum(1 for s in scores if s >= HALF_ZERO)
            out.append(Interpretation(order, offset, sum(scores), plausible, values))
    out.sort(key=lambda i: (-i.score, abs(i.offset), registers.ORDERS.index(i.order), i.offset))
    return out


async def read_candidates(transport: Transport, unit: int, cands: list[Candidate]) -> Words:
    """Read the candidates' windows; a window the device refuses is read again without its margins."""
    words: Words = {}
    for table, address, count in windows(cands):
        try:
            values = await transport.read(unit, table, address, count)
        except DeviceError:
            for c in cands:
                if c.table == table and address <= c.address < address + count:
                    try:
                        exact = await transport.read(unit, table, c.address, c.size)
                    except DeviceError:
                        continue
                    words.update({(table, c.address + i): v for i, v in enumerate(exact)})
            continue
        words.update({(table, address + i): v for i, v in enumerate(values)})
    return words


def snippet(best: Interpretation) -> str:
    """Profile lines (TOML) for the winning interpretation."""
    lines = [
        (f"# qala modbus probe: order {best.order}, address offset {best.offset:+d}, "
         f"{best.plausible}/{len(best.values)} values plausible"),
        "[profile]",
        f'order = "{best.order}"',
    ]
    for cand, value in best.values:
        shown = "unreadable" if value is None else f"{value:.6g}"
        lines += [
            "",
            f"[registers.{cand.name}]",
            f"address = {cand.address + best.offset}  # read {shown} {catalogue.unit(cand.quantity)}".rstrip(),
            f'quantity = "{cand.quantity}"',
            f'type = "{cand.type}"',
            f'table = "{cand.table}"',
        ]
        if cand.scale != 1:
            lines.append(f"scale = {cand.scale:g}")
    return "\n".join(lines) + "\n"


def describe(interp: Interpretation) -> str:
    shown = ", ".join(f"{c.name}={'?' if v is None else f'{v:.5g}'}" for c, v in interp.values[:6])
    more = ", ..." if len(interp.values) > 6 else ""
    return f"{interp.order} offset {interp.offset:+d}: score {interp.score:g} ({shown}{more})"
