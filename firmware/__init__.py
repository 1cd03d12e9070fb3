"""Qala board firmware: the MicroPython runtime that goes onto a board (see docs/firmware.md).

Modules, each owning one concern:
- main.py / boot.py: entry points on a board and on the unix port
- app: the board loop (sampling, telemetry, birth, health, safe mode)
- config: reading and validating the JSON board config
- mqtt: the asyncio MQTT client around protocols.mqtt_codec (MQTT 3.1.1 packets as pure functions, shared
  with the hub)
- backoff: reconnect delays with jitter; buffer: the offline buffer (RAM, then flash)
- sensors: the sensor interface and driver registry; drivers/: sensor drivers (only `sim` for now)
- hw: the hardware layer, one implementation for real boards and one for the unix port
- log: the level-gated console logger (the only module that prints)

This file stays small: a board pays in RAM for every name defined here.
"""

VERSION = "0.1.0"
