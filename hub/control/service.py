"""The control service: one place where setpoints become commands, whichever transport carries them.

- `submit(device, actuator, value)` validates (unknown device or actuator -> NotFoundError, a value that is
  not a finite number -> BadValueError), checks the announced limits (hub.control.limits: a refused value
  becomes a command that is `rejected` at once, audited, never sent) and sends it:
  * MQTT devices (known from their birth message's caps): `cmd` on `qala/{site}/{device}/cmd`, QoS 1, not
    retained, with an id and an expiry (`control.ttl`), signed with the board's command key and a counter
    (hub.control.signing); resent (the same message) every `control.ack_timeout` up to `control.retries`
    times; the board's `ack` ends it; without one it times out after its expiry. A device the hub has no
    key for (not provisioned, or a hub in plain mode) is refused at once: a rejected, audited command.
  * Modbus devices (writable registers of their profile): hub.modbus's write (ahead of polls), read back
    and compared; an exception response (e.g. 03, illegal data value) is a rejection with that reason, no
    answer is retried like MQTT, a read-back that differs is a rejection.
- `on_ack(device, payload)`: the board's answer, acted on only if the board signed it for this command (its
  key, its `n`). An ack that is unsigned, wrongly signed or carries another command's `n` is a security
  event: counted (`forged_ack`), logged as a WARNING with `security=forged_ack`, and stored as a
  `qala_security` point; the command it names stays as it was. A signed ack for an unknown id, of another
  device, or for a command that is already final (a board that acks twice) is refused, counted and
  logged, and changes nothing.
- `observe(readings)`: setpoint telemetry (quantity `setpoint`, sensor = actuator) keeps the last values;
  other readings feed the rules. Schedules are checked once a second by `run()`.
- `audit_action(...)`: the audit row of an operator's or the hub's action that is not a command (a roll-out's
  start, wave, halt, pause, resume, abort: hub.ota.service), a `qala_audit` point.
- Every final state becomes `qala_command` Readings (hub.model) through `emit`, so InfluxDB holds each
  command with its outcome and latency beside the readings.
- With a journal (hub.control.journal, `<state>/commands.jsonl`), every command is on disk, fsynced, when it
  is made, before it is sent and when it ends. After a restart the hub takes the journal's commands back:
  `GET /v1/commands/{id}` answers for them, the open ones are sent once more (the same message, same id and
  `n`: the hub may have died between journaling `sent` and the publish; a board that has it answers its ack
  again without applying it again), wait for their ack and time out at their expiry; a Modbus
  write cut by the restart ends `timed_out`. Final states of the last 10 minutes are audited again at start
  (the same point: it overwrites itself), so a crash between the end and the audit costs no row. A command
  the journal cannot take is refused (`hub: cannot journal ...`), never sent.
- A rule or schedule whose setpoint cannot be sent (unknown device or actuator, a value it refuses, no key)
  leaves a `rejected` command with the reason, audited. A schedule's command that does not end `applied` is
  tried again every `retry_every` seconds within `retry_window` of its time.

Imports hub.control's pure modules, hub.model and protocols; the MQTT publish function, the Modbus writer
and the Reading sink are handed in by hub.service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Protocol

from hub.control import command as lc
from hub.control import limits, rules
from hub.control.journal import KEEP, JournalError
from hub.control.signing import CounterError
from hub.model import AUDIT, COMMAND, SECURITY, Reading
from protocols import catalogue, payloads, topics
from protocols.errors import ProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from hub.config import ControlConfig
    from hub.control.journal import Journal
    from hub.control.signing import Signer
    from hub.registry import Registry

log = logging.getLogger(__name__)

MQTT = "mqtt"
MODBUS = "modbus"
NONE = "none"
"""The transport of a command that could not be sent at all (a rule's or schedule's, refused at once)."""
KEEP_FINAL = KEEP
"""Final commands kept in memory for `GET /v1/commands/{id}` (oldest dropped first), as in the journal."""
REAUDIT_MS = 600_000
"""At start, final states of this recent past are audited again (a crash may have come before the audit)."""


class ControlError(ValueError):
    """A setpoint request that cannot become a command; `field` names the offending input."""

    status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFoundError(ControlError):
    status = 404


class BadValueError(ControlError):
    status = 422


class ModbusWriter(Protocol):
    """What the control service needs of hub.modbus.poller.ModbusService."""

    pollers: dict[str, Any]

    async def write(self, device: str, register: str, value: float) -> float: ...


def modbus_actuators(modbus: ModbusWriter | None) -> dict[str, dict[str, dict[str, object]]]:
    """device -> register -> limits, for every writable register of every Modbus device's profile."""
    out: dict[str, dict[str, dict[str, object]]] = {}
    if modbus is None:
        return out
    for name, poller in modbus.pollers.items():
        regs = {}
        for reg in poller.device.profile.registers:
            if reg.writable:
                spec: dict[str, object] = {"kind": "register"}
                if reg.minimum is not None:
                    spec["min"] = reg.minimum
                if reg.maximum is not None:
                    spec["max"] = reg.maximum
                regs[reg.name] = spec
        if regs:
            out[name] = regs
    return out


def new_id() -> str:
    return "c-" + os.urandom(6).hex()


class ControlService:
    def __init__(
        self,
        site: str,
        config: ControlConfig,
        registry: Registry,
        *,
        publish: Callable[[str, bytes], None],
        emit: Callable[[list[Reading]], None],
        modbus: ModbusWriter | None = None,
        rule_list: Iterable[rules.Rule] = (),
        schedules: Iterable[rules.Schedule] = (),
        clock_ms: Callable[[], int] | None = None,
        signer: Signer | None = None,
        journal: Journal | None = None,
        shared: bool = False,
    ) -> None:
        """`signer`: the boards' command keys (hub.control.signing); None: no MQTT device can be commanded
        (a hub in plain mode). `journal`: where commands are kept across restarts (None: in memory only).
        `shared`: other hubs command this site's boards too and their acks reach this hub (a cluster, a share
        group): a signed ack of an id this hub never sent is another hub's, counted as `other_hub_ack` and
        taken as the actuator's last value, not refused."""
        self.site = site
        self.shared = shared
        self.signer = signer
        self.journal = journal
        self.config = config
        self.registry = registry
        self.publish = publish
        self.emit = emit
        self.modbus = modbus
        self.rules = list(rule_list)
        self.schedules = list(schedules)
        self._by_reading: dict[tuple[str, str, str], list[rules.Rule]] = {}
        for rule in self.rules:
            self._by_reading.setdefault((rule.device, rule.sensor, rule.quantity), []).append(rule)
        self._watched_sensors = {(device, sensor) for device, sensor, _ in self._by_reading}
        self.rule_state = {rule.name: rules.RuleState() for rule in self.rules}
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.commands: dict[str, lc.Command] = {}
        self.last: dict[tuple[str, str], limits.Last] = {}
        self.counts = {"unknown_ack": 0, "duplicate_ack": 0, "late_ack": 0, "bad_ack": 0, "forged_ack": 0,
                       "other_hub_ack": 0}
        self._done: dict[str, asyncio.Event] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._schedule_tries: dict[str, tuple[str, int, int]] = {}
        """schedule name -> (its latest command id, retry until ms, next try ms)."""
        self._again: list[str] = []
        """Open commands taken back from the journal, sent once more when run() starts."""
        if journal is not None:
            self._take_back(journal.load())

    def _take_back(self, commands: dict[str, lc.Command]) -> None:
        """The journal's commands after a restart: open ones are sent once more and wait for their ack."""
        self.commands = commands
        now = self.clock_ms()
        for cmd in commands.values():
            if cmd.final:
                continue
            self._done[cmd.id] = asyncio.Event()
            if cmd.transport == MODBUS:
                self._finish(cmd, "timeout", now, reason="hub restarted during the Modbus write (read the register "
                             "back to see whether it was written)")
            else:  # sent once more when the service runs (the `sent` line is written before the publish,
                # so the hub may have died before the message left it); the same message, same id and n: a
                # board that has it answers its ack again without applying it again
                cmd.retries = min(cmd.retries, cmd.attempts)
                self._again.append(cmd.id)
        opened = sum(1 for c in commands.values() if not c.final)
        if commands:
            log.info("command journal: %d commands taken back, %d waiting for an ack", len(commands), opened)

    # ------------------------------------------------------------------------------------- devices

    def actuators(self, device: str) -> tuple[str, dict[str, dict[str, object]]] | None:
        """(transport, actuator -> limits) of a device, or None if the hub knows no actuators for it."""
        mb = modbus_actuators(self.modbus)
        if device in mb:
            return MODBUS, mb[device]
        if self.modbus is not None and device in self.modbus.pollers:
            return MODBUS, {}  # a meter: polled, nothing writable
        info = self.registry.devices.get(device)
        if info is None:
            return None
        acts = info.caps.get("actuators") if isinstance(info.caps, dict) else None
        return (MQTT, acts) if isinstance(acts, dict) else (MQTT, {})

    def devices(self) -> list[dict[str, object]]:
        """Every device with actuators: transport, state, and per actuator its limits and last value."""
        out: list[dict[str, object]] = []
        names = set(self.registry.devices) | set(modbus_actuators(self.modbus))
        for name in sorted(names):
            found = self.actuators(name)
            if found is None or not found[1]:
                continue
            transport, acts = found
            state = self.registry.devices[name].state if name in self.registry.devices else "modbus"
            listed = {}
            for act, spec in sorted(acts.items()):
                last = self.last.get((name, act))
                listed[act] = {"limits": spec, "last": None if last is None else last.value}
            out.append({"device": name, "transport": transport, "state": state, "actuators": listed})
        return out

    # -------------------------------------------------------------------------------------- submit

    def _target(self, device: object, actuator: object) -> tuple[str, str, str, dict[str, dict[str, object]]]:
        """(device, actuator, transport, actuator -> limits) if the device has that actuator; ControlError
        naming why not."""
        if not isinstance(device, str):
            raise ControlError("device", "must be a string")
        if not isinstance(actuator, str):
            raise ControlError("actuator", "must be a string")
        found = self.actuators(device)
        if found is None:
            raise NotFoundError("device", f"unknown device {device!r}")
        transport, acts = found
        if not acts and transport == MODBUS:
            raise NotFoundError("actuator", f"device {device} is a Modbus device this hub polls, and its profile has "
                                            "no writable registers: there is nothing to set on it")
        if actuator not in acts:
            known = ", ".join(sorted(acts)) or "none"
            raise NotFoundError("actuator", f"device {device} has no actuator {actuator!r} (has: {known})")
        return device, actuator, transport, acts

    def submit(self, device: object, actuator: object, value: object, *, ttl_s: float | None = None,
               source: str = "api") -> lc.Command:
        """A new command (already sent, or rejected by the hub's limit check); ControlError if unusable."""
        device, actuator, transport, acts = self._target(device, actuator)
        number = limits.number(value)
        if number is None:
            raise BadValueError("value", f"must be a finite number, got {value!r}")
        ttl = self.config.ttl if ttl_s is None else ttl_s
        if limits.number(ttl) is None or not 0 < ttl <= 3600:
            raise BadValueError("ttl_s", f"must be a number of seconds in (0, 3600], got {ttl_s!r}")
        now = self.clock_ms()
        cmd = lc.Command(
            id=new_id(), device=device, actuator=actuator, value=number, transport=transport, source=source,
            created_ms=now, expires_ms=now + int(ttl * 1000), retries=self.config.retries,
            ack_timeout_ms=int(self.config.ack_timeout * 1000),
        )
        self.commands[cmd.id] = cmd
        self._done[cmd.id] = asyncio.Event()
        log.info("command created id=%s device=%s actuator=%s value=%g transport=%s source=%s", cmd.id, device,
                 actuator, number, transport, source)
        why = self._record(cmd) or self._refusal(cmd, acts[actuator], now)
        if why is not None:
            self._finish(cmd, "reject", now, reason="hub: " + why)
            return cmd
        if transport == MQTT:
            self._send_mqtt(cmd, now)
        else:
            lc.step(cmd, "send", now)
            why = self._record(cmd)
            if why is not None:
                cmd.state = lc.PENDING  # not written: never sent
                self._finish(cmd, "reject", now, reason="hub: " + why)
                return cmd
            task = asyncio.get_running_loop().create_task(self._modbus(cmd), name=f"qala-hub.control[{cmd.id}]")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._wake.set()
        return cmd

    def _refusal(self, cmd: lc.Command, spec: dict[str, object], now: int) -> str | None:
        """Why the hub refuses to send cmd (its limits, a missing key), or None."""
        why = limits.check(spec, cmd.value, self.last.get((cmd.device, cmd.actuator)), now)
        if why is None and cmd.transport == MQTT and (self.signer is None or not self.signer.can_sign(cmd.device)):
            why = ("no command key for this device: the hub runs without a provisioning store ([trust] plain)"
                   if self.signer is None else "no command key for this device: not provisioned in the store "
                   "(`qala provision board`), or the hub has not reloaded it (SIGHUP)")
        return why

    async def wait(self, cmd_id: str, within: float | None = None) -> lc.Command:
        """The command once final (or as it is after `within` seconds)."""
        cmd = self.commands[cmd_id]
        if not cmd.final:
            event = self._done.get(cmd_id)
            if event is not None:
                try:
                    async with asyncio.timeout(within):
                        await event.wait()
                except TimeoutError:
                    pass
        return cmd

    def _send_mqtt(self, cmd: lc.Command, now: int) -> None:
        assert self.signer is not None, "submit() refuses MQTT commands without a signer"
        payload, why = None, ""
        try:
            payload = self.signer.cmd(cmd)
        except KeyError:  # a key revoked by a reload since the command was made
            why = "no command key for this device (revoked?)"
        except CounterError as exc:  # the counter's disk failed: an n could repeat after a restart
            why = str(exc)
        if payload is None:
            log.error("command not signed id=%s device=%s error=%s", cmd.id, cmd.device, why)
            if cmd.state == lc.PENDING:
                self._finish(cmd, "reject", now, reason="hub: " + why)
            return
        before = (cmd.state, cmd.attempts, cmd.sent_ms)
        lc.step(cmd, "send", now)
        unjournaled = self._record(cmd)  # on disk before it may reach a board
        if unjournaled is not None:
            cmd.state, cmd.attempts, cmd.sent_ms = before
            if cmd.state == lc.PENDING:
                self._finish(cmd, "reject", now, reason="hub: " + unjournaled)
            return
        self.publish(topics.build(self.site, cmd.device, topics.CMD), payload)
        log.info("command sent id=%s device=%s attempt=%d", cmd.id, cmd.device, cmd.attempts)

    def _record(self, cmd: lc.Command) -> str | None:
        """Journal the command as it is now; why it could not be, or None."""
        if self.journal is None:
            return None
        try:
            self.journal.record(cmd)
        except JournalError as exc:
            log.error("command not journaled id=%s device=%s error=%s", cmd.id, cmd.device, exc)  # noqa: TRY400 - a disk condition
            return f"cannot journal the command: {exc}"
        return None

    async def _modbus(self, cmd: lc.Command) -> None:
        from hub.modbus.bus import DeviceError, NoResponseError  # noqa: PLC0415 - pymodbus only when used
        from hub.modbus.poller import WriteNotConfirmedError, WriteRefusedError  # noqa: PLC0415

        assert self.modbus is not None
        while True:
            try:
                confirmed = await self.modbus.write(cmd.device, cmd.actuator, cmd.value)
            except (WriteRefusedError, DeviceError, WriteNotConfirmedError) as exc:
                self._finish(cmd, "rejected", self.clock_ms(), reason=f"device: {exc}")
                return
            except NoResponseError as exc:
                now = self.clock_ms()
                if cmd.attempts > cmd.retries or now >= cmd.expires_ms:
                    self._finish(cmd, "timeout", now, reason=f"no response: {exc}")
                    return
                log.warning("modbus write got no response, retrying id=%s device=%s error=%s", cmd.id, cmd.device,
                            exc)
                await asyncio.sleep(cmd.ack_timeout_ms / 1000)
                lc.step(cmd, "send", self.clock_ms())
                continue
            self._finish(cmd, "applied", self.clock_ms(), value=confirmed)
            return

    # ----------------------------------------------------------------------------------------- acks

    def on_ack(self, device: str, payload: bytes) -> None:
        """A message on `qala/{site}/{device}/ack`."""
        try:
            ack = self._verified_ack(device, payload)
        except payloads.SignatureError as exc:
            claimed = exc.unverified if isinstance(exc.unverified, payloads.Ack) else None
            self._forged(device, claimed, exc.problem)
            return
        except ProtocolError as exc:
            self.counts["bad_ack"] += 1
            log.warning("ack refused: bad payload device=%s error=%s", device, exc)
            return
        cmd = self.commands.get(ack.id)
        if cmd is not None and cmd.device == device and cmd.n and ack.n != cmd.n:
            self._forged(device, ack, f"n={ack.n} is not the command's n={cmd.n} (an old ack replayed?)")
            return
        if cmd is None and self.shared:
            self._other_hubs(device, ack)
            return
        if cmd is None or cmd.device != device or cmd.actuator != ack.actuator:
            self.counts["unknown_ack"] += 1
            log.warning("ack refused: unknown command id device=%s id=%s actuator=%s", device, ack.id, ack.actuator)
            return
        now = self.clock_ms()
        if cmd.final:
            if cmd.state == lc.TIMED_OUT:
                self.counts["late_ack"] += 1
                log.warning("ack after the time-out id=%s device=%s status=%s", cmd.id, device, ack.status)
                if ack.status == payloads.APPLIED and ack.value is not None:
                    self.last[(device, cmd.actuator)] = limits.Last(ack.value, now)
            else:
                self.counts["duplicate_ack"] += 1
                log.warning("ack refused: command already %s id=%s device=%s", cmd.state, cmd.id, device)
            return
        if ack.status == payloads.APPLIED:
            self._finish(cmd, "applied", now, value=ack.value)
        else:
            self._finish(cmd, "rejected", now, reason="board: " + (ack.reason or ""))

    def _other_hubs(self, device: str, ack: payloads.Ack) -> None:
        """A signed ack of a command this hub never sent: another hub's, which that hub finishes and audits."""
        self.counts["other_hub_ack"] += 1
        if ack.status == payloads.APPLIED and ack.value is not None:
            self.last[(device, ack.actuator)] = limits.Last(ack.value, self.clock_ms())  # for rate limits
        log.debug("ack of another hub's command device=%s id=%s", device, ack.id)

    def _verified_ack(self, device: str, payload: bytes) -> payloads.Ack:
        """The ack if the board signed it; SignatureError (also in plain mode: no keys), ProtocolError."""
        if self.signer is None:
            raise payloads.SignatureError("no command keys: the hub runs in plain mode", payloads.read_ack(payload))
        return self.signer.ack(device, payload)

    def _forged(self, device: str, claimed: payloads.Ack | None, problem: str) -> None:
        """An ack the board did not sign for the command it names: a security event, never an outcome."""
        self.counts["forged_ack"] += 1
        cmd_id = claimed.id if claimed is not None else ""
        status = claimed.status if claimed is not None else ""
        log.warning("ack refused: not signed by the board security=forged_ack device=%s id=%s claims=%s problem=%s",
                    device, cmd_id or "-", status or "-", problem)
        sensor = claimed.actuator if claimed is not None else "ack"
        ts = self.clock_ms()
        fields: list[tuple[str, float | str]] = [("count", 1.0), ("problem", problem)]
        if cmd_id:
            fields += [("id", cmd_id), ("claimed", status)]
        self.emit([Reading(SECURITY, self.site, device, sensor, "forged_ack", f, v, ts) for f, v in fields])

    def _finish(self, cmd: lc.Command, event: str, now: int, *, value: float | None = None,
                reason: str | None = None) -> None:
        lc.step(cmd, event, now, value=value, reason=reason)
        self._record(cmd)  # a failure is logged; the final state stands in memory and in the audit
        if cmd.state == lc.APPLIED and value is not None:
            previous = self.last.get((cmd.device, cmd.actuator))
            if previous is None or previous.value != value:
                self.last[(cmd.device, cmd.actuator)] = limits.Last(value, now)
        log.info("command %s id=%s device=%s actuator=%s value=%g applied=%s latency_ms=%s attempts=%d reason=%s",
                 cmd.state, cmd.id, cmd.device, cmd.actuator, cmd.value, cmd.applied, cmd.latency_ms, cmd.attempts,
                 cmd.reason)
        self.emit(self.audit(cmd))
        event_done = self._done.pop(cmd.id, None)
        if event_done is not None:
            event_done.set()
        self._trim()

    def audit(self, cmd: lc.Command) -> list[Reading]:
        """The `qala_command` Readings of a final command (one InfluxDB point)."""
        ts = cmd.done_ms or cmd.created_ms

        def r(field: str, value: float | str) -> Reading:
            return Reading(COMMAND, self.site, cmd.device, cmd.actuator, cmd.state, field, value, ts)

        out = [r("value", cmd.value), r("latency_ms", float(cmd.latency_ms or 0)), r("attempts", float(cmd.attempts)),
               r("id", cmd.id), r("source", cmd.source), r("transport", cmd.transport)]
        if cmd.applied is not None:
            out.append(r("applied", cmd.applied))
        if cmd.reason:
            out.append(r("reason", cmd.reason))
        return out

    def audit_action(self, subject: str, action: str, source: str, detail: str, **fields: float | str) -> None:
        """An audit row for an action that is not a command (a roll-out's start, wave, halt, pause, resume,
        abort): one `qala_audit` point, device tag `subject` (`rollout:<id>`), sensor tag its kind (the part
        before `:`), quality `action`; fields `source` (who: api:<role>, cli:<role>, hub), `detail` and
        `fields`. Logged at INFO as commands are."""
        ts = self.clock_ms()
        kind = subject.split(":", 1)[0]
        log.info("audit %s %s source=%s %s", subject, action, source, detail)
        values: list[tuple[str, float | str]] = [("source", source), ("detail", detail or "-"), *fields.items()]
        self.emit([Reading(AUDIT, self.site, subject, kind, action, f, v, ts) for f, v in values])

    def _trim(self) -> None:
        if len(self.commands) <= KEEP_FINAL:
            return
        for cmd_id in [c.id for c in self.commands.values() if c.final][: len(self.commands) - KEEP_FINAL]:
            del self.commands[cmd_id]

    # ------------------------------------------------------------------------------ readings, rules

    def watches(self, device: str, sensor: str, values: list[tuple[str, float, str]]) -> bool:
        """Whether observe() must see this sample: a setpoint reading, or a sensor some rule reads."""
        if (device, sensor) in self._watched_sensors:
            return True
        return any(quantity == "setpoint" for quantity, _, _ in values)

    def observe(self, readings: Iterable[Reading]) -> None:
        """Setpoint telemetry updates last values; readings that rules watch drive them."""
        now_s = time.monotonic()
        for r in readings:
            if isinstance(r.value, str):
                continue
            if r.field == "setpoint":
                previous = self.last.get((r.device, r.sensor))
                if previous is None or previous.value != r.value:
                    self.last[(r.device, r.sensor)] = limits.Last(r.value, r.ts)
                continue
            if r.quality != catalogue.OK:  # a faulty or implausible reading drives nothing: the rule holds
                continue
            for rule in self._by_reading.get((r.device, r.sensor, r.field), ()):
                value = rules.evaluate(rule, self.rule_state[rule.name], r.value, now_s)
                if value is not None:
                    log.info("rule %s: %s.%s.%s=%g -> %s.%s=%g", rule.name, r.device, r.sensor, r.field, r.value,
                             rule.target_device, rule.actuator, value)
                    self.submit_automatic(rule.target_device, rule.actuator, value, "rule:" + rule.name)

    def submit_automatic(self, device: str, actuator: str, value: float, source: str) -> lc.Command:
        """A setpoint no person asked for (a rule, a schedule, an alert action): sent, or a rejected command
        with the reason (audited)."""
        try:
            return self.submit(device, actuator, value, source=source)
        except ControlError as exc:
            log.warning("%s: setpoint not sent: %s", source, exc)
            now = self.clock_ms()
            cmd = lc.Command(id=new_id(), device=device, actuator=actuator, value=value, transport=NONE,
                             source=source, created_ms=now, expires_ms=now, retries=0, ack_timeout_ms=0)
            self.commands[cmd.id] = cmd
            self._record(cmd)
            self._finish(cmd, "reject", now, reason=f"hub: {exc}")
            return cmd

    def _schedule(self, s: rules.Schedule, now: int, *, first: bool) -> None:
        """Send a schedule's setpoint; keep trying within its window while it is not applied."""
        cmd = self.submit_automatic(s.device, s.actuator, s.value, "schedule:" + s.name)
        until = now + int(s.retry_window * 1000)
        if not first and s.name in self._schedule_tries:
            until = self._schedule_tries[s.name][1]
        self._schedule_tries[s.name] = (cmd.id, until, now + int(s.retry_every * 1000))

    def _schedule_retries(self, now: int) -> int:
        """Try again the schedules whose command did not end applied, within their window; the next due ms."""
        next_ms = now + 1000
        by_name = {s.name: s for s in self.schedules}
        for name, (cmd_id, until, next_try) in list(self._schedule_tries.items()):
            cmd = self.commands.get(cmd_id)
            schedule = by_name.get(name)
            if schedule is None or cmd is None or (cmd.final and cmd.state == lc.APPLIED):
                del self._schedule_tries[name]
                continue
            if not cmd.final:
                continue
            if now >= until:
                log.warning("schedule %s: not applied within its retry window (last: %s %s)", name, cmd.state,
                            cmd.reason)
                del self._schedule_tries[name]
                continue
            if now >= next_try:
                log.info("schedule %s: trying again (last: %s %s)", name, cmd.state, cmd.reason)
                self._schedule(schedule, now, first=False)
            next_ms = min(next_ms, next_try)
        return next_ms

    # ------------------------------------------------------------------------------------------ run

    def _reaudit(self) -> None:
        """Audit again the final states of the recent past (the same points: they overwrite themselves)."""
        since = self.clock_ms() - REAUDIT_MS
        recent = [c for c in self.commands.values() if c.final and (c.done_ms or 0) >= since]
        for cmd in recent:
            self.emit(self.audit(cmd))
        if recent:
            log.info("command journal: %d recent outcomes audited again", len(recent))

    def _send_again(self) -> None:
        """The open commands taken back from the journal, once more (same message: a board answers it again)."""
        now = self.clock_ms()
        for cmd_id in self._again:
            cmd = self.commands[cmd_id]
            if cmd.state == lc.SENT and now < cmd.expires_ms:
                self._send_mqtt(cmd, now)
        self._again.clear()

    async def run(self) -> None:
        """Resends, time-outs and schedules, until cancelled."""
        self._reaudit()
        self._send_again()
        previous = dt.datetime.now()  # noqa: DTZ005 - schedules are in the hub's local time
        while True:
            now = self.clock_ms()
            next_ms = self._schedule_retries(now)
            for cmd in list(self.commands.values()):
                if cmd.transport != MQTT:
                    continue
                action = lc.due(cmd, now)
                if action == lc.RESEND:
                    self._send_mqtt(cmd, now)
                elif action == lc.TIMEOUT:
                    self._finish(cmd, "timeout", now, reason=f"no ack after {cmd.attempts} attempts")
                due_at = lc.next_due_ms(cmd)
                if due_at is not None:
                    next_ms = min(next_ms, due_at)
            wall = dt.datetime.now()  # noqa: DTZ005
            for s in rules.schedule_due(self.schedules, previous, wall):
                log.info("schedule %s: %s.%s=%g", s.name, s.device, s.actuator, s.value)
                self._schedule(s, now, first=True)
            previous = wall
            self._wake.clear()
            try:
                async with asyncio.timeout(max(0.01, (next_ms - self.clock_ms()) / 1000)):
                    await self._wake.wait()
            except TimeoutError:
                pass
