"""Files written whole or not at all: a temporary file, fsync, rename, and the folder fsynced so the rename
survives a power cut. Used for the provisioning store's files and the hub's state files.

Imports the standard library only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, overwrite: bool = True, sync: bool = True) -> None:
    """Write path as a whole or not at all: temporary file, fsync, rename (or link, with overwrite=False).

    The file is created with `mode` (secrets: 0o600), never wider. With overwrite=False an existing path
    raises FileExistsError and is left as it was. sync=False leaves the folder's fsync to the caller (one
    for many files).
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if overwrite:
            tmp.replace(path)
        else:
            os.link(tmp, path)
            tmp.unlink()
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if sync:
        fsync_folder(path.parent)
