"""Fuzz the board's Modbus request handler (firmware/mbregs.py) under CPython with hypothesis: random and
mutated request PDUs get a well-formed answer (a normal response, or an exception response with code 01, 02
or 03) or None for an empty PDU or a function code of 128..255 (exception responses, never requests), never an
exception, and a refused write never drives an actuator."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.mbregs import Registers, handle
from protocols import boardmap, modbus

ACTS = {"fan1": {"kind": "pwm", "min": 0, "max": 100, "failsafe": 20},
        "pump": {"kind": "relay", "min": 0, "max": 1, "failsafe": 0}}


def _regs(applied: list[tuple[str, float]]) -> Registers:
    def check(name: str, value: float) -> str | None:
        spec: dict[str, Any] = ACTS[name]
        return None if spec["min"] <= value <= spec["max"] else "outside"

    regs = Registers(ACTS, check, lambda n, v: applied.append((n, v)))
    regs.set_input("co2", 420.0)
    return regs


VALID = [
    modbus.read_request(4, 0, boardmap.INPUT_REGISTERS),
    modbus.read_request(3, 0, 4),
    modbus.read_request(1, 0, 2),
    modbus.write_registers_request(0, [0x425C, 0]),
    modbus.write_coil_request(1, True),
    modbus.write_coils_request(1, [1]),
]


def _check(pdu: bytes) -> None:
    applied: list[tuple[str, float]] = []
    resp = handle(pdu, _regs(applied))
    if not pdu or pdu[0] & 0x80:  # empty, or an exception response's code (128..255): never a request
        assert resp is None
        assert applied == []
        return
    assert isinstance(resp, bytes)
    assert resp
    if resp[0] & 0x80:
        assert resp[0] == (pdu[0] | 0x80) & 0xFF
        assert len(resp) == 2
        assert resp[1] in (modbus.ILLEGAL_FUNCTION, modbus.ILLEGAL_DATA_ADDRESS, modbus.ILLEGAL_DATA_VALUE)
        assert applied == []
        return
    req = modbus.decode_request(pdu)  # a normal answer only to a well-formed request
    values = modbus.decode_response(resp, req.function, req.count)
    if req.function <= 4:
        assert len(values) == req.count


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=260))
def test_random_pdus(pdu: bytes) -> None:
    _check(pdu)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=4),
       st.integers(0, 8))
def test_mutated_pdus(pdu: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(pdu)
    for pos, byte in flips:
        if pos < len(data):
            data[pos] = byte
    _check(bytes(data[: len(data) - cut] if cut else data))


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(1, 125), st.sampled_from([1, 2, 3, 4]))
def test_any_read_address_and_quantity(address: int, count: int, function: int) -> None:
    pdu = bytes((function, address >> 8, address & 0xFF, count >> 8, count & 0xFF))
    _check(pdu)
