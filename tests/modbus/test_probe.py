"""Probe ranking: the right byte order and offset win for every order, on real simulated register images."""

from __future__ import annotations

import tomllib

import pytest

from hub.modbus import probe
from protocols import registers
from simulators.modbus_devices import SimulatedDevice
from tests.modbus.conftest import builtin


def _words(device: SimulatedDevice, cands: list[probe.Candidate], shift: int = 0) -> probe.Words:
    """What a read of each probe window returns from `device` whose map sits `shift` registers later."""
    words: probe.Words = {}
    for table, address, count in probe.windows(cands):
        lo, hi = address - shift, address - shift + count
        full_lo = max(lo, min(r.address for r in device.profile.registers if r.table == table))
        full_hi = min(hi, max(r.end for r in device.profile.registers if r.table == table))
        values = device.registers(table, full_lo, full_hi - full_lo)
        for i, v in enumerate(values):
            words[(table, full_lo + i + shift)] = v
    return words


@pytest.mark.parametrize("order", registers.ORDERS)
@pytest.mark.parametrize("name", ["sdm120", "sdm630", "onicon_system10"])
def test_probe_finds_the_order(name: str, order: str) -> None:
    device = SimulatedDevice(builtin(name), order=order, seed=3)
    cands = probe.candidates_from_profile(device.profile)
    best, second = probe.rank(cands, _words(device, cands))[:2]
    assert (best.order, best.offset) == (order, 0)
    assert best.score > second.score
    assert best.plausible >= len(cands) - 2


@pytest.mark.parametrize("shift", [-1, 1])
@pytest.mark.parametrize("order", ["ABCD", "CDAB"])
def test_probe_finds_an_off_by_one_map(order: str, shift: int) -> None:
    device = SimulatedDevice(builtin("sdm120"), order=order, seed=5)
    cands = probe.candidates_from_profile(device.profile)
    best = probe.rank(cands, _words(device, cands, shift=shift))[0]
    assert (best.order, best.offset) == (order, shift)


def test_nothing_plausible() -> None:
    cands = [probe.Candidate("f", 0, "frequency")]
    ranked = probe.rank(cands, {("input", 0): 0xFFFF, ("input", 1): 0xFFFF, ("input", 2): 0xFFFF})
    assert ranked[0].plausible == 0


def test_unreadable_words_score_nothing() -> None:
    cands = [probe.Candidate("v", 5, "voltage")]
    ranked = probe.rank(cands, {})
    assert all(i.score == 0 for i in ranked)
    assert all(v is None for i in ranked for _, v in i.values)


def test_windows_merge_and_respect_the_limit() -> None:
    cands = [probe.Candidate("a", 0, "voltage"), probe.Candidate("b", 2, "voltage"),
             probe.Candidate("c", 200, "voltage"), probe.Candidate("d", 10, "setpoint", table="holding")]
    assert probe.windows(cands) == [("holding", 9, 4), ("input", 0, 5), ("input", 199, 4)]
    many = [probe.Candidate(f"v{i}", 2 * i, "voltage") for i in range(100)]
    assert all(count <= 125 for _, _, count in probe.windows(many))


def test_snippet_is_a_loadable_profile_fragment() -> None:

    device = SimulatedDevice(builtin("sdm120"), order="BADC")
    cands = probe.candidates_from_profile(device.profile)
    best = probe.rank(cands, _words(device, cands, shift=1))[0]
    text = probe.snippet(best)
    doc = tomllib.loads(text)
    assert doc["profile"]["order"] == "BADC"
    assert doc["registers"]["voltage"]["address"] == 1
    assert doc["registers"]["frequency"]["address"] == 0x47
