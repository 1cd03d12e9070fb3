"""Simulators: boards, Modbus devices and the real servers Qala runs against in tests and the demo.

They import protocols/, the firmware they simulate, and of the hub only its public pieces (hub.PUBLIC, each
module's `__all__`); the hub imports them only for `qala demo` and `qala sim` (hub.demo_cli).
tests/test_imports.py checks both.
"""
