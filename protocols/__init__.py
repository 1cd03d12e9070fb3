"""Qala's wire contract: topics, payloads, the measurement catalogue, Modbus register primitives, AQI.

Sans-I/O and importable by CPython 3.11+ and MicroPython 1.22+ alike: this package never opens a socket,
a file or a clock, never imports asyncio, typing or dataclasses, and annotates with builtin types only.
Import the submodules directly (`from protocols import topics`); this file stays empty on purpose so that a
board pays only for what it imports.
"""
