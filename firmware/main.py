"""Entry point: `/main.py` on a board, `micropython firmware/main.py PATH/TO/board.json` on the unix port.

Finds the folder that holds firmware/ and protocols/ (the repository root, a build folder of .mpy files, or
a board's filesystem root), puts it first on sys.path, and hands the config path to firmware.app.main.
On a board the config is `/board.json` unless argv names another.
"""

import sys


def _root():
    here = __file__ if "/" in __file__ else "./" + __file__
    folder = here[: here.rfind("/")] or "/"
    if folder.endswith("firmware"):
        folder = folder[: -len("firmware")].rstrip("/") or ("/" if here.startswith("/") else ".")
    return folder


_r = _root()
if _r not in sys.path:
    sys.path.insert(0, _r)

from firmware import start  # noqa: E402 - sys.path must be set first

_job = start.prepare(sys.argv[1] if len(sys.argv) > 1 else "/board.json")
del start
sys.modules.pop("firmware.start", None)
import firmware  # noqa: E402

del firmware.start
import gc  # noqa: E402

gc.collect()
import asyncio  # noqa: E402

if _job[0] == "safe":
    from firmware import safe

    asyncio.run(safe.run(*_job[1]))
elif _job[1][1]["uplink"] == "modbus":
    from firmware import mbserve

    asyncio.run(mbserve.ModbusBoard(*_job[1]).run())
else:
    from firmware import app

    asyncio.run(app.Board(*_job[1]).run())
