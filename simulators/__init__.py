"""Simulators: boards, Modbus devices and the real servers Qala runs against in tests and the demo."""
