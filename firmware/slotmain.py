"""`/main.py` on a board with A/B slots: runs the loader, `/loader.mpy` (firmware/loader.py precompiled).

Deploy copies it (`qala fw deploy`, docs/ota.md); never replaced over the air. It stays one line: a board
compiles its main script at every boot, and keeps what it compiled.
"""

import loader  # noqa: F401 - runs the board
