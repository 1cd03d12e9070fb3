"""The command journal: every change of every command on disk, fsynced, before the hub acts on it.

`<state>/commands.jsonl` holds one JSON line per change: the whole command as it is after the change (its
state, attempts, times, counter, outcome), so the last line of an id is that command. `record(cmd)` appends
and fsyncs (a few milliseconds; commands are rare); the control service records a command when it is made,
before it is sent (so a command that may have reached a board is never forgotten), and when it ends.

`load()` reads the file at start and returns the commands, the latest line of each id winning; a line cut
by a crash (the last one) is ignored. It then compacts the file to one line per command, keeping every open
command and the newest `keep` final ones, so the file stays small. A journal that cannot be written raises
JournalError: the service then refuses the command with that reason rather than send what it could forget.

Imports the standard library and hub.control.command; knows nothing of MQTT, Modbus or InfluxDB.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from typing import TYPE_CHECKING, Any

from hub.control.command import Command

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

KEEP = 10_000
"""Final commands kept (GET /v1/commands/{id} answers for them); open ones are always kept."""
_FIELDS = {f.name for f in dataclasses.fields(Command)}


class JournalError(OSError):
    """The journal cannot be written; the message names the file and the cause."""


class Journal:
    def __init__(self, path: Path, keep: int = KEEP) -> None:
        self.path = path
        self.keep = keep
        self._fd: int | None = None

    def load(self) -> dict[str, Command]:
        """The journal's commands, oldest first (the file compacted); {} for a new hub."""
        commands: dict[str, Command] = {}
        try:
            text = self.path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return commands
        except OSError as exc:
            raise JournalError(exc.errno, f"{self.path}: cannot read the command journal: {exc.strerror}") from None
        lines = text.split("\n")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            cmd = _command(line)
            if cmd is None:
                if number < len(lines) - 1:  # not the last line: not a crash's cut, a damaged file
                    log.error("command journal: line %d is not a command, skipped path=%s", number, self.path)
                continue
            commands.pop(cmd.id, None)  # re-insert: the order is that of the latest change
            commands[cmd.id] = cmd
        final = [c for c in commands.values() if c.final]
        for old in final[: max(0, len(final) - self.keep)]:
            del commands[old.id]
        self._rewrite(commands.values())
        return commands

    def record(self, cmd: Command) -> None:
        """Append the command as it is now and fsync; JournalError if the disk refuses."""
        line = (json.dumps(dataclasses.asdict(cmd), separators=(",", ":")) + "\n").encode()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            written = 0
            while written < len(line):
                written += os.write(self._fd, line[written:])
            os.fsync(self._fd)
        except OSError as exc:
            self.close()
            raise JournalError(exc.errno, f"{self.path}: cannot write the command journal: "
                                          f"{exc.strerror or exc}") from None

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None

    def _rewrite(self, commands: Any) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with tmp.open("wb") as out:
                for cmd in commands:
                    out.write((json.dumps(dataclasses.asdict(cmd), separators=(",", ":")) + "\n").encode())
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(self.path)
        except OSError as exc:  # a full or read-only disk: the long file stays, it is read the same way
            log.warning("command journal: cannot compact, kept as it is path=%s error=%s", self.path,
                        exc.strerror or exc)
            with contextlib.suppress(OSError):
                tmp.unlink()


def _command(line: str) -> Command | None:
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not {"id", "device", "actuator", "value", "state"} <= set(doc):
        return None
    try:
        return Command(**{k: v for k, v in doc.items() if k in _FIELDS})
    except TypeError:
        return None
