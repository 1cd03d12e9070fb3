"""Reconnect delays (firmware/backoff.py): exponential, capped, jittered within [d/2, d]."""

from firmware.backoff import delay_ms

MICROPYTHON_HEAP = "64k"


def test_first_retry_is_between_half_and_full_base():
    assert delay_ms(0, 0) == 250
    assert delay_ms(0, 0xFFFF) == 500


def test_doubles_then_caps():
    assert [delay_ms(n, 0xFFFF) for n in range(5)] == [500, 1000, 2000, 4000, 8000]
    assert delay_ms(30, 0xFFFF) == 60000
    assert delay_ms(1000, 0) == 30000


def test_jitter_spreads_boards_apart():
    delays = {delay_ms(6, r) for r in range(0, 0x10000, 0x1000)}
    assert len(delays) == 16
    assert min(delays) >= 16000
    assert max(delays) <= 32000
