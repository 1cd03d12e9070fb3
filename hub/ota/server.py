"""The hub's end of the OTA transfer: signed offers and cancels out, chunks on request, board reports in.

- `offer(device, rid, release, trial, tries)` / `cancel(device, rid)`: publishes on `qala/{site}/{device}/ota`
  (QoS 1, never retained) the offer or cancel signed with the board's command key (protocols.ota,
  domain `qala-ota`); False, and nothing sent, for a board the hub has no key for.
- `serve(rid, release)` / `forget(rid)`: which roll-out ids are answered, with which release.
- `on_message(device, payload)`: a board's `otaack` message. A `get` is answered at once on the board's `ota`
  topic: the asked part of the manifest (f = -1) or of file f, at most protocols.ota.CHUNK_MAX bytes, or a
  `nochunk` saying why (unknown id, unknown file, offset past the end). A `state` report comes back as a
  dict for the roll-outs, its signature checked with the board's key. Anything else (not JSON, a field out of
  range, a report the board did not sign (also a `qala_security` point), a board without a key) is counted
  in `counts` under a reason,
  logged (at most once a minute per reason and board) and dropped: a bad message never reaches the roll-outs
  and never raises out of here.

Files are read from the release folders (which the hub checked at load), checked again against the manifest
as they are read (a folder changed since is answered with a nochunk, never served), and kept in memory while
their roll-out is served: a site's roll-outs serve a few hundred KB.

Imports protocols (ota, sign, topics), hub.model and hub.tools.release (the Release type); the publish and
emit functions and the key lookup are handed in, so it knows nothing of MQTT clients, the store's files or
roll-out states.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

from hub.model import SECURITY, Reading
from protocols import ota, sign, topics
from protocols.errors import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable

    from hub.tools.release import Release

log = logging.getLogger(__name__)

LOG_EVERY = 60.0
"""Seconds between two log lines of one (reason, device)."""


class OtaServer:
    def __init__(self, site: str, key_of: Callable[[str], bytes | None], publish: Callable[..., None], *,
                 clock_ms: Callable[[], int] | None = None, quiet_unknown: bool = False,
                 emit: Callable[[list[Reading]], None] | None = None) -> None:
        """`key_of(device)`: the board's 32-byte command key or None; `publish(topic, payload, qos=1)`.
        `quiet_unknown`: a request for a roll-out id this hub does not serve is dropped (counted) instead of
        answered with a nochunk: with several hubs (mqtt.share_group) every hub reads every `otaack`, and only
        the one that runs the roll-out may answer."""
        self.site = site
        self.quiet_unknown = quiet_unknown
        self.emit = emit
        """Where a forged report goes as a `qala_security` point (sensor `ota`, quality `forged_ota_report`),
        as a forged command ack does (hub.control.service)."""
        self.key_of = key_of
        self.publish = publish
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.releases: dict[str, Release] = {}
        """Roll-out id -> the release it serves."""
        self._data: dict[tuple[str, int], bytes] = {}
        self._keys: dict[str, tuple[bytes, sign.Key]] = {}
        self._topics: dict[str, str] = {}
        self._logged: dict[tuple[str, str], float] = {}
        self.counts: dict[str, int] = {"chunks": 0, "chunk_bytes": 0, "nochunk": 0, "offers": 0, "cancels": 0,
                                       "reports": 0, "bad_message": 0, "bad_signature": 0, "no_key": 0,
                                       "not_ours": 0}

    def __repr__(self) -> str:
        return f"<OtaServer site={self.site} serving={len(self.releases)}>"

    # ------------------------------------------------------------------------------ what is served

    def serve(self, rid: str, release: Release) -> None:
        self.releases[rid] = release

    def forget(self, rid: str) -> None:
        self.releases.pop(rid, None)
        for key in [k for k in self._data if k[0] == rid]:
            del self._data[key]

    def _key(self, device: str) -> sign.Key | None:
        raw = self.key_of(device)
        if raw is None:
            return None
        cached = self._keys.get(device)
        if cached is None or cached[0] != raw:  # a key rotated and the store reloaded: prepared again
            cached = self._keys[device] = (raw, sign.Key(raw))
        return cached[1]

    def _topic(self, device: str) -> str:
        topic = self._topics.get(device)
        if topic is None:
            topic = self._topics[device] = topics.build(self.site, device, ota.OTA)
        return topic

    # ------------------------------------------------------------------------------ hub -> board

    def offer(self, device: str, rid: str, release: Release, trial: int, tries: int) -> bool:
        key = self._key(device)
        if key is None:
            self.counts["no_key"] += 1
            log.warning("ota: no command key for device=%s: offer of %s %s not sent", device, release.kind,
                        release.version)
            return False
        payload = ota.encode_offer(key, self.site, device, rid, release.kind, release.version, release.manifest_sha,
                                   len(release.manifest), trial, tries, self.clock_ms())
        self.publish(self._topic(device), payload, qos=1)
        self.counts["offers"] += 1
        log.info("ota: offer sent device=%s id=%s kind=%s version=%s", device, rid, release.kind, release.version)
        return True

    def cancel(self, device: str, rid: str) -> bool:
        key = self._key(device)
        if key is None:
            return False
        self.publish(self._topic(device), ota.encode_cancel(key, self.site, device, rid, self.clock_ms()), qos=1)
        self.counts["cancels"] += 1
        log.info("ota: cancel sent device=%s id=%s", device, rid)
        return True

    # ------------------------------------------------------------------------------ board -> hub

    def on_message(self, device: str, payload: bytes) -> dict[str, Any] | None:
        """A board's otaack message: a get is answered here (None); a signed state report is returned."""
        key = self._key(device)
        if key is None:
            self._bad("no_key", device, "no command key for this board: its OTA messages are dropped")
            return None
        try:
            message = ota.decode_board(key, self.site, device, payload)
        except ProtocolError as exc:
            reason = "bad_signature" if exc.field == "sig" else "bad_message"
            self._bad(reason, device, str(exc), security=reason == "bad_signature")
            if reason == "bad_signature" and self.emit is not None:
                ts = self.clock_ms()
                self.emit([Reading(SECURITY, self.site, device, "ota", "forged_ota_report", field, value, ts)
                           for field, value in (("count", 1.0), ("problem", str(exc)[:200]))])
            return None
        if message.get("op") == "get":
            self._answer(device, message)
            return None
        self.counts["reports"] += 1
        return message

    def _answer(self, device: str, get: dict[str, Any]) -> None:
        rid, f, o, n = get["id"], int(get["f"]), int(get["o"]), int(get["n"])
        release = self.releases.get(rid)
        why = None
        data = b""
        if release is None:
            if self.quiet_unknown:
                self.counts["not_ours"] += 1
                return
            why = "unknown id"
        elif not -1 <= f < len(release.files):
            why = "unknown file"
        else:
            try:
                data = self._file(rid, release, f)
            except OSError as exc:  # the release folder changed under the hub: the board cannot be served
                log.error("ota: cannot read file %d of release %s: %s", f, release.version,  # noqa: TRY400
                          exc.strerror or exc)
                data, why = b"", "cannot read the file"
            except ValueError as exc:
                log.error("ota: release %s: %s; build it again", release.version, exc)  # noqa: TRY400
                data, why = b"", "the file changed since the release was loaded"
            if why is None and not 0 <= o <= len(data):
                why = "offset past the end"
        if why is not None:
            self.counts["nochunk"] += 1
            self._bad("nochunk", device, f"id={rid} f={f} o={o}: {why}", level=logging.INFO)
            self.publish(self._topic(device), ota.encode_nochunk(rid, f, why), qos=1)
            return
        part = data[o:o + max(0, min(n, ota.CHUNK_MAX))]
        self.publish(self._topic(device), ota.encode_chunk_header(rid, f, o, len(part)) + part, qos=1)
        self.counts["chunks"] += 1
        self.counts["chunk_bytes"] += len(part)

    def _file(self, rid: str, release: Release, f: int) -> bytes:
        """File f of the release (-1: the manifest), read once and checked against the manifest: a folder changed
        after it was loaded (ValueError) is never served as if it were the release."""
        data = self._data.get((rid, f))
        if data is None:
            if f < 0:
                data = release.manifest
            else:
                entry = release.files[f]
                data = (release.folder / entry.path).read_bytes()
                if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
                    raise ValueError(f"{entry.path} differs from its manifest line")
            self._data[(rid, f)] = data
        return data

    def _bad(self, reason: str, device: str, problem: str, *, security: bool = False,
             level: int = logging.WARNING) -> None:
        if reason in self.counts and reason != "nochunk":
            self.counts[reason] += 1
        now = time.monotonic()
        last = self._logged.get((reason, device))
        if last is not None and now - last < LOG_EVERY:
            return
        self._logged[(reason, device)] = now
        if len(self._logged) > 10_000:
            self._logged.clear()
        extra = " security=forged_ota_report" if security else ""
        log.log(level, "ota: message dropped%s reason=%s device=%s problem=%s", extra, reason, device, problem)
