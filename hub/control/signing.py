"""Commands signed with each board's command key, acks checked with it, and the hub's command counter.

- `Counter(path)`: the counter `n` every signed command carries (protocols/control.py). Each command gets
  max(previous + 1, the hub clock in ms), so it grows across hub restarts without a write per command; a
  reservation (a number above every `n` handed out) is kept in `path` (written whole, fsynced) and renewed
  `RESERVE_MS` ahead, so a restart continues above it even when the clock was set back. A board refuses a
  command whose `n` is not above the last it accepted: hubs that command the same board must have clocks
  within a few ms of each other (NTP), or take turns.
- `Signer(site, keys, counter)`: `cmd(command)` gives the signed cmd payload of a hub.control.command
  Command (its `n` taken at the first send and kept for resends, so a resend is the same message);
  `ack(device, payload)` gives the Ack if the board signed it, else raises SignatureError. `keys` maps a
  device id to its 32-byte key (hub.trust.store); `replace_keys` swaps them (a store reloaded on SIGHUP).
  Keys never appear in a repr or a message.

Imports protocols (control, sign) and the standard library; knows nothing of MQTT, files of the store or
InfluxDB.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING

from protocols import control, sign

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from hub.control.command import Command

log = logging.getLogger(__name__)

RESERVE_MS = 10_000
"""How far ahead of the last `n` the reservation on disk reaches (10 s of clock: at most one write per 10 s
of commanding; after a restart this hub's `n` may run that far ahead of the clock, which holds back, for that
long, another hub's commands to a board this one commanded: a board takes only a growing `n`)."""


class CounterError(RuntimeError):
    """The counter's file cannot be written: no command may be signed (its `n` could repeat after a restart)."""


class Counter:
    def __init__(self, path: Path, clock_ms: Callable[[], int] | None = None) -> None:
        self.path = path
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.last = self._read()
        self.reserved = self.last

    def _read(self) -> int:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise CounterError(f"{self.path}: cannot read the command counter: {exc.strerror}") from None
        try:
            value = int(text.strip())
        except ValueError:
            raise CounterError(f"{self.path}: the command counter is damaged (not an integer); remove it only if "
                               "every board's last command is older than this hub's clock") from None
        if not 0 <= value <= control.N_MAX:
            raise CounterError(f"{self.path}: the command counter {value} is out of range")
        return value

    def next(self) -> int:
        """A counter above every one handed out before, by this run or an earlier one."""
        n = max(self.last + 1, self.clock_ms())
        if n > control.N_MAX:
            raise CounterError(f"{self.path}: the command counter is exhausted")
        if n > self.reserved:
            reserved = min(n + RESERVE_MS, control.N_MAX)
            self._write(reserved)
            self.reserved = reserved
        self.last = n
        return n

    def _write(self, value: int) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, f"{value}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.replace(self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise CounterError(f"{self.path}: cannot save the command counter: {exc.strerror}") from None


class Signer:
    def __init__(self, site: str, keys: Mapping[str, bytes], counter: Counter) -> None:
        self.site = site
        self.counter = counter
        self._keys: dict[str, sign.Key] = {}
        self.replace_keys(keys)

    def __repr__(self) -> str:
        return f"<Signer site={self.site} devices={len(self._keys)}>"

    def replace_keys(self, keys: Mapping[str, bytes]) -> None:
        """The devices' keys from now on (a device left out can no longer be commanded)."""
        self._keys = {device: sign.Key(key) for device, key in keys.items()}

    def can_sign(self, device: str) -> bool:
        return device in self._keys

    def cmd(self, command: Command) -> bytes:
        """The signed cmd payload; KeyError if the device has no key, CounterError if no `n` can be taken."""
        key = self._keys[command.device]
        if not command.n:
            command.n = self.counter.next()
        return control.encode_cmd(key, self.site, command.device, command.id, command.actuator, command.value,
                                  command.created_ms, command.expires_ms, command.n)

    def ack(self, device: str, payload: bytes) -> control.Ack:
        """The ack if the device signed it; SignatureError (with what it claims) if not, ProtocolError if
        it is no ack at all."""
        key = self._keys.get(device)
        if key is None:
            ack = control.read_ack(payload)
            raise control.SignatureError("no command key for this device", ack)
        return control.decode_ack(payload, key, self.site, device)
