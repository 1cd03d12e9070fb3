"""Simulated twins of the sensors and meters the firmware drives, emulated at their bus.

Each module holds a `Twin(faults, clock)`: the device as seen on its wire (registers, frames, CRCs, the
timing that matters), with plausible changing values and fault switches. They run inside the unix-port
firmware process (behind firmware/hw/buses.py) and in CPython tests, so they are MicroPython-safe: no typing,
dataclasses or f-strings with conversions. Shared helpers live in `base`.
"""
