"""Qala hub: the asyncio CPython service that stores readings and drives actuators."""

__version__ = "0.1.0"
