"""The board's actuators: setpoints from `cmd`, checked again on arrival, answered on `ack`; fail-safe.

A command is refused (an `ack` with `st: rejected` and the reason) when it was delivered retained (a
broker-retained command is never acted on: Tasmota #2809, #8889), has expired (`exp` before the board
clock), names an unknown actuator, is outside min..max (a relay takes only min or max), changes faster
than `rate` per second since the last change, or switches a relay before `min_on` / `min_off` seconds.
An applied command acks the value applied. The last 8 command ids are remembered with their ack: a
repeated id is answered with the same ack and not applied again. A payload that cannot be decoded has no
id to answer; it is logged and dropped.

At start every actuator is driven to its fail-safe value; on each connect the board subscribes to its
`cmd` topic (QoS 1) before it publishes its birth, so that a command the hub sends on seeing the birth
arrives, and reports every actuator's value after it. `watch()` drives them all to their fail-safe
values once the uplink has been down for `failsafe_after` seconds; each change is reported as telemetry
(sensor = actuator, quantity `setpoint`), with quality `lost` for a fail-safe move, through the offline
buffer: a board reports its fail-safe state when it reconnects. The drivers come from the hardware layer
(`hw.actuator(name, spec)`, an object with `set(value)`).
"""

import asyncio
import time

from firmware import log
from protocols import control, topics
from protocols.errors import ProtocolError

_RING = 8


class Actuators:
    def __init__(self, board):
        self.board = board
        self.specs = board.cfg["actuators"]
        self.after_ms = int(board.cfg["failsafe_after"] * 1000)
        self.out = {}
        self.val = {}
        self.changed = {}
        self.ids = []  # [(command id, ack bytes)], oldest first
        self.failsafe = False
        site, device = board.cfg["site"], board.cfg["device"]
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
        """Before each birth: listen for commands."""
        client.set_callback(self.on_message)
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

    def command(self, msg, retained, now):
        """The ack to send for one `cmd` payload (None if it has no usable id)."""
        try:
            cmd = control.decode_cmd(msg)
        except ProtocolError as exc:
            log.warn("cmd refused, no ack: %s", exc)
            return None
        for cid, ack in self.ids:
            if cid == cmd.id:
                log.info("cmd %s repeated: answered again, not applied again", cmd.id)
                return ack
        why = None
        if retained:
            why = "retained command ignored"
        elif now is None:
            why = "board clock not set"
        elif now > cmd.expires:
            why = "expired %d ms ago" % (now - cmd.expires)
        else:
            why = self.check(cmd.actuator, cmd.value)
        ts = now or cmd.ts
        if why is None:
            self.drive(cmd.actuator, cmd.value)
            self.report(cmd.actuator)
            self.failsafe = False
            log.info("cmd %s: %s = %s", cmd.id, cmd.actuator, cmd.value)
            ack = control.encode_ack(cmd.id, cmd.actuator, control.APPLIED, ts, cmd.value)
        else:
            log.warn("cmd %s refused: %s", cmd.id, why)
            ack = control.encode_ack(cmd.id, cmd.actuator, control.REJECTED, ts, None, why)
        self.ids.append((cmd.id, ack))
        if len(self.ids) > _RING:
            self.ids.pop(0)
        return ack

    async def watch(self):
        """Drive every actuator to its fail-safe value once the uplink is down for failsafe_after."""
        client = self.board.client
        down = None
        while True:
            await asyncio.sleep_ms(250)
            if client.isconnected():
                down = None
                continue
            if down is None:
                down = time.ticks_ms()
            elif not self.failsafe and time.ticks_diff(time.ticks_ms(), down) >= self.after_ms:
                log.warn("uplink down for %d s: actuators to fail-safe", self.after_ms // 1000)
                self.failsafe = True
                for name in self.specs:
                    self.drive(name, self.specs[name]["failsafe"])
                    self.report(name, "lost")
