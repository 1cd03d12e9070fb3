"""The board's start as a job: `job(config_path, ota=None)` -> (mode, coroutine), not yet run.

`mode` is "board" (MQTT uplink), "modbus" (Modbus uplink: firmware/mbserve.py) or "safe" (the config cannot
run; the coroutine reports why). firmware/main.py runs the coroutine with asyncio.run; the A/B loader
(firmware/loader.py, `/main.py` on a slotted board) runs it too, and watches it while a new version or config
is on trial.

`ota`, from the loader only, is the loader's boot record (a dict: the slots, the trial, the root folder; see
firmware/loader.py). With it an MQTT board takes updates (firmware/ota.py) and reports its trial's health; in
safe mode the error goes into `ota["_error"]`, for the loader to roll a trial back with. For a config trial
(`ota["_cfg"]`, the new config's path) the config is read from there, while the state folder and a relative
`mqtt.ca` stay those of `config_path`. A Modbus board takes no updates over the air (its uplink is Modbus; it
is updated by cable, docs/ota.md).

Imports firmware.start, then the running mode's module; knows nothing of slots or files of the loader.
"""

import gc
import sys


def job(config_path, ota=None):
    import firmware
    from firmware import start

    read = ota["_cfg"] if ota is not None and ota.get("_cfg") else config_path
    mode, args = start.prepare(read, config_path)
    del start
    # validation is done: drop the start-up module too (firmware/start.py)
    sys.modules.pop("firmware.start", None)
    if hasattr(firmware, "start"):
        del firmware.start
    gc.collect()
    if mode == "safe":
        from firmware import safe

        if ota is not None:
            ota["_error"] = args[1]
        return mode, safe.run(*args)
    if args[1]["uplink"] == "modbus":
        from firmware import mbserve

        return "modbus", mbserve.ModbusBoard(*args).run()
    from firmware import app

    return "board", app.Board(*args, ota).run()
