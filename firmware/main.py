"""Entry point: `/main.py` on a board, `micropython firmware/main.py PATH/TO/board.json` on the unix port.

Finds the folder that holds firmware/ and protocols/ (the repository root, a build folder of .mpy files, or
a board's filesystem root), puts it first on sys.path, and runs the board's start, firmware.run, for the
config path.
On a board the config is `/board.json` unless argv names another. A board with A/B slots (updates over the
air, docs/ota.md) runs firmware/loader.py as its `/main.py` instead, which runs the same job from a slot.
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

import firmware  # noqa: E402 - sys.path must be set first

_job = firmware.run(sys.argv[1] if len(sys.argv) > 1 else "/board.json")[1]
import asyncio  # noqa: E402

asyncio.run(_job)
