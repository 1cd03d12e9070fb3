"""Sensor drivers, one module each, listed in firmware.sensors.DRIVERS and imported on demand."""
