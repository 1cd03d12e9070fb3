"""Smoke test of the dual-module path: these functions run under CPython and again inside micropython.

Keeps the plugin (tests/_plugins/micropython.py) and tests/mpy_runner.py exercised by every test run.
Plain asserts and the MicroPython-compatible subset only: no pytest import, no fixtures.
"""

import asyncio
import gc
import json
import sys

MICROPYTHON_HEAP = "64k"


def test_json_round_trips() -> None:
    reading = {"device": "b-01", "quantity": "temperature", "value": 21.5, "seq": 7, "ok": True}
    assert json.loads(json.dumps(reading)) == reading


def test_gc_reclaims_garbage() -> None:
    gc.collect()
    if not hasattr(gc, "mem_free"):  # CPython: nothing to measure, collecting must still work
        return
    before = gc.mem_free()
    garbage = [bytearray(256) for _ in range(16)]
    assert gc.mem_free() < before
    del garbage
    gc.collect()
    assert gc.mem_free() >= before - 256


def test_interpreter_is_known() -> None:
    assert sys.implementation.name in ("cpython", "micropython")


async def _double(value: int) -> int:
    await asyncio.sleep(0)
    return 2 * value


async def test_asyncio_runs_coroutines() -> None:
    results = await asyncio.gather(_double(1), _double(2))
    assert list(results) == [2, 4]
