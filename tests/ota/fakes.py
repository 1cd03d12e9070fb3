"""Test stand-ins for the OTA tests: release folders made without mpy-cross, and a fake board that speaks the
board's side of protocols/ota.py (verifies the offer with its key, fetches the manifest and files chunk by
chunk, checks every hash, reports signed states) with a chosen outcome.

Imports protocols.ota and hub.tools.release (its file names); knows nothing of brokers: `FakeBoard.handle`
takes one `ota` payload and returns the `otaack` payloads to send back.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from hub.tools import release
from protocols import ota
from protocols.errors import ProtocolError

if TYPE_CHECKING:
    from pathlib import Path

SITE = "t-site"


def fake_release(root: Path, version: str, files: dict[str, bytes] | None = None, kind: str = "fw",
                 device: str | None = None) -> Path:
    """A release folder root/version with these files (default: two small ones), as `qala fw release` lays
    it out."""
    files = files if files is not None else {
        "firmware/__init__.mpy": f"VERSION {version}".encode() * 50,
        "firmware/app.mpy": bytes(range(256)) * 40,
    }
    folder = root / version
    listed = []
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
        listed.append((path, len(data), hashlib.sha256(data).hexdigest()))
    manifest = ota.encode_manifest(kind, version, "1.22", listed)
    (folder / release.MANIFEST).write_bytes(manifest)
    info: dict[str, Any] = {"version": version, "kind": kind, "manifest": hashlib.sha256(manifest).hexdigest(),
                            "size": len(manifest), "files": len(listed), "bytes": sum(f[1] for f in listed),
                            "micropython": "1.22", "built": 1}
    if device is not None:
        info["device"] = device
    (folder / release.RELEASE).write_text(json.dumps(info))
    return folder


class FakeBoard:
    """One board's OTA side. `outcome`: healthy, rolledback, refuse (a hash mismatch), silent (never reports
    after installing), current (already runs it)."""

    def __init__(self, device: str, key: bytes, *, fw: str = "0.1.0", outcome: str = "healthy", chunk: int = 512,
                 site: str = SITE) -> None:
        self.device = device
        self.key = key
        self.site = site
        self.fw = fw
        self.outcome = outcome
        self.chunk = chunk
        self.offer: dict[str, Any] | None = None
        self.files: list[tuple[str, int, str]] = []
        self.manifest = bytearray()
        self.data: dict[int, bytearray] = {}
        self.states: list[str] = []
        self.refused: list[str] = []
        self.nochunks: list[dict[str, Any]] = []
        self.cancelled = False
        self.clock = 1_800_000_000_000

    def _state(self, state: str, **kw: Any) -> bytes:
        assert self.offer is not None
        self.states.append(state)
        self.clock += 1
        return ota.encode_state(self.key, self.site, self.device, self.offer["id"], self.offer["version"], state,
                                self.clock, **kw)

    def handle(self, payload: bytes) -> list[bytes]:
        if ota.is_chunk(payload):
            head, data = ota.split_chunk(payload)
            if head["op"] == "nochunk":
                self.nochunks.append(head)
                return []
            return self._chunk(head, bytes(data))
        try:
            control = ota.decode_control(self.key, self.site, self.device, payload)
        except ProtocolError as exc:
            self.refused.append(str(exc))
            return []
        if control["op"] == "cancel":
            self.cancelled = True
            return [self._state("cancelled")] if self.offer is not None else []
        same = self.offer is not None and self.offer["id"] == control["id"]
        self.offer = control
        if control["version"] == self.fw or self.outcome == "current":
            return [self._state("current")]
        if same and self.manifest:  # the offer again after a reconnect: carry on where it stopped
            return [self._next()]
        self.manifest = bytearray()
        self.data = {}
        return [ota.encode_get(control["id"], -1, 0, self.chunk)]

    def _chunk(self, head: dict[str, Any], data: bytes) -> list[bytes]:
        if self.offer is None or self.cancelled or head["id"] != self.offer["id"]:
            return []  # not asked for
        f = head["f"]
        if f == -1:
            self.manifest += data
            if len(self.manifest) < self.offer["size"]:
                return [self._next()]
            if hashlib.sha256(self.manifest).hexdigest() != self.offer["manifest"]:
                return [self._state("refused", reason="hash mismatch: manifest")]
            self.files = ota.parse_manifest(bytes(self.manifest))["files"]
            return [self._state("downloading", done=0, total=sum(f[1] for f in self.files)), self._next()]
        self.data.setdefault(f, bytearray()).extend(data)
        if len(self.data[f]) < self.files[f][1]:
            return [self._next()]
        if f + 1 < len(self.files):
            return [self._next()]
        return self._verify()

    def _next(self) -> bytes:
        assert self.offer is not None
        if len(self.manifest) < self.offer["size"]:
            return ota.encode_get(self.offer["id"], -1, len(self.manifest), self.chunk)
        for i, (_path, size, _sha) in enumerate(self.files):
            have = len(self.data.get(i, b""))
            if have < size:
                return ota.encode_get(self.offer["id"], i, have, self.chunk)
        raise AssertionError("nothing left to fetch")

    def _verify(self) -> list[bytes]:
        out = [self._state("verifying")]
        for i, (path, _size, sha) in enumerate(self.files):
            if hashlib.sha256(self.data[i]).hexdigest() != sha or self.outcome == "refuse":
                return [*out, self._state("refused", reason=f"hash mismatch: {path}")]
        out.append(self._state("installed"))
        assert self.offer is not None
        if self.outcome == "healthy":
            self.fw = self.offer["version"]
            out.append(self._state("healthy"))
        elif self.outcome == "rolledback":
            out.append(self._state("rolledback", reason="raised at start-up: ValueError: broken"))
        return out
