"""The board's actuators: setpoints from `cmd`, checked again on arrival, answered on `ack`; fail-safe.

Only the hub commands: a `cmd` must carry the HMAC-SHA256 of its bytes under the board's command key
(`commands.key`, from `qala provision`), bound to this site and device (protocols/control.py, sign.py). A
command is refused (an `ack` with `st: rejected` and the reason) when it is unsigned or wrongly signed, when
its counter `n` is not above the last one this board accepted (a replay; the last `n` is kept on flash in
`<state>/cmd_n`, so a replay after a reset is refused too), when its expiry lies more than
`commands.max_ttl` seconds ahead, when it was delivered retained (a broker-retained command is never acted
on: Tasmota #2809, #8889), has expired (`exp` before the board clock), names an unknown actuator, is outside
min..max (a relay takes only min or max), changes faster than `rate` per second since the last change, or
switches a relay before `min_on` / `min_off` seconds. Every ack is signed with the same key and carries the
command's `n`, so the hub can tell the board's answer from a forgery. An applied command acks the value
applied. The last 8 verified commands are remembered with their ack: the same command again (id and `n`: a
QoS 1 redelivery or the hub's resend) is answered with the same ack and not applied again. A payload that
cannot be decoded has no id to answer; it is logged and dropped.

At start every actuator is driven to its fail-safe value; on each connect the board subscribes to its
`cmd` topic (QoS 1) before it publishes its birth, so that a command the hub sends on seeing the birth
arrives, and reports every actuator's value after it. `watch()` drives them all to their fail-safe
values once the uplink has been down for `failsafe_after` seconds, the uplink being the broker and a hub
alive behind it (`board.linked()`: a dead hub with the broker up counts as down too); each change is
reported as telemetry (sensor = actuator, quantity `setpoint`), with quality `lost` for a fail-safe move,
through the offline buffer: a board reports its fail-safe state when it reconnects. The drivers come from
the hardware layer (`hw.actuator(name, spec)`, an object with `set(value)`). A Modbus board
(firmware/mbserve.py) uses the checks and drivers only: its writes arrive by Modbus, not as `cmd`.
"""

import asyncio
import binascii
import time

from firmware import log
from protocols import control, sign, topics
from protocols.errors import ProtocolError

_RING = 8


class Actuators:
    def __init__(self, board, state=None):
        """state: the board's state folder, where the command counter is kept (MQTT boards)."""
        self.board = board
        self.specs = board.cfg["actuators"]
        self.after_ms = int(board.cfg["failsafe_after"] * 1000)
        self.out = {}
        self.val = {}
        self.changed = {}
        self.ids = []  # [(command id, n, ack bytes)] of verified commands, oldest first
        self.failsafe = False
        site, device = board.cfg["site"], board.cfg["device"]
        self.site, self.device = site, device
        c = board.cfg.get("commands")
        self.key = sign.Key(binascii.unhexlify(c["key"])) if c else None
        self.max_ttl_ms = c["max_ttl"] * 1000 if c else 0
        self.n_path = state + "/cmd_n" if state else None
        self.last_n = self._load_n()
        self.t_cmd = topics.build(site, device, topics.CMD)
        self.t_ack = topics.build(site, device, topics.ACK)
        for name in self.specs:
            self.out[name] = board.hw.actuator(name, self.specs[name])
            self.drive(name, self.specs[name]["failsafe"])

    def drive(self, name, value):
        self.out[name].set(value)
        if self.val.get(name) != value:
            self.changed[name] = time.ticks_ms()
        self.val[name] = value

    def report(self, name, quality=None):
        v = self.val[name]
        self.board.emit(name, [("setpoint", v, quality) if quality else ("setpoint", v)])

    async def subscribe(self, client):
        """Before each birth: listen for commands (the callback is set from the start, app.Board)."""
        await client.subscribe(self.t_cmd, 1)

    def report_all(self):
        """After each birth: report every actuator's current value."""
        for name in self.specs:
            self.report(name)

    def on_message(self, topic, msg, retained=False):
        if topic != self.t_cmd:
            return
        ack = self.command(msg, retained, self.board.hw.now_ms())
        if ack is not None:
            self.board.client.publish_nowait(self.t_ack, ack, False, True)

    def check(self, name, value):
        """None if value may be applied now, else why not."""
        spec = self.specs.get(name)
        if spec is None:
            return "unknown actuator %s" % name
        lo, hi = spec["min"], spec["max"]
        if value < lo:
            return "%g below min %g" % (value, lo)
        if value > hi:
            return "%g above max %g" % (value, hi)
        relay = spec["kind"] == "relay"
        if relay and value not in (lo, hi):
            return "%g is neither off (%g) nor on (%g) for a relay" % (value, lo, hi)
        last = self.val.get(name)
        if last is None or last == value:
            return None
        el = time.ticks_diff(time.ticks_ms(), self.changed[name]) / 1000
        rate = spec.get("rate")
        if rate and abs(value - last) > rate * el:
            return "change of %g in %.1f s exceeds rate %g/s" % (abs(value - last), el, rate)
        if relay:
            key = "min_on" if last != lo else "min_off"
            need = spec.get(key)
            if need and el < need:
                return "%s: %s for %.1f s, less than %g s" % (key, "on" if key == "min_on" else "off", el, need)
        return None

    def _load_n(self):
        if self.n_path is None:
            return 0
        try:
            with open(self.n_path) as f:
                return int(f.read())
        except OSError:
            return 0  # a new board: no command accepted yet
        except ValueError:
            log.error("%s is damaged: commands are refused until its counter is rewritten", self.n_path)
            return control.N_MAX

    def _save_n(self, n):
        """Keep n as the last accepted counter, on flash first; False if it cannot be written."""
        if self.n_path is not None:
            try:
                with open(self.n_path, "w") as f:
                    f.write("%d" % n)
            except OSError as exc:
                log.error("cannot save the command counter in %s: %s", self.n_path, log.why(exc))
                return False
        self.last_n = n
        return True

    def command(self, msg, retained, now):
        """The signed ack to send for one `cmd` payload (None if it has no usable id)."""
        verified = True
        try:
            cmd = control.decode_cmd(msg, self.key, self.site, self.device)
        except control.SignatureError as exc:
            cmd, why, verified = exc.unverified, exc.problem, False
        except ProtocolError as exc:
            log.warn("cmd refused, no ack: %s", exc)
            return None
        if verified:
            for cid, n, ack in self.ids:
                if cid == cmd.id and n == cmd.n:
                    log.info("cmd %s repeated: answered again, not applied again", cmd.id)
                    return ack
            why = "retained command ignored" if retained else control.refusal(
                cmd, now, self.last_n, self.max_ttl_ms)
            if why is None:  # fresh and signed: its counter is used up, whatever the limits say
                why = self.check(cmd.actuator, cmd.value) if self._save_n(cmd.n) else "cannot save the command counter"
        ts = now or cmd.ts
        if why is None:
            self.drive(cmd.actuator, cmd.value)
            self.report(cmd.actuator)
            self.failsafe = False
            log.info("cmd %s: %s = %s", cmd.id, cmd.actuator, cmd.value)
            ack = control.encode_ack(self.key, self.site, self.device, cmd.id, cmd.actuator, control.APPLIED, ts,
                                     cmd.n, cmd.value)
        else:
            log.warn("cmd %s refused: %s", cmd.id, why)
            ack = control.encode_ack(self.key, self.site, self.device, cmd.id, cmd.actuator, control.REJECTED, ts,
                                     cmd.n, None, why)
        if verified:  # an attacker's payloads never push the hub's commands out of the ring
            self.ids.append((cmd.id, cmd.n, ack))
            if len(self.ids) > _RING:
                self.ids.pop(0)
        return ack

    async def watch(self):
        """Drive every actuator to its fail-safe value once the uplink has been down for failsafe_after: the
        broker lost, or the hub lost behind it (board.linked(): its liveness, protocols/liveness.py)."""
        board = self.board
        down = None
        while True:
            await asyncio.sleep_ms(250)
            if board.linked():
                down = None
                continue
            if down is None:
                down = time.ticks_ms()
            elif not self.failsafe and time.ticks_diff(time.ticks_ms(), down) >= self.after_ms:
                log.warn("uplink down for %d s (%s): actuators to fail-safe", self.after_ms // 1000,
                         "hub lost" if board.client.isconnected() else "broker lost")
                self.failsafe = True
                for name in self.specs:
                    self.drive(name, self.specs[name]["failsafe"])
                    self.report(name, "lost")
