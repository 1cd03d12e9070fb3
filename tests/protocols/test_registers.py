"""Modbus register primitives in every byte/word order. Runs under both interpreters."""

from expect import close, refused

from protocols import registers

MICROPYTHON_HEAP = "64k"

# 230.5 as IEEE-754 float32 is 0x43668000: bytes A=43 B=66 C=80 D=00
F32_WIRE = {
    "ABCD": [0x4366, 0x8000],
    "CDAB": [0x8000, 0x4366],
    "BADC": [0x6643, 0x0080],
    "DCBA": [0x0080, 0x6643],
}


def test_float32_each_order_known_vectors():
    for order in F32_WIRE:
        assert registers.encode(230.5, "f32", order) == F32_WIRE[order], order
        assert registers.decode(F32_WIRE[order], "f32", order) == 230.5, order


def test_integers_each_order():
    assert registers.decode([0xFFFF], "s16") == -1.0
    assert registers.decode([0xFFFF], "u16") == 65535.0
    assert registers.decode([0x1234], "u16", "DCBA") == 0x3412
    assert registers.decode([0x0001, 0x0000], "u32", "CDAB") == 1.0
    assert registers.decode([0x0001, 0x0000], "u32", "ABCD") == 65536.0
    assert registers.decode([0xFFFF, 0xFFFE], "s32") == -2.0
    for order in registers.ORDERS:
        for dtype, value in (("u16", 513), ("s16", -300), ("u32", 3000000000), ("s32", -123456789)):
            regs = registers.encode(value, dtype, order)
            assert len(regs) == registers.size(dtype)
            assert registers.decode(regs, dtype, order) == value, (dtype, order)


def test_scale():
    assert close(registers.decode([2301], "u16", scale=0.1), 230.1)
    assert registers.encode(230.1, "u16", scale=0.1) == [2301]
    assert close(registers.decode(registers.encode(-12.5, "s32", "CDAB", 0.01), "s32", "CDAB", 0.01), -12.5)


def test_bad_registers_refused():
    refused(registers.decode, [0x10000], "u16", field="registers[0]", contains="0..65535")
    refused(registers.decode, [-1], "u16", field="registers[0]")
    refused(registers.decode, [1], "f32", field="registers", contains="expected 2 registers")
    refused(registers.decode, "ab", "u16", field="registers")
    refused(registers.decode, [True], "u16", field="registers[0]")
    refused(registers.decode, [0x7FC0, 0x0000], "f32", field="registers", contains="non-finite")
    refused(registers.decode, [0x7F80, 0x0000], "f32", field="registers", contains="non-finite")
    refused(registers.decode, [1], "u8", field="type")
    refused(registers.decode, [1, 2], "u32", "ACBD", field="order")


def test_values_that_do_not_fit_refused():
    refused(registers.encode, 70000, "u16", field="value", contains="does not fit u16")
    refused(registers.encode, -1, "u32", field="value")
    refused(registers.encode, 1e39, "f32", field="value", contains="float32")
    refused(registers.encode, float("nan"), "f32", field="value", contains="finite")
    refused(registers.encode, "1", "u16", field="value")
    refused(registers.encode, 1, "u16", "ABCD", 0, field="scale")
