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

This file stays small: a board pays in RAM for every name defined here. It holds VERSION and `run`, the
board's start, used by main.py and by the A/B loader (loader.py).
"""

VERSION = "0.1.0"


def run(config_path, ota=None):
    """(mode, coroutine) of the board for its config, not yet run: mode "board" (MQTT uplink), "modbus" (Modbus
    uplink: mbserve.py), "update" (update mode: ota.py) or "safe" (the config cannot run; the coroutine
    reports why). main.py runs the coroutine with asyncio.run; the loader too, and watches it while a new
    version or config is on trial.

    start.py validates the config and is dropped (with the validator) before the board's modules load, into
    the room it leaves. `ota`, from the loader only, is its boot record (loader.py): with it an MQTT board
    takes updates. For a config trial `ota["file"]` names the config to read; in safe mode the error goes into
    `ota["error"]`, for the loader to roll the trial back with. A Modbus board takes no updates over the air
    (its uplink is Modbus: it is updated by cable, docs/ota.md).
    """
    import gc
    import sys

    from firmware import start

    mode, args = start.prepare(config_path, ota["file"] if ota is not None and "file" in ota else None)
    del start
    sys.modules.pop("firmware.start", None)
    globals().pop("start", None)
    gc.collect()
    if mode == "safe":
        from firmware import safe

        if ota is not None:
            ota["error"] = args[1]
        return mode, safe.run(*args)
    if args[1]["uplink"] == "modbus":
        from firmware import mbserve

        return "modbus", mbserve.ModbusBoard(*args).run()
    if ota is not None and ota["load"] == 2:  # an offer or a report waits: update mode, nothing else runs
        from firmware import ota as code

        return "update", code.update(args[0], args[1], ota)
    from firmware import app

    return "board", app.Board(*args, ota).run()
