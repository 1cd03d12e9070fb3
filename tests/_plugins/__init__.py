"""Pytest plugins for Qala's suite, registered by tests/conftest.py: real servers and the MicroPython runner."""
