"""The device registry: which devices the site has, online or not, last seen, firmware and capabilities.

Fed by status messages (birth `online`, last will `offline`, `safe`) and by every telemetry message (last
seen). Kept across hub restarts in one JSON file, replaced atomically (write a temporary file, fsync,
rename), saved at once when a device's status changes and otherwise at most every `save()` call the
service makes (periodically and at shutdown). A file that cannot be read is moved aside to `*.corrupt`
with an error in the log, and the registry starts empty: retained birth messages refill it.

Imports the standard library and protocols.payloads (for the Status type and state names). Synchronous
file I/O: status changes are rare, and last-seen updates only touch memory.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from protocols import payloads

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

FORMAT = 1


@dataclass
class Device:
    """What the hub knows about one device. Mutable: the registry updates it in place."""

    state: str = payloads.OFFLINE
    since: int = 0
    """Hub clock (ms) when `state` last changed."""
    last_seen: int = 0
    """Hub clock (ms) of the latest message of any kind."""
    boot: int | None = None
    fw: str | None = None
    caps: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    status_ts: int | None = None
    """The board timestamp of the latest birth or safe message."""


class Registry:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.devices: dict[str, Device] = {}
        self._dirty = False
        self._save_failing = False
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        try:
            document = json.loads(text)
            if document.get("format") != FORMAT:
                raise ValueError(f"unknown format {document.get('format')!r}")  # noqa: TRY301
            self.devices = {name: Device(**info) for name, info in document["devices"].items()}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            log.error("registry file unreadable, moved aside path=%s aside=%s error=%s", self.path, aside, exc)  # noqa: TRY400
            self.path.replace(aside)
            self.devices = {}

    def known(self, device: str) -> bool:
        """True once a birth (or safe) message of the device has been seen, in this run or an earlier one."""
        return device in self.devices

    def seen(self, device: str, now_ms: int) -> None:
        info = self.devices.get(device)
        if info is not None:
            info.last_seen = now_ms
            self._dirty = True

    def update(self, device: str, status: payloads.Status, now_ms: int) -> bool:
        """Apply a status message; True if anything an operator would see changed (and the file was saved).

        A last will for a device never born is recorded too: the device exists, and it is offline.
        """
        info = self.devices.get(device)
        changed = info is None
        if info is None:
            info = self.devices[device] = Device(since=now_ms)
        info.last_seen = now_ms
        self._dirty = True
        if status.state != info.state:
            info.state = status.state
            info.since = now_ms
            changed = True
        if status.state != payloads.OFFLINE:
            new = (status.boot, status.fw, status.caps or {}, status.error, status.ts)
            old = (info.boot, info.fw, info.caps, info.error, info.status_ts)
            if new != old:
                info.boot, info.fw, info.caps, info.error, info.status_ts = new
                changed = True
        if changed:
            try:
                self.save()
            except OSError as exc:  # a full or read-only disk: kept in memory, saved by the next save()
                if not self._save_failing:
                    log.warning("registry: cannot save now, kept in memory path=%s error=%s", self.path,
                                exc.strerror or exc)
                self._save_failing = True
        return changed

    def save(self) -> None:
        """Write the file atomically if anything changed since the last save."""
        if not self._dirty:
            return
        document = {"format": FORMAT, "devices": {name: asdict(info) for name, info in sorted(self.devices.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(document, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)
        self._dirty = False
        self._save_failing = False
