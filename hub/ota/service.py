"""The hub's roll-outs: releases loaded, roll-outs started, driven, kept on disk, audited and measured.

`OtaService` owns
- the releases: every sub-folder of `[ota] releases` (default `<state>/releases`) loaded with every hash
  checked (hub.tools.release.load_release); a folder that fails is logged and left out. A roll-out of a
  version not loaded yet looks again first, so a release copied in while the hub runs needs no restart;
- the roll-outs (hub.ota.rollout.Rollout), each in `<state>/rollouts/<id>.json`, written whole (hub.atomic)
  at an operator's action, at each round, and (`flush`) before the hub acknowledges a batch of MQTT messages
  that changed it; at start the ones not ended carry on where they were (their releases loaded again; one
  whose release is gone halts, saying so);
- the OTA server (hub.ota.server.OtaServer), told which roll-out ids to answer, and whose offers and cancels
  carry out the roll-outs' actions.

`run()` ticks every `[ota] tick` seconds: time-outs, boards back online, next waves. Each board report (a
signed `state` from the server) goes to its roll-out and becomes a `qala_ota` point; each roll-out's counts
become a `qala_rollout` point when they change (and every minute while it is not ended); each roll-out
action (start, wave, halt, pause, resume, abort, done) is an audit row through the control service's
`audit_action` (`qala_audit`, who did it and why) and a log line. A report for an unknown roll-out id (an
old one, or another hub's) is counted and logged, never acted on.

The facts a roll-out needs come from callables the hub hands in: the provisioned boards with district and
firmware (selectors), whether a board is online (its retained birth, hub.registry). Points go out through
`emit` (the spool). Knows nothing of MQTT, HTTP or the store's files.

Imports hub.ota (rollout, selector, server), hub.tools.release, hub.atomic and hub.model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Protocol

from hub.atomic import write_atomic
from hub.model import Reading
from hub.ota import rollout as ro
from hub.ota.selector import SelectorError, select
from hub.tools.release import KIND_CONFIG, Release, ReleaseError, check_version, load_release, load_releases

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from hub.ota.config import OtaConfig
    from hub.ota.selector import Facts
    from hub.ota.server import OtaServer

log = logging.getLogger(__name__)

ROLLOUT = "qala_rollout"
"""Measurement of a roll-out's progress: device tag `rollout:<id>`, sensor tag = the version."""
OTA = "qala_ota"
"""Measurement of a board's OTA reports: device tag = the board, sensor tag = the roll-out id, quality = state."""
ROLLOUT_PREFIX = "rollout:"
POINT_EVERY_MS = 60_000
ROLLOUTS = "rollouts"
COUNT_FIELDS = ("targeted", "waiting", "offline", "offered", "downloading", "verifying", "installed", "healthy",
                "current", "succeeded", "failed", "refused", "rolledback", "timedout", "cancelled")


class OtaError(ValueError):
    """A roll-out request that cannot be done; `status` (HTTP) and `field` say what and where."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


class Auditor(Protocol):
    def audit_action(self, subject: str, action: str, source: str, detail: str, **fields: float | str) -> None: ...


def new_id(now_ms: int) -> str:
    return "r" + time.strftime("%Y%m%d", time.gmtime(now_ms / 1000)) + "-" + os.urandom(3).hex()


class OtaService:
    def __init__(self, site: str, config: OtaConfig, state: Path, server: OtaServer, *,
                 boards: Callable[[], Mapping[str, Facts]], online: Callable[[str], bool],
                 emit: Callable[[list[Reading]], None], auditor: Auditor | None = None,
                 clock_ms: Callable[[], int] | None = None) -> None:
        self.site = site
        self.config = config
        self.folder = config.releases if config.releases is not None else state / "releases"
        self.state_dir = state / ROLLOUTS
        self.server = server
        self.boards = boards
        self.online = online
        self.emit = emit
        self.auditor = auditor
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.releases: dict[str, Release] = {}
        self.rollouts: dict[str, ro.Rollout] = {}
        self.counts = {"reports": 0, "unknown_rollout": 0, "save_errors": 0}
        self._last_point: dict[str, tuple[int, dict[str, int], str]] = {}
        self._dirty: set[str] = set()
        self._refused: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<OtaService site={self.site} releases={len(self.releases)} rollouts={len(self.rollouts)}>"

    def fields(self) -> dict[str, float]:
        """The hub's self-metrics of OTA (qala_hub): counters since start, and roll-outs running now."""
        c = self.server.counts
        return {"ota_chunks": float(c["chunks"]), "ota_chunk_bytes": float(c["chunk_bytes"]),
                "ota_offers": float(c["offers"]), "ota_reports": float(c["reports"]),
                "ota_bad_messages": float(c["bad_message"] + c["bad_signature"] + c["no_key"]),
                "ota_bad_signatures": float(c["bad_signature"]),
                "rollouts_running": float(sum(1 for r in self.rollouts.values() if r.state == ro.RUNNING))}

    # ------------------------------------------------------------------------------ start-up

    def load(self) -> None:
        """Releases from their folder, roll-outs from `<state>/rollouts` (the unfinished ones served again)."""
        self.reload_releases()
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            paths = sorted(self.state_dir.glob("*.json"))
        except OSError as exc:
            log.error("ota: cannot use %s: %s; roll-outs are kept in memory only", self.state_dir,  # noqa: TRY400
                      exc.strerror or exc)
            return
        for path in paths:
            try:
                rollout = ro.Rollout.from_dict(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("ota: roll-out file %s cannot be read, left out: %s", path, exc)  # noqa: TRY400
                continue
            self.rollouts[rollout.id] = rollout
            if rollout.state in (ro.ABORTED, ro.HALTED):
                continue
            release = self.releases.get(rollout.version)
            if release is None:
                rollout.state, rollout.reason = ro.HALTED, f"release {rollout.version} is not in {self.folder}"
                self._audit(rollout, ro.Action("event", what="halt", detail=rollout.reason), "hub")
                self._save(rollout)
                continue
            self.server.serve(rollout.id, release)
            log.info("ota: roll-out %s carries on state=%s wave=%d version=%s", rollout.id, rollout.state,
                     rollout.wave + 1, rollout.version)

    def reload_releases(self) -> None:
        """Every release of the folder, hashes checked; a folder refused is logged once (until it changes)."""
        found, refused = load_releases(self.folder)
        for name, why in refused.items():
            if self._refused.get(name) != why:
                log.error("ota: release folder %s refused: %s", name, why)
        self._refused = refused
        for version, release in found.items():
            if version not in self.releases:
                log.info("ota: release loaded version=%s kind=%s files=%d bytes=%d", version, release.kind,
                         len(release.files), release.total)
        self.releases = found

    def release(self, version: str) -> Release:
        """A loaded release, looking in the folder again for one not loaded yet; OtaError 404 naming it."""
        try:
            check_version(version, "version")
        except ReleaseError as exc:
            raise OtaError(str(exc), 400, "version") from None
        if version not in self.releases:
            folder = self.folder / version
            if folder.is_dir():
                try:
                    self.releases[version] = load_release(folder)
                except ReleaseError as exc:
                    raise OtaError(f"release {version} is refused: {exc}", 422, "version") from None
        if version not in self.releases:
            raise OtaError(f"no release {version} in {self.folder} (`qala fw release --version {version} --out "
                           f"{self.folder / version}` makes it)", 404, "version")
        return self.releases[version]

    # ------------------------------------------------------------------------------ operators

    def start(self, version: str, selector: str, *, by: str, waves: list[float] | None = None,
              max_failures: float | None = None, trial: int | None = None, tries: int | None = None,
              board_timeout: int | None = None) -> ro.Rollout:
        """A new roll-out, started (its first wave offered); OtaError naming the field at fault."""
        release = self.release(version)
        try:
            chosen = select(selector, self.boards())
        except SelectorError as exc:
            raise OtaError(str(exc), 422, "to") from None
        if release.kind == KIND_CONFIG and chosen != [release.device]:
            raise OtaError(f"release {version} is the config of board {release.device}: select just that board "
                           f"(devices:{release.device}), not {len(chosen)} boards", 422, "to")
        busy = {d: r.id for r in self.rollouts.values() if r.state in (ro.RUNNING, ro.PAUSED) for d in r.devices}
        clash = sorted(d for d in chosen if d in busy)
        if clash:
            raise OtaError(f"{len(clash)} of these boards are in roll-out {busy[clash[0]]} (e.g. {clash[0]}): "
                           "pause does not free them; abort it first or choose other boards", 409, "to")
        now = self.clock_ms()
        try:
            rollout = ro.Rollout.new(
                new_id(now), version, release.kind, selector, chosen, now_ms=now,
                percents=self.config.waves if waves is None else waves,
                max_failures=self.config.max_failures if max_failures is None else max_failures,
                trial=self.config.trial if trial is None else trial,
                tries=self.config.tries if tries is None else tries,
                board_timeout=self.config.board_timeout if board_timeout is None else board_timeout, by=by)
        except ro.RolloutError as exc:
            raise OtaError(str(exc), exc.status, str(exc).split(":", 1)[0] if exc.status == 400 else "to") from None
        self.rollouts[rollout.id] = rollout
        self.server.serve(rollout.id, release)
        self._carry_out(rollout, rollout.start(now, self.online), by)
        self._dirty.add(rollout.id)
        self.flush()
        return rollout

    def get(self, rid: str) -> ro.Rollout:
        rollout = self.rollouts.get(rid)
        if rollout is None:
            raise OtaError(f"no roll-out {rid!r}", 404, "id")
        return rollout

    def pause(self, rid: str, by: str) -> ro.Rollout:
        rollout = self.get(rid)
        self._operate(rollout, lambda now: rollout.pause(now, by), by)
        return rollout

    def resume(self, rid: str, by: str) -> ro.Rollout:
        rollout = self.get(rid)
        self._operate(rollout, lambda now: rollout.resume(now, by, self.online), by)
        return rollout

    def abort(self, rid: str, by: str) -> ro.Rollout:
        rollout = self.get(rid)
        self._operate(rollout, lambda now: rollout.abort(now, by), by)
        return rollout

    def _operate(self, rollout: ro.Rollout, step: Callable[[int], list[ro.Action]], by: str) -> None:
        try:
            actions = step(self.clock_ms())
        except ro.RolloutError as exc:
            raise OtaError(str(exc), exc.status, "id") from None
        self._carry_out(rollout, actions, by)
        self.flush()

    # ------------------------------------------------------------------------------ boards

    def on_report(self, device: str, report: Mapping[str, Any]) -> None:
        """A board's signed state report (hub.ota.server): to its roll-out, and a qala_ota point."""
        self.counts["reports"] += 1
        rid, state = str(report.get("id", "")), str(report.get("state", ""))
        now = self.clock_ms()
        self.emit(report_readings(self.site, device, report, now))
        rollout = self.rollouts.get(rid)
        if rollout is None:
            self.counts["unknown_rollout"] += 1
            log.log(logging.INFO if self.server.quiet_unknown else logging.WARNING,
                    "ota: report for a roll-out this hub does not run device=%s id=%s state=%s", device, rid, state)
            return
        log.info("ota: report device=%s id=%s state=%s version=%s reason=%s", device, rid, state,
                 report.get("version"), report.get("reason") or "-")
        actions = rollout.report(device, state, now, reason=str(report.get("reason") or ""),
                                 done=report.get("done"), total=report.get("total"))
        self._dirty.add(rollout.id)  # saved by flush(), before the report's message is acknowledged
        self._carry_out(rollout, actions, "hub")

    def tick(self) -> None:
        now = self.clock_ms()
        for rollout in list(self.rollouts.values()):
            if rollout.ended and not any(b.state in ro.IN_FLIGHT or (b.state == ro.OFFLINE and rollout.state == ro.DONE)
                                         for b in rollout.boards.values()):
                continue  # nothing can change any more
            actions = rollout.tick(now, self.online)
            self._carry_out(rollout, actions, "hub")
            self._point(rollout, now)
        self.flush()

    def flush(self) -> None:
        """Save the roll-outs that changed since the last flush (written whole, fsynced) and measure them. The
        hub calls it before it acknowledges a batch of MQTT messages: a report the broker stops resending is
        on disk. Once per batch, not once per report: a roll-out of thousands of boards is one file."""
        if not self._dirty:
            return
        now = self.clock_ms()
        for rid in sorted(self._dirty):
            rollout = self.rollouts.get(rid)
            if rollout is not None:
                self._save(rollout)
                self._point(rollout, now)
        self._dirty.clear()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick)
            try:
                self.tick()
            except Exception:
                log.exception("ota: roll-out round failed; trying again next round")

    # ------------------------------------------------------------------------------ the edges

    def _carry_out(self, rollout: ro.Rollout, actions: list[ro.Action], by: str) -> None:
        release = self.server.releases.get(rollout.id)
        for action in actions:
            if action.kind == "offer" and release is not None:
                self.server.offer(action.device, rollout.id, release, rollout.trial, rollout.tries)
            elif action.kind == "cancel":
                self.server.cancel(action.device, rollout.id)
            elif action.kind == "event":
                self._audit(rollout, action, by)
        if actions:
            self._dirty.add(rollout.id)
        if rollout.state == ro.ABORTED or (rollout.state == ro.HALTED and not any(
                b.state in ro.IN_FLIGHT for b in rollout.boards.values())):
            self.server.forget(rollout.id)

    def _audit(self, rollout: ro.Rollout, action: ro.Action, by: str) -> None:
        source = by if action.what in ("start", "pause", "resume", "abort") else "hub"
        level = logging.WARNING if action.what in ("halt", "abort") else logging.INFO
        log.log(level, "ota: roll-out %s id=%s version=%s by=%s %s", action.what, rollout.id, rollout.version,
                source, action.detail)
        if self.auditor is not None:
            self.auditor.audit_action(ROLLOUT_PREFIX + rollout.id, action.what, source, action.detail,
                                      version=rollout.version, wave=float(rollout.wave + 1))

    def _save(self, rollout: ro.Rollout) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.state_dir / f"{rollout.id}.json",
                         json.dumps(rollout.as_dict(), separators=(",", ":")).encode(), mode=0o600)
        except OSError as exc:
            self.counts["save_errors"] += 1
            log.error("ota: roll-out %s not saved (a restart would lose its latest changes): %s",  # noqa: TRY400
                      rollout.id, exc.strerror or exc)

    def _point(self, rollout: ro.Rollout, now: int) -> None:
        counts = rollout.counts()
        last = self._last_point.get(rollout.id)
        due = last is None or last[1] != counts or last[2] != rollout.state or (
            not rollout.ended and now - last[0] >= POINT_EVERY_MS)
        if not due:
            return
        self._last_point[rollout.id] = (now, counts, rollout.state)
        self.emit(rollout_readings(self.site, rollout, counts, now))


def report_readings(site: str, device: str, report: Mapping[str, Any], now: int) -> list[Reading]:
    """One `qala_ota` point of a board's report: sensor tag = the roll-out id, quality = the state."""
    fields: list[tuple[str, float | str]] = [("count", 1.0), ("version", str(report.get("version", "")))]
    fields += [(key, float(report[key])) for key in ("done", "total") if isinstance(report.get(key), int)]
    if report.get("reason"):
        fields.append(("reason", str(report["reason"])[:200]))
    rid, state = str(report.get("id") or "-"), str(report.get("state") or "-")
    return [Reading(OTA, site, device, rid, state, f, v, now) for f, v in fields]


def rollout_readings(site: str, rollout: ro.Rollout, counts: Mapping[str, int], now: int) -> list[Reading]:
    """One `qala_rollout` point: the counts per board state, the wave, the state."""
    tag = ROLLOUT_PREFIX + rollout.id
    fields: list[tuple[str, float | str]] = [(k, float(counts[k])) for k in COUNT_FIELDS]
    fields += [("wave", float(rollout.wave + 1)), ("waves", float(len(rollout.waves))), ("state", rollout.state),
               ("kind", rollout.kind)]
    return [Reading(ROLLOUT, site, tag, rollout.version, "ok", f, v, now) for f, v in fields]
